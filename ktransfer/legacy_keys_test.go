package ktransfer_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestNoLongerApplyingModuleKeysNoted attacks the promise that a 2015
// module key which no longer applies is accepted with a start-up note
// rather than silently: waiting_queue_size and
// expected_processing_time_ms have no effect (README: "logged at
// start-up"). They were noted only for a value above 0, so a file
// holding 0 (or a negative expected_processing_time_ms, accepted as
// well) loaded without a word. A module file without them gets no note.
func TestNoLongerApplyingModuleKeysNoted(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	z := zktest.Start(t)
	for _, tc := range []struct {
		lines string
		noted []string
	}{
		{"waiting_queue_size: 0\nexpected_processing_time_ms: 0\n", []string{"waiting_queue_size", "expected_processing_time_ms"}},
		{"expected_processing_time_ms: -1\n", []string{"expected_processing_time_ms"}},
		{"waiting_queue_size: 100\nexpected_processing_time_ms: 50\n", []string{"waiting_queue_size", "expected_processing_time_ms"}},
		{"", nil},
	} {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "modules"), 0o755); err != nil {
			t.Fatal(err)
		}
		module := "topic: t\nprotocol:\n name: http\n uri: /x/{#TOPIC}?transid={#TRANSID}\nworker_num: 2\nwindow_size: 10\n" +
			"max_retry_times: -1\nfail_retry_interval_ms: 200\nbackend_servers:\n - 127.0.0.1:1\n" + tc.lines
		if err := os.WriteFile(filepath.Join(dir, "modules", "m.yaml"), []byte(module), 0o644); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, "ktransfer.yaml")
		doc := fmt.Sprintf("log_level: 4\nzk_chroot: /mq/test_cluster\nzk_timeout_ms: 3000\nzk_hosts:\n - %s\n"+
			"module_conf_dir: %s\nmodule_enabled:\n - m\nbroker_hosts: [%s]\nadmin_addr: \"\"\n",
			z.Addr, filepath.Join(dir, "modules"), k.ListenAddrs()[0])
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := ktransfer.LoadConfig(f)
		if err != nil {
			t.Fatalf("%q: %v", tc.lines, err)
		}
		var out runtest.Log
		tr, err := ktransfer.New(cfg, slog.New(slog.NewTextHandler(&out, nil)))
		if err != nil {
			t.Fatalf("%q: New: %v", tc.lines, err)
		}
		tr.Close()
		log := out.String()
		for _, key := range []string{"waiting_queue_size", "expected_processing_time_ms"} {
			want := strings.Contains(tc.lines, key)
			if noted := strings.Contains(log, key); noted != want {
				t.Errorf("module file with %q: %s noted at start %v, want %v; log:\n%s", tc.lines, key, noted, want, log)
			}
		}
	}
}

// TestWaitingQueueSizeLowestIntRefused: waiting_queue_size is still
// checked (>= 0) whatever value the file holds; none stands for "not set".
func TestWaitingQueueSizeLowestIntRefused(t *testing.T) {
	f := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(f, []byte("topic: t\nprotocol: {uri: /x}\nbackend_servers: [10.1.2.1:80]\nwaiting_queue_size: -9223372036854775808\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := f + ": waiting_queue_size: must be >= 0, got -9223372036854775808"
	if _, err := ktransfer.LoadModule(f); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("LoadModule: %v; want %q", err, want)
	}
}
