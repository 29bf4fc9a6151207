package kmonitor_test

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
)

// TestPortInUseNamesTheFile: a start stopped by its configuration names
// the file, as kproxy's and ktransfer's do (kproxy.yaml: listen on …
// (port): … address already in use). kmonitor named the key but not the
// file: with several kmonitor files on a host, the operator could not
// tell which one to change.
func TestPortInUseNamesTheFile(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	doc := fmt.Sprintf("base: {clusters: [c]}\nhttp_server: {port: %d, listen_host: 127.0.0.1}\nc: {chroot: /mq/c, zk_hosts: [127.0.0.1:2181]}\n", port)
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := kmonitor.LoadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	m, err := kmonitor.New(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		m.Close()
		t.Fatalf("started on port %d, which is taken", port)
	}
	want := fmt.Sprintf("%s: listen on 127.0.0.1:%d (http_server.port)", f, port)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("New: %v; want %q", err, want)
	}
}
