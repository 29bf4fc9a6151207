package kproxy_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// A record is never sent after its deadline. kgo checks only the first
// record of a batch before sending it; a record handed to it after one of
// a later deadline — a /commit with Expect: 100-continue, whose deadline
// runs from its headers, its body sent a while later — sat in a batch
// behind that record and was written with it once the broker answered
// again, after its client was answered 504: a client sending it again
// wrote it twice.

// lateStep is one request of a late hand-over scenario: at headers, a
// /commit's headers with Expect: 100-continue (its deadline runs from
// there), its body at body; with body 0, a plain POST at headers.
type lateStep struct {
	name          string
	headers, body time.Duration
}

// lateHandover runs steps against a kproxy with produce_timeout_ms
// timeout, the broker holding the first produce request made from hold
// (X's, the plain POST named "x") until release, and returns the answers
// by name and the values written.
func lateHandover(t *testing.T, timeout time.Duration, hold, release time.Duration, steps []lateStep) (map[string]string, map[string]bool) {
	t.Helper()
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.AutoCreateTopics = false
		cfg.ProduceTimeoutMs = int(timeout.Milliseconds())
		cfg.ReadTimeoutMs = 20_000
	})
	if a := p.post(t, "topic="+topic+"&key=k", mp(t, "warm")); a.code != 200 {
		t.Fatalf("first record: %d %s", a.code, a.body)
	}
	answers := make(chan [2]string, len(steps))
	start := time.Now()
	at := func(d time.Duration) { time.Sleep(time.Until(start.Add(d))) }
	type event struct {
		at time.Duration
		do func()
	}
	var events []event
	for _, st := range steps {
		value := mp(t, st.name)
		if st.body == 0 {
			events = append(events, event{st.headers, func() {
				go func() {
					resp, err := http.Post(p.url+"/commit?topic="+topic+"&key=k", "application/msgpack", bytes.NewReader(value))
					if err != nil {
						answers <- [2]string{st.name, err.Error()}
						return
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					answers <- [2]string{st.name, fmt.Sprintf("%d %s", resp.StatusCode, b)}
				}()
			}})
			continue
		}
		var conn net.Conn
		events = append(events, event{st.headers, func() {
			var err error
			if conn, err = net.Dial("tcp", strings.TrimPrefix(p.url, "http://")); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			fmt.Fprintf(conn, "POST /commit?topic=%s&key=k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", topic, len(value))
			if a := <-readAnswers([]net.Conn{conn}, 5*time.Second); !strings.HasPrefix(a, "HTTP/1.1 100") {
				t.Fatalf("%s's headers answered %q, want 100 Continue", st.name, a)
			}
		}}, event{st.body, func() {
			conn.Write(value)
			go func() {
				conn.SetReadDeadline(time.Now().Add(20 * time.Second))
				b := make([]byte, 1024)
				n, _ := io.ReadAtLeast(conn, b, 12)
				answers <- [2]string{st.name, fmt.Sprintf("%q after %v", b[:n], time.Since(start).Round(time.Millisecond))}
			}()
		}})
	}
	events = append(events, event{hold, func() {
		kafkatest.NewFaults(t, c).Sleep(int16(kmsg.Produce), 1, release-hold)
	}})
	for len(events) > 0 {
		next := 0
		for i, e := range events {
			if e.at < events[next].at {
				next = i
			}
		}
		at(events[next].at)
		events[next].do()
		events = append(events[:next], events[next+1:]...)
	}
	got := map[string]string{}
	for range steps {
		a := <-answers
		got[a[0]] = a[1]
		t.Logf("%s: %s", a[0], a[1])
	}
	written := map[string]bool{}
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		for _, st := range steps {
			if string(r.Value) == string(mp(t, st.name)) {
				written[st.name] = true
			}
		}
	}
	return got, written
}

// E's headers at 0 (deadline 3 s); X at 1 s (deadline 4 s), its request
// held by the broker until 3.7 s; C at 1.5 s (deadline 4.5 s), buffered
// behind X; E's body at 1.7 s, buffered behind C; E answered 504 at
// 3.25 s; at 3.7 s X is answered and the batch of C and E is due — E must
// not be in it. X's request, out before E came, is not cut: X is written.
func TestLateHandedRecordNotSentAfterItsDeadline(t *testing.T) {
	ms := time.Millisecond
	got, written := lateHandover(t, 3000*ms, 990*ms, 3700*ms, []lateStep{
		{name: "e", headers: 0, body: 1700 * ms},
		{name: "x", headers: time.Second},
		{name: "c", headers: 1500 * ms},
	})
	if !strings.Contains(got["e"], "HTTP/1.1 504") {
		t.Errorf("E answered %s, want 504 at its deadline (the broker holds X's request past it)", got["e"])
	}
	if written["e"] {
		t.Errorf("E, answered 504 at its deadline, was written after it")
	}
	if !strings.HasPrefix(got["x"], "200") || !written["x"] {
		t.Errorf("X, its request out before E came and answered before X's deadline: %s, want 200", got["x"])
	}
}

// Two late records handed over out of their deadlines' order: F (headers
// at 0.6 s, deadline 4.6 s) handed at 1.6 s, then E (headers at 0,
// deadline 4 s) at 1.8 s, both behind X (at 1 s, deadline 5 s) whose
// request the broker holds until 4.45 s. E is answered 504 at 4.25 s; the
// batch of F and E is due at 4.45 s, F's deadline not passed — E must not
// be in it.
func TestTwoLateRecordsNotSentAfterTheirDeadlines(t *testing.T) {
	ms := time.Millisecond
	got, written := lateHandover(t, 4000*ms, 990*ms, 4450*ms, []lateStep{
		{name: "e", headers: 0, body: 1800 * ms},
		{name: "f", headers: 600 * ms, body: 1600 * ms},
		{name: "x", headers: time.Second},
	})
	if !strings.Contains(got["e"], "HTTP/1.1 504") {
		t.Errorf("E answered %s, want 504 at its deadline (the broker holds X's request past it)", got["e"])
	}
	if written["e"] {
		t.Errorf("E, answered 504 at its deadline, was written after it")
	}
}
