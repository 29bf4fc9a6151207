package kproxy

import "testing"

// TestDefaultTransactionalIDsDifferByListenHost: two kproxy processes of
// one host on one port, each on an address of its own (listen_host), had
// the same default transactional ids (kproxy-<host>-<port>-N): each
// fenced the other's transactions, and atomic batches were answered 503
// without end. The listen_host is part of the default; a process
// listening on every address keeps the id it had.
func TestDefaultTransactionalIDsDifferByListenHost(t *testing.T) {
	a, b := defaultTxnID("h", "10.0.0.1", "5030"), defaultTxnID("h", "10.0.0.2", "5030")
	if a == b {
		t.Errorf("listen_host 10.0.0.1 and 10.0.0.2 on port 5030: both %q", a)
	}
	for _, any := range []string{"", "0.0.0.0", "::"} {
		if got := defaultTxnID("h", any, "5030"); got != "kproxy-h-5030" {
			t.Errorf("listen_host %q: %q, want kproxy-h-5030 (the id it had)", any, got)
		}
	}
}
