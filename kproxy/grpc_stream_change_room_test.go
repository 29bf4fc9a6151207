package kproxy_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestStreamClientChangeHoldsNoRoomWhileWaiting: a stream request at
// another acks level than the stream's last one waits until Kafka's
// client no longer holds the earlier request's records (answered 504,
// they may yet be written), for as long as its own deadline. It held its
// req_pool_size room through that wait: another client's /commit,
// arriving meanwhile with the pool otherwise empty, was refused 503
// "overloaded" by records that were nowhere near Kafka. Here the broker
// holds the acks=-1 produce requests (a stalled leader) while acks=1 ones
// pass.
func TestStreamClientChangeHoldsNoRoomWhileWaiting(t *testing.T) {
	const deadline, perReq = 1500 * time.Millisecond, 5
	c := kafkatest.StartBrokers(t, 1, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.ProduceTimeoutMs = int(deadline / time.Millisecond)
		cfg.ReqPoolSize = perReq
	})
	// Both Kafka clients warm (metadata, the acks=-1 one's producer ID)
	// before the broker holds anything.
	for _, acks := range []string{"1", "-1"} {
		if a := g.post(t, "acks="+acks+"&topic="+topic+"&key=warm", []byte{0x00}); a.code != 200 {
			t.Fatalf("warm-up /commit at acks=%s: %d %s", acks, a.code, a.body)
		}
	}
	release := make(chan struct{})
	var held atomic.Int32
	stop := onBroker(c, 0, func(req *kmsg.ProduceRequest) (kmsg.Response, error, bool) {
		if req.Acks != -1 {
			return nil, nil, false
		}
		held.Add(1)
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	defer func() {
		stop()
		close(release)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := g.kp.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := bigRequest(1, 1)
	first.Acks = acksOf(-1)
	if err := s.Send(first); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 504 || held.Load() == 0 {
		t.Fatalf("set-up: the acks=-1 request answered %d %q (produce requests held %d), want 504 with its record held at the broker",
			r.Status, r.Error, held.Load())
	}

	second := bigRequest(2, perReq)
	second.Acks = acksOf(1)
	sent := time.Now()
	if err := s.Send(second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the second request waits for the first one's record
	a := g.post(t, "acks=1&topic="+topic+"&key=other", []byte{0x01})
	if time.Since(sent) >= deadline {
		t.Fatalf("set-up: the /commit was answered %v after the stream request was sent, when its wait (%v at most) may have ended",
			time.Since(sent).Round(time.Millisecond), deadline)
	}
	if a.code != 200 {
		t.Errorf("another client's /commit while the stream's request waited for its earlier records: %d %q; want 200 (req_pool_size %d, nothing else in flight)",
			a.code, strings.TrimSpace(a.body), perReq)
	}
	r, err = s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the acks=1 stream request: %d %.160s", r.Status, r.Error)
	if r.Status != 503 || !strings.Contains(r.Error, "still in kafka's client") {
		t.Errorf("the acks=1 stream request answered %d %q; want 503 (the earlier record still held at its deadline)", r.Status, r.Error)
	}
	s.CloseSend()
}
