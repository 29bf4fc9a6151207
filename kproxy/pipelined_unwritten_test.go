package kproxy_test

import (
	"encoding/binary"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestPipelinedRecordBeingWrittenNot503: a client has a partition's three
// produce requests out at once (acks=1 with max_in_flight_requests 3, or
// the idempotent acks=-1 client, which pipelines up to 5). The broker
// holds the first, reads the second, and reads nothing more until it
// answered the first (as Kafka reads a connection's requests one at a
// time): the third, larger than the sockets' buffers, is being written,
// its write not returned. The broker refuses the first batch outright
// (INVALID_RECORD); kgo fails the partition's later records with that
// refusal, the third request's too, while that request is still being
// written: no produce request was written since its record was handed
// over, for all kgo's write hook says (it comes after the write). The
// broker then reads the later requests. At acks=1 it writes their records:
// they must not be answered 503 "not written" (their clients send them
// again: twice in Kafka), but 504 "may have been written" (or 200). At
// acks=-1 it refuses them by their sequence numbers: 503 (or 504).
func TestPipelinedRecordBeingWrittenNot503(t *testing.T) {
	for _, acks := range []string{"1", "-1"} {
		t.Run("acks="+acks, func(t *testing.T) { testPipelinedRecordBeingWritten(t, acks) })
	}
}

func testPipelinedRecordBeingWritten(t *testing.T, acks string) {
	const big = 24 << 20 // more than the loopback sockets' buffers take unread
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	setMaxMessageBytes(t, c, topic, 2*big)
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.MaxInFlightRequests = 3
		cfg.MaxMessageBytes = 2 * big
		cfg.MaxRequestSizeBytes = 2 * big
		cfg.ReadTimeoutMs = 30_000 // the large body's upload, on a loaded machine
		// The held first request carries the first record's deadline at
		// acks=1 (kgo sends a request with its first record's context): past
		// it kgo cuts the connection, and the third record is answered
		// before the refusal this test makes.
		cfg.ProduceTimeoutMs = 60_000
	})
	query := "topic=" + topic + "&key=k&acks=" + acks
	decode(t, p.post(t, query, unique(t, "warm-up"))) // a first answer: kgo pipelines from now on
	before := endOffsets(t, c, topic)
	requestsWritten := kproxy.ProduceRequestsWritten
	if acks == "-1" {
		requestsWritten = kproxy.IdempotentRequestsWritten
	}

	release := make(chan struct{})
	var seen atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if seen.Add(1) > 1 {
			return nil, nil, false // the later requests: the broker's own answer
		}
		c.SleepControl(func() { <-release })
		return kafkatest.ProduceError(req.(*kmsg.ProduceRequest), kerr.InvalidRecord.Code), nil, true
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	written := requestsWritten(p.srv)
	first, second, third := make(chan answer, 1), make(chan answer, 1), make(chan answer, 1)
	go func() { first <- p.post(t, query, unique(t, "refused")) }()
	waitFor(t, "the first request at the broker", func() bool { return seen.Load() == 1 })
	go func() { second <- p.post(t, query, unique(t, "pipelined")) }()
	waitFor(t, "the second request written behind it", func() bool { return requestsWritten(p.srv) == written+2 })
	large := bigValue(t, big)
	go func() { third <- p.post(t, query, large) }()
	waitFor(t, "the third request's write blocked on the unread socket", func() bool { return len(third) > 0 || kafkaWriteBlocked() })
	if len(third) > 0 {
		a := <-third
		t.Fatalf("the third record answered before the first one's refusal: %d %q", a.code, a.body)
	}
	close(release)

	a, b, d := <-first, <-second, <-third
	waitFor(t, "the broker to take the second and third requests", func() bool { return seen.Load() == 3 })
	inLog := map[string]int{}
	for end, o := endOffsets(t, c, topic), before; o < end; o++ {
		inLog[string(readRecord(t, c, topic, 0, o).Value)]++
	}
	if acks == "1" && len(inLog) != 2 {
		t.Fatalf("at acks=1 the broker should have written the second and third records, found %d records", len(inLog))
	}
	honestAnswer(t, "the refused record", a, inLog[string(unique(t, "refused"))])
	honestAnswer(t, "the second record", b, inLog[string(unique(t, "pipelined"))])
	honestAnswer(t, "the third record", d, inLog[string(large)])
}

// honestAnswer checks a record's answer against n, the times it is in
// Kafka: 200 or 504 "may have been written" when it is there once; 503
// "not written" or 504 when it is not.
func honestAnswer(t *testing.T, what string, a answer, n int) {
	t.Helper()
	t.Logf("%s: %d %q, in Kafka %d times", what, a.code, strings.TrimSpace(a.body), n)
	mayBe := a.code == 504 && strings.Contains(a.body, "may have been written")
	switch {
	case n == 1 && (a.code == 200 || mayBe):
	case n == 0 && (mayBe || a.code == 503 && strings.Contains(a.body, "not written")):
	default:
		t.Errorf("%s is in Kafka %d times, answered %d %q", what, n, a.code, strings.TrimSpace(a.body))
	}
}

// bigValue is a msgpack bin value of n bytes no other test sends.
func bigValue(t testing.TB, n int) []byte {
	t.Helper()
	b := binary.BigEndian.AppendUint32([]byte{0xc6}, uint32(n))
	for len(b) < 5+n {
		b = append(b, t.Name()...)
	}
	return b[:5+n]
}

// kafkaWriteBlocked tells whether a goroutine of kgo's is blocked writing
// a request to a broker that does not read it.
func kafkaWriteBlocked() bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "kgo.(*brokerCxn).writeConn") && strings.Contains(g, "waitWrite") {
			return true
		}
	}
	return false
}
