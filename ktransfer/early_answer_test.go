package ktransfer_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// earlyAnswerBackend answers a push whose body is at least big bytes as
// soon as it has read the request's head, with status, and closes the
// connection without reading the body (as nginx over client_max_body_size,
// or a handler that answers before reading, do); others it reads and
// answers 200. Its small receive buffer makes the pusher's write of a big
// body fail (the connection closed under it) before the body is out. It
// returns the address and the count of big pushes seen.
func earlyAnswerBackend(t *testing.T, big, status int) (string, *atomic.Int64) {
	t.Helper()
	lc := net.ListenConfig{Control: runtest.SmallReceiveBuffer(4096)}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var bigSeen atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.ContentLength >= int64(big) {
						bigSeen.Add(1)
						io.WriteString(c, "HTTP/1.1 "+strconv.Itoa(status)+" "+http.StatusText(status)+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
						time.Sleep(50 * time.Millisecond) // the answer reaches the pusher before the reset
						return                            // closed with the body unread
					}
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				}
			})
		}
	})
	return ln.Addr().String(), &bigSeen
}

// TestAnswerBeforeTheBodyIsRead: a backend answers a large record 413 (a
// permanent refusal) after reading the request's head only, and closes
// the connection with the body unread; the pusher's write fails under
// it. The answer was never read: the push counted as a connection error,
// retried (for ever with max_retry_times -1) and charged to the backend's
// breaker, and the record went to the dead-letter topic only once the
// retries ran out, as a connection error. It is read: the record is given
// up at once with its status, pushed once. A 200 sent so is not taken for
// a push (the backend had part of the body only): the record is pushed
// again, each time, until its retries run out.
func TestAnswerBeforeTheBodyIsRead(t *testing.T) {
	for _, c := range []struct {
		status, pushes int
		reason         string
	}{
		{http.StatusRequestEntityTooLarge, 1, "status 413"},
		{http.StatusOK, 6, "retries exhausted: transport: write tcp"},
	} {
		t.Run(strconv.Itoa(c.status), func(t *testing.T) { answerBeforeTheBody(t, c.status, c.pushes, c.reason) })
	}
}

func answerBeforeTheBody(t *testing.T, status, pushes int, reason string) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	// Larger than what the kernel buffers of a loopback connection hold
	// (the sender's up to 4 MiB): the write cannot end before the close.
	const size = 6_000_000
	addr, bigSeen := earlyAnswerBackend(t, size, status)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := kafkatest.Client(t, e.kafka, e.kc, kgo.ProducerBatchMaxBytes(7_000_000))
	for _, topic := range []string{"t", "dlq"} {
		res, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr("7000000")}}, topic)
		if err == nil {
			err = res[0].Err
		}
		if err != nil {
			t.Fatalf("max.message.bytes of %s: %v", topic, err)
		}
	}
	for _, r := range []*kgo.Record{
		{Topic: "t", Key: []byte("big"), Value: bytes.Repeat([]byte("x"), size)},
		{Topic: "t", Key: []byte("small"), Value: []byte("s")},
	} {
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	m := module("m", "t", addr)
	m.DeadLetterTopic = "dlq"
	m.MaxRetryTimes = 5
	e.start(t, m)
	waitFor(t, "both records done and offset 2 stored", 20*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == "2"
	})
	dead := kafkatest.ReadAll(t, e.kafka, e.kc, "dlq")
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	if h := headersOf(dead[0]); !strings.HasPrefix(h["ktransfer-reason"], reason) || bigSeen.Load() != int64(pushes) {
		t.Errorf("answered %d before the body was read: dead letter's reason %q after %d pushes of the large record; want %q… after %d",
			status, h["ktransfer-reason"], bigSeen.Load(), reason, pushes)
	}
}
