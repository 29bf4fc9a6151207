package ktransfer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// TestHugeWorkerNumRefusedAtLoad: every worker is a goroutine (and a
// hash-dispatch queue, and a connection per backend), started with the
// module. A worker_num far past what a process can hold loaded, and the
// process died out of memory while starting the module, after it had
// registered; it is refused at load, naming the file, the key and the
// value.
func TestHugeWorkerNumRefusedAtLoad(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "m.yaml")
	body := "topic: t\nprotocol: {uri: /p}\nbackend_servers: [127.0.0.1:80]\n"
	os.WriteFile(f, []byte(body+"worker_num: 100000000\n"), 0o644)
	_, err := ktransfer.LoadModule(f)
	if want := f + ": worker_num: must be 1..100000, got 100000000"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%v\nlacks %q", err, want)
	}
	os.WriteFile(f, []byte(body+"worker_num: 100000\n"), 0o644)
	if m, err := ktransfer.LoadModule(f); err != nil || m.WorkerNum != 100000 {
		t.Errorf("worker_num 100000: %+v, %v", m, err)
	}
}
