package main

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSIGTERMWhileKafkaSilentAtStartStopsAtOnce: at start ktransfer reads
// its modules' topics from Kafka. A broker that accepts the connection and
// does not answer its first request (ApiVersions) held kgo past the stop's
// context (for its request timeout overhead, 10 s): a SIGTERM then must
// still end the start at once, logged, exit 0.
func TestSIGTERMWhileKafkaSilentAtStartStopsAtOnce(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	s := newSetupOn(t, k, kafkaconf.Default(), "log_level: 4\n", 1)
	silence := make(chan struct{})
	t.Cleanup(func() { close(silence) })
	var held atomic.Int64
	k.ControlKey(int16(kmsg.ApiVersions), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		held.Add(1)
		k.SleepControl(func() { <-silence })
		return nil, nil, false
	})
	p := s.start(t)
	waitFor(t, "a request to the broker", func() bool { return held.Load() > 0 }, p)
	bintest.StopWithin(t, p.cmd, p.exited, 5*time.Second, "while Kafka is silent at start", p.stderr)
	logText, _ := os.ReadFile(filepath.Join(s.dir, "log", "ktransfer.log"))
	if !strings.Contains(string(logText), "stopped while starting") {
		t.Errorf("log does not say the start was stopped:\n%s", logText)
	}
}
