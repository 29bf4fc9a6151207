package kproxy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestSpoolRefusedFlipHoldsKeyQueuedBehind: a flip takes records a1 (key
// k) and x that kgo still has, and a record b of k arrives before the
// appender ran: all three are queued together. The spool (1 MiB) refuses
// the flip's records (1.2 MB) as full and has room for b. b must not be
// appended while kgo may still write a1 (its promise has not come): it
// waits, and is appended once kgo answered a1.
func TestSpoolRefusedFlipHoldsKeyQueuedBehind(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	end := kafkatest.NewFaults(t, c).Outage(kerr.NotLeaderForPartition.Code) // the drain frees nothing
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolMaxBytes = 1 << 20 })
	g := s.gate("t")
	big := strings.Repeat("v", 600_000)
	var a1, x gateRec // in kgo (not handed to it here: its promise is settle below)
	a1Rec := &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("a1" + big)}
	xRec := &kgo.Record{Topic: "t", Key: []byte("x"), Value: []byte("x" + big)}
	g.mu.Lock()
	g.addLocked(&a1, a1Rec, g.gen)
	g.addLocked(&x, xRec, g.gen)
	s.flipLocked(g)
	b := newSpoolItem(g, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("b")}, false, time.Time{})
	s.holdLocked(g, b)
	g.mu.Unlock()
	s.start()
	defer func() {
		end()
		s.close(context.Background())
	}()
	<-a1.item.done
	if !errors.Is(a1.item.err, spool.ErrFull) {
		t.Fatalf("a1: %v, want refused as full", a1.item.err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		held := len(g.held) == 1 && g.held[0] == b
		g.mu.Unlock()
		if held {
			break
		}
		select {
		case <-b.done:
			t.Fatalf("b, queued behind a1 of its key, appended (err %v) while kgo may still write a1 (refused by the spool, no answer from kgo)", b.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("b neither held nor appended")
		}
		time.Sleep(5 * time.Millisecond) // polling the appender
	}
	if taken := s.settle(&a1); taken {
		t.Errorf("a1, refused by the spool, settled as taken")
	}
	select {
	case <-b.done:
		if b.err != nil {
			t.Fatalf("b after kgo answered a1: %v", b.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b not appended after kgo answered a1")
	}
	s.settle(&x)
	if n := s.relinked.Load(); n != 0 {
		t.Errorf("relinked %d after kgo answered both, want 0", n)
	}
}
