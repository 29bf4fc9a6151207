package kproxy_test

import (
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
)

// TestHugeMaxHeaderBytesRefused: max_header_bytes is the size of the
// buffer each connection reads a request into. 1099511627776 (1 TiB) was
// accepted by LoadConfig (and -check), and kproxy died on its first
// request ("fatal error: runtime: out of memory", allocating that buffer).
// Headers go into the record, so more than the largest record batch
// (104857600, max_message_bytes' bound) can never be written: a larger
// value is a start-up error naming the file, the field and the value; the
// bound itself loads.
func TestHugeMaxHeaderBytesRefused(t *testing.T) {
	const brokers = "127.0.0.1:9092" // LoadConfig only: no broker is dialled
	f := writeConfig(t, brokers, "max_header_bytes: 1099511627776")
	want := f + ": max_header_bytes: must be 1024..104857600 (100 MiB, the largest record batch), got 1099511627776"
	if _, err := kproxy.LoadConfig(f); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("LoadConfig: %v\nlacks %q", err, want)
	}
	if _, err := kproxy.LoadConfig(writeConfig(t, brokers, "max_header_bytes: 104857600")); err != nil {
		t.Errorf("max_header_bytes at its bound: %v", err)
	}
}
