package kproxy_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/valyala/fasthttp"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// TestSlowPipeliningClientGetsItsAnswersAtShutdown attacks README's
// "Shutdown … lets the requests in flight finish (their records are
// written and answered …)". A slow keep-alive client (a small receive
// buffer, reading its answers only later) pipelines n small /commit
// requests, then two large ones; the n-th waits at the broker when the
// stop comes. The shutdown finishes it and closes the connection after
// its answer with the large requests unread: the kernel then reset the
// connection and dropped the answers it had not yet delivered — records
// in Kafka whose 200 never reached the client (7 of 60). Every record
// answered 200 must get its answer to the client, over plain HTTP and over
// TLS (where it lost 57 of 60); the same run without the stop is the
// control.
func TestSlowPipeliningClientGetsItsAnswersAtShutdown(t *testing.T) {
	certs := testcert.New(t)
	for _, mode := range []string{"1", "-1", "1/no-stop", "1/tls", "1/tls/no-stop"} {
		nostop, overTLS := strings.HasSuffix(mode, "/no-stop"), strings.Contains(mode, "/tls")
		acks, _, _ := strings.Cut(mode, "/")
		t.Run("acks="+mode, func(t *testing.T) {
			const n = 60
			c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
			p := startProxy(t, c, func(cfg *kproxy.Config) {
				cfg.ShutdownTimeoutMs = 5000
				if overTLS {
					cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey
				}
			})
			if !overTLS {
				decode(t, p.post(t, "topic="+topic+"&key=k&acks="+acks, unique(t, "warm")))
			}
			rel := make(chan struct{})
			var seen, held atomic.Int32
			c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				if seen.Add(1) == n {
					held.Add(1)
					c.SleepControl(func() { <-rel })
				}
				return nil, nil, false
			})
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024) })
				return nil
			}}
			var conn net.Conn
			var err error
			if overTLS {
				conn, err = tls.DialWithDialer(&d, "tcp", p.srv.Addr().String(), &tls.Config{RootCAs: certs.CA})
			} else {
				conn, err = d.Dial("tcp", p.srv.Addr().String())
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			req := func(body []byte) string {
				return "POST /commit?topic=" + topic + "&key=k&acks=" + acks + " HTTP/1.1\r\nHost: k\r\nContent-Length: " +
					strconv.Itoa(len(body)) + "\r\n\r\n" + string(body)
			}
			var all strings.Builder
			bodies := make([]string, n)
			for i := range n {
				bodies[i] = string(unique(t, "r"+strconv.Itoa(i)))
				all.WriteString(req([]byte(bodies[i])))
			}
			big := unique(t, strings.Repeat("x", 100_000))
			all.WriteString(req(big) + req(big))
			go conn.Write([]byte(all.String()))
			waitFor(t, "the last small request at the broker", func() bool { return held.Load() > 0 })
			if nostop {
				close(rel) // control: no shutdown
			} else {
				stopped := make(chan error, 1)
				go func() { stopped <- p.stop() }()
				awaitShutdown(t, p.srv)
				close(rel)
				<-stopped
			}
			time.Sleep(200 * time.Millisecond)
			br := bufio.NewReader(conn)
			got := 0
			var rerr error
			for got < n {
				var resp fasthttp.Response
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				if rerr = resp.Read(br); rerr != nil {
					break
				}
				if resp.StatusCode() != 200 {
					t.Fatalf("answer %d: %d %s", got, resp.StatusCode(), resp.Body())
				}
				got++
			}
			kafka := inKafka(t, c)
			inK := 0
			for _, b := range bodies {
				inK += kafka[b]
			}
			t.Logf("answers read %d of %d (then %v); %d of the %d records in Kafka", got, n, rerr, inK, n)
			if inK > got {
				t.Errorf("%d records are in Kafka but only %d answers reached the client (%v): answers of written records lost at shutdown", inK, got, rerr)
			}
		})
	}
}
