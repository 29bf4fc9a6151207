package kproxy_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestProducerNumNotedAtStart attacks the promise that a 2015 key which no
// longer applies is accepted with a start-up note: producer_num has no
// effect (kproxy keeps one Kafka client per acks level), and README says
// it is logged at start-up. DESIGN's own kproxy.yaml sets producer_num: 1,
// the value an operator upgrading keeps; it must be noted as any other
// value is. A file without the key gets no note.
func TestProducerNumNotedAtStart(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	for _, tc := range []struct {
		line  string
		noted bool
	}{
		{"producer_num: 1\n", true},
		{"producer_num: 4\n", true},
		{"", false},
	} {
		f := filepath.Join(t.TempDir(), "kproxy.yaml")
		doc := fmt.Sprintf("log_dir: ./log\nlog_level: 4\nport: 0\nread_timeout_ms: 100\nwrite_timeout_ms: 100\n"+
			"req_pool_size: 10240\n%smax_request_size_bytes: 10485760\nbroker_hosts:\n - %s\n"+
			"listen_host: 127.0.0.1\nadmin_addr: \"\"\n", tc.line, c.ListenAddrs()[0])
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := kproxy.LoadConfig(f)
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		var out runtest.Log
		srv, err := kproxy.New(cfg, slog.New(slog.NewTextHandler(&out, nil)))
		if err != nil {
			t.Fatalf("%q: New: %v", tc.line, err)
		}
		srv.Close()
		if noted := strings.Contains(out.String(), "key=producer_num"); noted != tc.noted {
			t.Errorf("file with %q: noted at start %v, want %v; log:\n%s", tc.line, noted, tc.noted, out.String())
		}
	}
}

// TestProducerNumLowestIntRefused: producer_num is still checked (>= 1)
// whatever value the file holds; none stands for "not set".
func TestProducerNumLowestIntRefused(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kproxy.yaml")
	if err := os.WriteFile(f, []byte("broker_hosts: [10.1.4.17:5031]\nproducer_num: -9223372036854775808\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := f + ": producer_num: must be >= 1, got -9223372036854775808"
	if _, err := kproxy.LoadConfig(f); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("LoadConfig: %v; want %q", err, want)
	}
}
