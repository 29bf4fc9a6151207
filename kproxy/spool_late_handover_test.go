package kproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// lateMargin is what the late hand-over tests allow past a deadline and
// the 250 ms grace: the scheduler under -race on a busy machine.
const lateMargin = 300 * time.Millisecond

// TestSpoolLateHandOverAnsweredByDeadline attacks the promise that a
// client gets its answer by produce_timeout_ms, counted from its request's
// arrival (250 ms later at most), with the spool on and Kafka away. A
// /commit with "Expect: 100-continue" whose body comes late (its deadline
// runs from its headers: here 1.9 s after them, with produce_timeout_ms
// 2000) has its record handed to Kafka's client with 100 ms left, and
// spool_after_ms (1500) counted from then. It was answered 202 at
// spool_after_ms, 1.4 s past its deadline, and spooled to be written
// later: a client whose own timeout follows produce_timeout_ms had given
// up and sent it again. It is answered at its deadline, as a gRPC call's
// record with a deadline is: 504, may have been written (Kafka's client
// still has it).
func TestSpoolLateHandOverAnsweredByDeadline(t *testing.T) {
	const (
		produceTimeout = 2 * time.Second
		late           = 1900 * time.Millisecond
	)
	k := kafkatest.StartRestartable(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := spoolProxy(t, nil, func(cfg *kproxy.Config) {
		cfg.BrokerHosts = []string{k.Addr()}
		cfg.Kafka.DialTimeoutMs = 200
		cfg.SpoolAfterMs = 1500
		cfg.ProduceTimeoutMs = int(produceTimeout / time.Millisecond)
		cfg.ReadTimeoutMs = 5000
		cfg.AutoCreateTopics = false // the topic looked up on the headers: the deadline runs from them
	})
	warmUp(t, p, "acks=1&topic="+topic+"&key=w", keySeqValue(t, "w", 0))
	k.Stop()
	code, got, took := commitBodyLate(t, p, "topic="+topic+"&key=c&acks=1", keySeqValue(t, "c", 0), time.Now(), late)
	t.Logf("body %v after the headers: %d %s after %v", late, code, got, took.Round(time.Millisecond))
	if limit := produceTimeout + 250*time.Millisecond + lateMargin; took > limit {
		t.Errorf("answered %d after %v, past produce_timeout_ms %v from its headers and the 250 ms grace (%v with the test's margin)",
			code, took.Round(time.Millisecond), produceTimeout, limit)
	}
}

// commitBodyLate sends a /commit with "Expect: 100-continue" (its deadline
// runs from its headers when auto_create_topics is off), its body
// late after sent (when it began), and returns the answer and how long
// after sent it came.
func commitBodyLate(t *testing.T, p *proxy, query string, body []byte, sent time.Time, late time.Duration) (int, string, time.Duration) {
	t.Helper()
	addr := strings.TrimPrefix(p.url, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "POST /commit?%s HTTP/1.1\r\nHost: %s\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", query, addr, len(body)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 100 {
		t.Fatalf("first answer %d, want 100 Continue", resp.StatusCode)
	}
	time.Sleep(late - time.Since(sent))
	if _, err := conn.Write(body); err != nil {
		t.Fatal(err)
	}
	if resp, err = http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, strings.TrimSpace(string(got)), time.Since(sent)
}

// TestSpoolLateHandOverTakenByAnotherFlipAnswered202: a record handed to
// Kafka's client late (its body 1 s after its "Expect: 100-continue"
// headers, produce_timeout_ms 2000, spool_after_ms 1500), behind another
// request's record in a partition whose broker holds every produce
// request. That other record's spool_after_ms makes the topic spool
// before the late record's deadline: the flip takes both into the spool,
// which writes them. At its deadline the late record was given up, 504
// (may have been written): a client sending it again made a second copy
// for sure. It is answered from the spool, 202, by its deadline.
func TestSpoolLateHandOverTakenByAnotherFlipAnswered202(t *testing.T) {
	const (
		produceTimeout = 2 * time.Second
		late           = time.Second
	)
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := spoolProxy(t, c, func(cfg *kproxy.Config) {
		cfg.SpoolAfterMs = 1500
		cfg.ProduceTimeoutMs = int(produceTimeout / time.Millisecond)
		cfg.ReadTimeoutMs = 5000
		cfg.AutoCreateTopics = false // the topic looked up on the headers: the deadline runs from them
	})
	warmUp(t, p, "acks=1&topic="+topic+"&key=w", keySeqValue(t, "w", 0))
	thawed := make(chan struct{})
	t.Cleanup(func() { close(thawed) }) // before the cluster closes: it waits for the controls
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { <-thawed })
		return nil, nil, false
	})
	sent := time.Now()
	first := make(chan int, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // after the late record's headers
		first <- p.post(t, "acks=-1&topic="+topic+"&key=a", keySeqValue(t, "a", 0)).code
	}()
	code, got, took := commitBodyLate(t, p, "topic="+topic+"&key=r&acks=-1", keySeqValue(t, "r", 0), sent, late)
	t.Logf("late record: %d %s after %v; the other: %d", code, got, took.Round(time.Millisecond), <-first)
	if code != 202 {
		t.Errorf("the late record, taken into the spool by the other's flip: %d %s, want 202", code, got)
	}
	if limit := produceTimeout + 250*time.Millisecond + lateMargin; took > limit {
		t.Errorf("answered after %v, past produce_timeout_ms %v and the grace (%v with the test's margin)", took.Round(time.Millisecond), produceTimeout, limit)
	}
}

// TestSpoolBatchHandedOverLateAnsweredByDeadline: as
// TestSpoolLateHandOverAnsweredByDeadline for a /batch whose topics'
// look-ups took most of produce_timeout_ms (3000): Kafka answers their
// metadata but not their configurations (DescribeConfigs), which each
// look-up waits spool_after_ms (900) for, one after the other, and takes
// none of the records (its produce requests held). Handed to Kafka's
// client 2.7 s after the request's arrival, they were answered 202 at
// spool_after_ms from then, 3.6 s; they are answered at the deadline.
func TestSpoolBatchHandedOverLateAnsweredByDeadline(t *testing.T) {
	const produceTimeout = 3 * time.Second
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t1", Partitions: 1}, {Name: "t2", Partitions: 1}, {Name: "t3", Partitions: 1}})
	p := spoolProxy(t, c, func(cfg *kproxy.Config) {
		cfg.SpoolAfterMs = 900
		cfg.ProduceTimeoutMs = int(produceTimeout / time.Millisecond)
		cfg.AutoCreateTopics = false
	})
	holdLookupsAndProduce(t, c, 1500*time.Millisecond)
	start := time.Now()
	code, ab := postBatch(t, p, "acks=1", []map[string]any{
		{"topic": "t1", "key": "a", "value": "1"}, {"topic": "t2", "key": "a", "value": "2"}, {"topic": "t3", "key": "a", "value": "3"}})
	took := time.Since(start)
	t.Logf("[t1, t2, t3]: %d %+v after %v", code, ab, took.Round(time.Millisecond))
	if limit := produceTimeout + 250*time.Millisecond + lateMargin; took > limit {
		t.Errorf("answered %d after %v, past produce_timeout_ms %v from its arrival and the 250 ms grace (%v with the test's margin)",
			code, took.Round(time.Millisecond), produceTimeout, limit)
	}
}

// TestSpoolBatchLateHandOverTakenByAnotherFlipAnswered202: as
// TestSpoolLateHandOverTakenByAnotherFlipAnswered202 for a /batch record.
// The batch [t2, t3, t4, t1] waits spool_after_ms (1800) for each of its
// first three topics' configurations (Kafka answers their metadata, not
// DescribeConfigs), and its records are handed to Kafka's client 5.4 s
// after its arrival, with less than spool_after_ms left of
// produce_timeout_ms (6000): they are answered at the deadline. Kafka
// holds every produce request. A /commit record of t1 sent 3.8 s after
// the batch reaches spool_after_ms at 5.6 s: t1's flip takes the batch's
// t1 record into the spool with it, which writes it. At its deadline the
// batch's t1 record must be answered 202 from the spool, not 504 (given
// up, may have been written): a client sending it again would make a
// second copy for sure.
func TestSpoolBatchLateHandOverTakenByAnotherFlipAnswered202(t *testing.T) {
	const produceTimeout = 6 * time.Second
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t1", Partitions: 1}, {Name: "t2", Partitions: 1},
		{Name: "t3", Partitions: 1}, {Name: "t4", Partitions: 1}})
	p := spoolProxy(t, c, func(cfg *kproxy.Config) {
		cfg.SpoolAfterMs = 1800
		cfg.ProduceTimeoutMs = int(produceTimeout / time.Millisecond)
		cfg.AutoCreateTopics = false
	})
	warmUp(t, p, "acks=1&topic=t1&key=w", keySeqValue(t, "w", 0)) // t1 known: its record needs no look-up
	holdLookupsAndProduce(t, c, 3*time.Second)
	start := time.Now()
	other := make(chan int, 1)
	go func() {
		time.Sleep(3800 * time.Millisecond)
		other <- p.post(t, "acks=-1&topic=t1&key=a", keySeqValue(t, "a", 0)).code
	}()
	code, ab := postBatch(t, p, "acks=-1", []map[string]any{
		{"topic": "t2", "key": "b", "value": "2"}, {"topic": "t3", "key": "b", "value": "3"},
		{"topic": "t4", "key": "b", "value": "4"}, {"topic": "t1", "key": "r", "value": "1"}})
	took := time.Since(start)
	t.Logf("[t2, t3, t4, t1]: %d %+v after %v; the /commit record of t1: %d", code, ab, took.Round(time.Millisecond), <-other)
	if len(ab.Results) != 4 {
		t.Fatalf("%d results, want 4: %d %+v", len(ab.Results), code, ab)
	}
	if r := ab.Results[3]; r.Status != 202 || !r.Spooled {
		t.Errorf("the batch's t1 record, taken into the spool by the other record's flip: status %d spooled %v, want 202 spooled", r.Status, r.Spooled)
	}
	if limit := produceTimeout + 250*time.Millisecond + lateMargin; took > limit {
		t.Errorf("answered after %v, past produce_timeout_ms %v and the grace (%v with the test's margin)", took.Round(time.Millisecond), produceTimeout, limit)
	}
}

// holdLookupsAndProduce has Kafka hold every DescribeConfigs request (a
// topic's look-up) for up to lookup, and every produce request until the
// test ends.
func holdLookupsAndProduce(t *testing.T, c *kfake.Cluster, lookup time.Duration) {
	t.Helper()
	thawed := make(chan struct{})
	t.Cleanup(func() { close(thawed) }) // before the cluster closes: it waits for the controls
	c.ControlKey(int16(kmsg.DescribeConfigs), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() {
			select {
			case <-thawed:
			case <-time.After(lookup):
			}
		})
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { <-thawed })
		return nil, nil, false
	})
}
