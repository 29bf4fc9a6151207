package ktransfer_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// warningCounter counts the "kafka fetch error" warnings and the
// repetitions they report.
type warningCounter struct {
	lines, repeated *atomic.Int64
}

func (h warningCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h warningCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "kafka fetch error" {
		return nil
	}
	h.lines.Add(1)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "repeated" {
			h.repeated.Add(a.Value.Int64())
		}
		return true
	})
	return nil
}
func (h warningCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h warningCounter) WithGroup(string) slog.Handler      { return h }

// TestShortFetchErrorStormIsCountedInTheLog: a partition's fetches fail for
// about two seconds with an error the Kafka client does not retry, then
// succeed again. The first error is logged at once; the repetitions that
// followed within the 10 s interval are logged too (with their count) once
// it is over, not dropped because the error stopped before the next warning
// was due: the log showed one error for a storm.
func TestShortFetchErrorStormIsCountedInTheLog(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", [][2]string{{"k", "0"}})
	var refusing atomic.Bool
	refused := e.refuseFetches(kerr.TopicAuthorizationFailed.Code, refusing.Load)
	var lines, repeated atomic.Int64
	b := newBackend(t, nil)
	tr, err := ktransfer.New(e.config(t, 0, module("m", "t", b.URL)), slog.New(warningCounter{lines: &lines, repeated: &repeated}))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "the first record pushed", 10*time.Second, func() bool { return len(b.got()) == 1 })
	refusing.Store(true)
	waitFor(t, "the error logged", 30*time.Second, func() bool { return lines.Load() > 0 })
	first := time.Now()
	waitFor(t, "the error repeated", 5*time.Second, func() bool { return refused.Load() >= 4 })
	refusing.Store(false)
	n := refused.Load()
	e.produce(t, "t", [][2]string{{"k", "1"}})
	waitFor(t, "the record written after the error ended", 10*time.Second, func() bool { return len(b.got()) == 2 })
	// The repetitions are due in the log 10 s after the first warning
	// (5 s more for a loaded host).
	deadline := first.Add(15 * time.Second)
	for time.Now().Before(deadline) && repeated.Load() == 0 {
		time.Sleep(100 * time.Millisecond) // polled: the lines come from the module's goroutine
	}
	t.Logf("%d fetches refused; %d warnings reporting %d repetitions", n, lines.Load(), repeated.Load())
	if repeated.Load() == 0 {
		t.Errorf("%d fetch errors, the log reports %d warnings and no repetitions 15 s after the first", n, lines.Load())
	}
}
