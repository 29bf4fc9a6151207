package ktransfer

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// fetchWarnCounter counts the "kafka fetch error" lines and the
// repetitions they report; the reader's goroutine writes them.
type fetchWarnCounter struct{ lines, repeated *atomic.Int64 }

func (h fetchWarnCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h fetchWarnCounter) Handle(_ context.Context, r slog.Record) error {
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
func (h fetchWarnCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h fetchWarnCounter) WithGroup(string) slog.Handler      { return h }

// TestFetchErrorRepetitionsLoggedAfterTheRelease: a partition's fetches
// fail again and again (logged once, the repetitions held back), then the
// partition is released (handed over) and the module reads no partition.
// The repetitions are logged 10 s after the warning as for any error that
// ended; they never were: the reader, reading nothing, waited for a claim.
func TestFetchErrorRepetitionsLoggedAfterTheRelease(t *testing.T) {
	e := newReaderEnv(t)
	var lines, repeated atomic.Int64
	e.m.log = slog.New(fetchWarnCounter{lines: &lines, repeated: &repeated})
	var refused atomic.Int64
	e.k.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.k.KeepControl()
		refused.Add(1)
		return kafkatest.FetchError(req.(*kmsg.FetchRequest), kerr.TopicAuthorizationFailed.Code), nil, true
	})
	p := newPartition(e.m, 0, e.ctx)
	p.tracker = newTracker(0)
	p.hwGauge = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hw"})
	e.m.reader.assign(p, 0)
	deadline := time.Now().Add(10 * time.Second)
	// Each fetch after the first follows the end of the hold of the error
	// before it: the third one means two errors routed, one held back.
	for refused.Load() < 3 || lines.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d fetches refused, %d warnings", refused.Load(), lines.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	first := time.Now()
	e.m.reader.unassign(p)
	for repeated.Load() == 0 {
		if time.Since(first) > fetchErrorLogEvery+5*time.Second {
			t.Fatalf("%d fetches refused; %d warnings and no repetitions logged %v after the first, the partition released",
				refused.Load(), lines.Load(), time.Since(first).Round(time.Second))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
