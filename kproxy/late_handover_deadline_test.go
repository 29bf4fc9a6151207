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

// TestLateHandedRecordNotSentAfterItsDeadline: a record is never sent
// after its deadline. kgo checks only the first record of a batch before
// sending it; a record handed to it after one of a later deadline — here a
// /commit with Expect: 100-continue, whose deadline runs from its headers,
// its body sent a while later — sat in a batch behind that record and was
// written with it once the broker answered again, after its client was
// answered 504: a client sending it again wrote it twice.
//
// E's headers at 0 (deadline 3 s); X at 1 s (deadline 4 s), its request
// held by the broker until 3.7 s; C at 1.5 s (deadline 4.5 s), buffered
// behind X; E's body at 1.7 s, buffered behind C; E answered 504 at
// 3.25 s; at 3.7 s X is answered and the batch of C and E is due — E must
// not be in it. X's request, out before E came, is not cut: X is written.
func TestLateHandedRecordNotSentAfterItsDeadline(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.AutoCreateTopics = false
		cfg.ProduceTimeoutMs = 3000
		cfg.ReadTimeoutMs = 10_000
	})
	if a := p.post(t, "topic="+topic+"&key=k", mp(t, "warm")); a.code != 200 {
		t.Fatalf("first record: %d %s", a.code, a.body)
	}
	post := func(v string, answers chan<- string) {
		resp, err := http.Post(p.url+"/commit?topic="+topic+"&key=k", "application/msgpack", bytes.NewReader(mp(t, v)))
		if err != nil {
			answers <- v + ": " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answers <- fmt.Sprintf("%s: %d %s", v, resp.StatusCode, b)
	}

	e, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	body := mp(t, "late")
	fmt.Fprintf(e, "POST /commit?topic=%s&key=k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", topic, len(body))
	start := time.Now()
	if a := <-readAnswers([]net.Conn{e}, 5*time.Second); !strings.HasPrefix(a, "HTTP/1.1 100") {
		t.Fatalf("E's headers answered %q, want 100 Continue", a)
	}
	answers := make(chan string, 2)
	time.Sleep(time.Until(start.Add(time.Second)))
	kafkatest.NewFaults(t, c).Sleep(int16(kmsg.Produce), 1, 2700*time.Millisecond)
	go post("x", answers)
	time.Sleep(time.Until(start.Add(1500 * time.Millisecond)))
	go post("c", answers)
	time.Sleep(time.Until(start.Add(1700 * time.Millisecond)))
	e.Write(body)
	e.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 1024)
	n, _ := io.ReadAtLeast(e, b, 12)
	t.Logf("E answered after %v: %q", time.Since(start).Round(time.Millisecond), b[:n])
	if !strings.HasPrefix(string(b[:n]), "HTTP/1.1 504") {
		t.Fatalf("E answered %q, want 504 at its deadline (the broker holds X's request past it)", b[:n])
	}
	for range 2 {
		a := <-answers
		t.Log(a)
		if strings.HasPrefix(a, "x:") && !strings.HasPrefix(a, "x: 200") {
			t.Errorf("X, its request out before E came and answered before X's deadline: %s, want 200", a)
		}
	}
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		if string(r.Value) == string(body) {
			t.Fatalf("E, answered 504 at its deadline, was written after it (offset %d)", r.Offset)
		}
	}
}
