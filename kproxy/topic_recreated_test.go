package kproxy_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestTopicDeletedAndRecreated attacks the 404 row ("unknown topic") and
// the acks=0 promise while a topic is deleted and created again under
// kproxy's feet. kgo names topics by id in produce requests and keeps the
// id it first saw; the brokers refuse it (UNKNOWN_TOPIC_ID) once the
// topic is gone. While the topic is deleted, kproxy soon answers 404; once
// it exists again, kproxy writes to it within a few seconds at every acks
// level, and never answers 404 meanwhile (a refused record is 503: not
// written), once the brokers' last "unknown topic" is a second old: kproxy
// answers 404 for a second without asking again (README), and its Kafka
// client fails a record with the answer to a metadata request it sent
// before the topic was created. Every acks=0 record answered 200 is in the
// topic or counted in kproxy_acks0_lost_records_total.
func TestTopicDeletedAndRecreated(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 2000 })
	levels := []string{"1", "-1", "0"}
	for _, acks := range levels {
		decode(t, p.post(t, "topic="+topic+"&key=k&acks="+acks, []byte{0x01}))
	}
	adm := kadm.NewClient(kafkatest.Client(t, c, kafkaconf.Default()))
	ctx := context.Background()
	if _, err := adm.DeleteTopics(ctx, topic); err != nil {
		t.Fatal(err)
	}

	// Deleted: 404 soon, never 200.
	var deleted []string
	for gone := false; !gone; {
		for _, acks := range []string{"1", "-1"} {
			a := p.post(t, "topic="+topic+"&key=k&acks="+acks, []byte{0x02})
			deleted = append(deleted, strconv.Itoa(a.code))
			if a.code == 200 {
				t.Fatalf("deleted topic: acks=%s answered 200", acks)
			}
			gone = gone || a.code == 404
		}
		if len(deleted) > 20 {
			t.Fatalf("deleted topic: never answered 404: %v", deleted)
		}
	}
	notFound := time.Now()
	t.Logf("deleted topic: answers %v", deleted)

	if _, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	fresh := kafkatest.Client(t, c, kafkaconf.Default())
	if err := fresh.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("fresh")}).FirstErr(); err != nil {
		t.Fatalf("a fresh client cannot write to the re-created topic: %v", err)
	}
	time.Sleep(time.Until(notFound.Add(kproxy.MissingTTL)))
	lost0, _ := strconv.Atoi(p.metric(t, "kproxy_acks0_lost_records_total"))
	unconfirmed0, _ := strconv.Atoi(p.metric(t, "kproxy_acks0_unconfirmed_records_total"))

	// Re-created: acks 1 and -1 write again within seconds (10 s on a loaded
	// machine); no 404.
	tags := map[string]byte{"1": 'o', "-1": 'a', "0": 'z'}
	codes := map[string]map[int]int{"1": {}, "-1": {}, "0": {}}
	start := time.Now()
	for n := 0; codes["1"][200] == 0 || codes["-1"][200] == 0; n++ {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("re-created topic: not written at acks 1 and -1 within 10 s: %v", codes)
		}
		for _, acks := range levels {
			a := p.post(t, "topic="+topic+"&key=k&acks="+acks, []byte(fmt.Sprintf("\xa8%c-%06d", tags[acks], n)))
			codes[acks][a.code]++
			// 504: a record buffered when kproxy purged the stale topic
			// while a produce request was out (it may have left).
			if a.code != 200 && a.code != 503 && a.code != 504 {
				t.Fatalf("re-created topic, acks=%s: %d %q; want 200, 503 (not written) or 504 (may have been written)", acks, a.code, a.body)
			}
		}
	}
	t.Logf("re-created topic: written after %v; answers %v", time.Since(start), codes)

	// The acks=0 records answered 200 are in the topic or counted lost,
	// and those sent now are delivered.
	for n := range 5 {
		decode(t, p.post(t, "topic="+topic+"&key=k&acks=0", []byte(fmt.Sprintf("\xa8z+%06d", n))))
	}
	var inTopic, lost, unconfirmed int
	waitFor(t, "every acks=0 record delivered or counted lost", func() bool {
		inTopic = 0
		for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
			if r.Value[1] == 'z' {
				inTopic++
			}
		}
		lost, _ = strconv.Atoi(p.metric(t, "kproxy_acks0_lost_records_total"))
		lost -= lost0
		unconfirmed, _ = strconv.Atoi(p.metric(t, "kproxy_acks0_unconfirmed_records_total"))
		unconfirmed -= unconfirmed0
		// Every record given up is counted lost; an unconfirmed one (also
		// counted lost) may be in the topic, or not.
		want := codes["0"][200] + 5
		return inTopic+lost-unconfirmed <= want && want <= inTopic+lost
	})
	t.Logf("acks=0: %d answered 200, %d in the topic, %d counted lost, %d unconfirmed", codes["0"][200]+5, inTopic, lost, unconfirmed)
	if inTopic < 5 {
		t.Errorf("acks=0: %d records in the topic after the re-creation, want the last 5 at least", inTopic)
	}
}

// TestStopDoesNotWaitForAPurge: a purge of a topic whose id went stale
// waits for the Kafka client's metadata loop, which waits while a broker
// sits on a metadata request. Stopping kproxy then must not wait for the
// purge before it closes the clients (closing ends the purge): the
// request in flight is answered and Run returns within
// shutdown_timeout_ms and a second.
func TestStopDoesNotWaitForAPurge(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.ShutdownTimeoutMs = 500
		cfg.ProduceTimeoutMs = 4000
	})
	decode(t, p.post(t, "topic="+topic+"&acks=1", []byte{0x01}))
	adm := kadm.NewClient(kafkatest.Client(t, c, kafkaconf.Default()))
	ctx := context.Background()
	if _, err := adm.DeleteTopics(ctx, topic); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	var held atomic.Int32
	c.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		held.Add(1)
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	// Refused with UNKNOWN_TOPIC_ID (the client's id is the deleted
	// topic's): its purge starts and waits behind the held metadata.
	first := p.post(t, "topic="+topic+"&acks=1", []byte{0x02})
	t.Logf("first record after the re-creation: %d %q", first.code, first.body)
	waitFor(t, "a metadata request held", func() bool { return held.Load() > 0 })
	done := make(chan time.Time, 1)
	var answered atomic.Bool
	go func() {
		p.post(t, "topic="+topic+"&acks=1", []byte{0x03})
		answered.Store(true)
		done <- time.Now()
	}()
	waitFor(t, "the second request in flight", func() bool { return p.srv.InFlight() == 1 || answered.Load() })
	stopAt := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- p.stop() }()
	select {
	case at := <-done:
		if d := at.Sub(stopAt); d > 2*time.Second {
			t.Errorf("the request in flight answered %v after the stop began; want within shutdown_timeout_ms (0.5 s) and 1 s", d)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the request in flight unanswered 10 s after the stop began")
	}
	select {
	case <-stopped:
		if d := time.Since(stopAt); d > 3*time.Second {
			t.Errorf("Run returned %v after the stop began", d)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("Run not returned 10 s after the stop began (a purge waiting for the held metadata holds it)")
	}
	once.Do(func() { close(release) })
}
