package ktransfer_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/logging"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestReloadLogLevelAddsKafkaClientLog: log_level is a live key, and 16
// adds the Kafka client's own log (README). A process started at 4 and
// reloaded to 16 says the level changed; the Kafka client's lines must
// then come as well, from the modules' consumers that run on. (Before,
// the Kafka client's logger was attached only when 16 was the level at
// start: the reload applied half of the level.)
func TestReloadLogLevelAddsKafkaClientLog(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	bk := newBackend(t, nil)
	c := e.reloadConf(t, "m")
	c.module(t, "m", "t", "m", bk.URL, "")
	dir := t.TempDir()
	lg, err := logging.New(dir, 4, "ktransfer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	cfg, err := ktransfer.LoadConfig(c.path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	tr, err := ktransfer.New(cfg, lg.Logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tr.SetLevelFunc(lg.SetLevel)
	runtest.Start(t, tr.Run, 30*time.Second)
	produceN(t, e, 0, 5)
	waitFor(t, "the records pushed", 10*time.Second, func() bool { return len(bk.got()) >= 5 })

	c.enable(t, "log_level: 16\n", "m")
	if err := tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if need := tr.ConfigStatus().RestartNeeded; len(need) > 0 {
		t.Fatalf("log_level 16 needs a restart: %v", need)
	}
	read := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "ktransfer.log"))
		return string(b)
	}
	if !strings.Contains(read(), "log_level changed") {
		t.Fatalf("no \"log_level changed\" line after the reload:\n%s", read())
	}
	produceN(t, e, 5, 10)
	waitFor(t, "the records after the reload pushed", 10*time.Second, func() bool { return len(bk.got()) >= 10 })
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(read(), "kafka client: ") {
		if time.Now().After(deadline) {
			t.Fatalf("log_level 16 applied by a reload, and no line of the Kafka client's own log within 30 s while its consumer fetches")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReloadLogLevelNeedingRestartWarnedOnce: a log_level a reload cannot
// apply (the running log refuses it) is a key needing a restart, warned
// of once, as every other such key is.
func TestReloadLogLevelNeedingRestartWarnedOnce(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	bk := newBackend(t, nil)
	c := e.reloadConf(t, "m")
	c.module(t, "m", "t", "m", bk.URL, "")
	var buf syncBuffer
	cfg, err := ktransfer.LoadConfig(c.path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	tr, err := ktransfer.New(cfg, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tr.SetLevelFunc(func(int) bool { return false }) // as a log started at 0
	runtest.Start(t, tr.Run, 30*time.Second)
	produceN(t, e, 0, 1)
	waitFor(t, "the record pushed", 10*time.Second, func() bool { return len(bk.got()) >= 1 })
	c.enable(t, "log_level: 8\n", "m")
	if err := tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	var warned int
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, "changed key needs a restart") && strings.Contains(line, "key=log_level") {
			warned++
		}
	}
	if warned != 1 {
		t.Fatalf("log_level needing a restart warned of %d times, want 1:\n%s", warned, buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
