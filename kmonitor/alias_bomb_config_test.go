package kmonitor_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
)

// TestConfigAliasesDoNotHangLoad: a 1.3 KB kmonitor.yaml whose cluster
// section holds unknown keys built from YAML aliases, each mapping naming
// the previous one twice (2^40 paths through 41 small mappings), made
// LoadConfig — and so -check and the start — spin for ever: the walk that
// tells which cluster keys the file sets followed every alias to any
// depth, though it needs two levels (kafka.version). kproxy's and
// ktransfer's loaders refuse the same file at once; so must kmonitor's,
// naming the file and the unknown key.
func TestConfigAliasesDoNotHangLoad(t *testing.T) {
	var b strings.Builder
	b.WriteString("base:\n clusters: [c]\nc:\n chroot: /x\n zk_hosts: [127.0.0.1:2181]\n l0: &l0 {a: 1}\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, " l%d: &l%d {a: *l%d, b: *l%d}\n", i, i, i-1, i-1)
	}
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := kmonitor.LoadConfig(f)
		done <- err
	}()
	select {
	case err := <-done:
		if want := f + ":46: c.l40: unknown key"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig: %v\nlacks %q", err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("LoadConfig of a 1.3 KB file did not return within 10 s")
	}
}
