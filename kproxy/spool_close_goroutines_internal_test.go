package kproxy

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestSpoolDrainCloseLeavesNoGoroutine: after close, no goroutine of the
// drain (flushKicked, awaitAside, waitPlaced, withdrawLate's) is left,
// with a topic whose metadata takes 20 s taken out of its chunk into a
// client of its own and kproxy stopping while that client waits.
func TestSpoolDrainCloseLeavesNoGoroutine(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "ok", Partitions: 2}, {Name: "slow", Partitions: 1}, {Name: "slow2", Partitions: 1}})
	var on atomic.Bool
	on.Store(true)
	slowMetadata(c, "slow", 20*time.Second, &on)
	s := testSpooler(t, c, nil)
	put := func(r spool.Record) {
		if _, err := s.sp.Append([]spool.Record{r}); err != nil {
			t.Error(err)
		}
		s.appended([]*spoolItem{{rec: r}})
	}
	put(spool.Record{Topic: "slow", Key: []byte("s"), Value: []byte("s")})
	for i := 0; i < 50; i++ {
		put(spool.Record{Topic: "ok", Key: []byte("k"), Value: []byte(fmt.Sprint(i))})
	}
	s.start()
	time.Sleep(3 * time.Second) // slow set aside
	for i := 0; i < 50; i++ {
		put(spool.Record{Topic: "ok", Key: []byte("k"), Value: []byte(fmt.Sprint(i))})
	}
	time.Sleep(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err := s.close(ctx)
	cancel()
	t.Logf("close: %v", err)
	// The drain's goroutines end soon after close returns; a loaded machine
	// takes its time: polled for up to 5 s (the slow topic's metadata
	// request, which a leaked goroutine would wait for, takes 20 s).
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left = left[:0]
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "kproxy.") && !strings.Contains(g, "TestSpoolDrainCloseLeavesNoGoroutine") && !strings.Contains(g, "testing.") {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, g := range left {
		t.Errorf("left after close:\n%s", g)
	}
}
