package ktransfer_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// TestLongFailRetryIntervalLoads: a module file written for the 2015
// ktransfer, which has no max_retry_interval_ms, loads unchanged whatever
// its fail_retry_interval_ms.
func TestLongFailRetryIntervalLoads(t *testing.T) {
	f := filepath.Join(t.TempDir(), "m.yaml")
	body := "topic: t\nprotocol:\n name: http\n uri: /x/{#TOPIC}\nworker_num: 4\nwindow_size: 20\n" +
		"max_retry_times: -1\nfail_retry_interval_ms: 30000\nbackend_servers:\n - 10.1.2.1:80\n"
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := ktransfer.LoadModule(f)
	if err != nil {
		t.Fatalf("a 2015 module file refused: %v", err)
	}
	if m.FailRetryIntervalMs != 30000 {
		t.Errorf("fail_retry_interval_ms %d, want 30000", m.FailRetryIntervalMs)
	}
}
