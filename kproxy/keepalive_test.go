package kproxy_test

import (
	"bufio"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// One keep-alive connection, with and without release_idle_buffers:
// requests arriving whole, in pieces (the request line's first byte
// alone, then the rest after a pause), two in one write, one stalled past
// read_timeout_ms; every record answered 200 is in Kafka once.
func TestKeepAliveConnection(t *testing.T) {
	for _, release := range []bool{false, true} {
		t.Run("release_idle_buffers="+strconv.FormatBool(release), func(t *testing.T) {
			c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}})
			p := startProxy(t, c, func(cfg *kproxy.Config) {
				cfg.ReleaseIdleBuffers = release
				// Long enough that a stalled test process (the pauses
				// between pieces, between an answer and the next request)
				// is not taken for a stalled client.
				cfg.ReadTimeoutMs = 2000
			})
			conn, err := net.Dial("tcp", p.srv.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			body := string(record(t, map[string]any{"n": 1}))
			req := "POST /commit?topic=" + topic + "&key=k HTTP/1.1\r\nHost: kproxy\r\nContent-Length: " +
				strconv.Itoa(len(body)) + "\r\n\r\n" + body
			br := bufio.NewReader(conn)
			answered := 0
			expect := func(what string, code int) {
				t.Helper()
				var resp fasthttp.Response
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				if err := resp.Read(br); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if resp.StatusCode() != code {
					t.Fatalf("%s: %d %s, want %d", what, resp.StatusCode(), resp.Body(), code)
				}
				if code == 200 {
					answered++
				}
			}
			write := func(s string) {
				t.Helper()
				if _, err := conn.Write([]byte(s)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 3 {
				write(req)
				expect("request "+strconv.Itoa(i), 200)
			}
			write(req[:1])
			time.Sleep(50 * time.Millisecond) // the first byte is read alone
			write(req[1:20])
			time.Sleep(50 * time.Millisecond)
			write(req[20:])
			expect("request in three pieces", 200)
			write(req + req)
			expect("first of two in one write", 200)
			expect("second of two in one write", 200)
			// A request stalled past read_timeout_ms is answered 408 and
			// its connection closed.
			write(req[:30])
			expect("stalled request", 408)
			if n := endOffsets(t, c, topic); n != int64(answered) {
				t.Fatalf("%d records in Kafka, %d answered 200", n, answered)
			}
		})
	}
}

// With the default timeouts (read_timeout_ms and write_timeout_ms 100), a
// keep-alive request stalled past read_timeout_ms still gets its 408 (it
// was written under the deadline set for the previous answer, long past:
// the connection closed with nothing), and an answer fasthttp holds
// back behind a pipelined request (release_idle_buffers false) reaches
// the client before it: its record is in Kafka.
func TestKeepAliveTimeoutsAnswered(t *testing.T) {
	for _, release := range []bool{false, true} {
		t.Run("release_idle_buffers="+strconv.FormatBool(release), func(t *testing.T) {
			c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}})
			p := startProxy(t, c, func(cfg *kproxy.Config) {
				cfg.ReleaseIdleBuffers = release
				cfg.ReadTimeoutMs, cfg.WriteTimeoutMs = 100, 100
			})
			body := string(record(t, map[string]any{"n": 1}))
			req := "POST /commit?topic=" + topic + "&key=k HTTP/1.1\r\nHost: kproxy\r\nContent-Length: " +
				strconv.Itoa(len(body)) + "\r\n\r\n" + body
			// answers sends what on a new connection, reads the first
			// answer, waits past read_timeout_ms (from that answer: a
			// first request slow on a loaded machine must not leave the
			// second one less than that), sends rest, and returns the
			// codes read until the connection ends.
			answers := func(what, rest string) []int {
				conn, err := net.Dial("tcp", p.srv.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if _, err := conn.Write([]byte(what)); err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(conn)
				var codes []int
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				read := func() bool {
					var resp fasthttp.Response
					if err := resp.Read(br); err != nil {
						return false
					}
					codes = append(codes, resp.StatusCode())
					return true
				}
				if !read() {
					return codes
				}
				time.Sleep(300 * time.Millisecond)
				conn.Write([]byte(rest)) // the server may have closed it already
				for read() {
				}
				return codes
			}
			cut := len(req) - 3
			if got := answers(req+req[:cut], req[cut:]); !slices.Equal(got, []int{200, 408}) {
				t.Errorf("a request, then one pipelined behind it and stalled: answers %v, want [200 408]", got)
			}
			if got := answers(req+req[:30], ""); !slices.Equal(got, []int{200, 408}) {
				t.Errorf("a request, then a keep-alive request stalled: answers %v, want [200 408]", got)
			}
			if n := endOffsets(t, c, topic); n != 2 {
				t.Errorf("%d records in Kafka, 2 answered 200", n)
			}
		})
	}
}
