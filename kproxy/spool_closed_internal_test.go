package kproxy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolPushAfterCloseUnderGateLock: flipLocked, holdLocked and settle
// push records with their gate's mutex held; once the spooler is closed,
// push refuses them — without taking that mutex again on the caller's
// goroutine (it deadlocked the handler, and every later record of the
// topic behind it).
func TestSpoolPushAfterCloseUnderGateLock(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	s := testSpooler(t, c, nil)
	if err := s.close(context.Background()); err != nil {
		t.Fatal(err)
	}
	g := &gate{topic: "t"}
	it := &spoolItem{g: g, done: make(chan struct{})}
	g.mu.Lock()
	g.queued++
	pushed := make(chan struct{})
	go func() {
		s.push(it)
		close(pushed)
	}()
	select {
	case <-pushed:
	case <-time.After(5 * time.Second):
		t.Fatal("push after close, gate mutex held: blocked (it took the gate's mutex again)")
	}
	g.mu.Unlock()
	select {
	case <-it.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the record pushed after close was never answered")
	}
	if !errors.Is(it.err, errSpoolClosed) {
		t.Errorf("record pushed after close: %v, want errSpoolClosed", it.err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.queued != 0 {
		t.Errorf("gate queued %d after the refusal, want 0", g.queued)
	}
}
