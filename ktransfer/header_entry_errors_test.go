package ktransfer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// TestHeaderEntryErrorsSayWhy attacks DESIGN's "bad input always gets a
// start-up error naming file, field and value": a protocol.headers entry
// naming one header twice, or giving a header a list or a mapping for its
// value, was refused as "protocol.headers[0]: must be a mapping, got a
// mapping" — the entry is a mapping, and the error told neither the key
// at fault nor what was wrong with it.
func TestHeaderEntryErrorsSayWhy(t *testing.T) {
	f := filepath.Join(t.TempDir(), "m.yaml")
	os.WriteFile(f, []byte("topic: t\nbackend_servers: [127.0.0.1:80]\nprotocol:\n uri: /p\n headers:\n"+
		"  - Host: a\n    Host: b\n  - X-Trace: [a, b]\n  - X-Tenant: {id: 1}\n"), 0o644)
	_, err := ktransfer.LoadModule(f)
	if err == nil {
		t.Fatal("LoadModule: no error")
	}
	for _, want := range []string{
		f + ":7: protocol.headers[0].Host: key appears twice",
		f + ":8: protocol.headers[1].X-Trace: must be a string, got a list",
		f + ":9: protocol.headers[2].X-Tenant: must be a string, got a mapping",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "must be a mapping, got a mapping") {
		t.Errorf("an error says a mapping must be a mapping:\n%v", err)
	}
}
