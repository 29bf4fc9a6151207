package kproxy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// BenchmarkCommit is scripts/bench-kproxy.sh's acks=1 load in one
// process: POST /commit?topic=bench&acks=1&key=userN with the 200-byte
// msgpack body, keys from 10,000, 64 at a time, to three kfake brokers in
// this process; every answer must be 200. An op is a request.
//
//   - handler: the handler called with a request already read (kproxy's
//     own work, the Kafka client's and the brokers');
//   - server: the same through the HTTP server over loopback, 64
//     keep-alive connections writing a request and reading its answer
//     (fasthttp's serving, its options and the sockets' system calls
//     besides; the clients' reading and writing too).
//
// cpu-ns/op is the process's CPU time (user and system) per request,
// the brokers' and the load's included: it holds still where ns/op
// follows whatever else the machine runs. kfake keeps every record in
// memory (about 0.5 KB each): bound the run, e.g.
//
//	go test -run '^$' -bench Commit -benchtime 100000x ./kproxy
func BenchmarkCommit(b *testing.B) {
	c := kafkatest.StartBrokers(b, 3, []kafkatest.Topic{{Name: "bench", Partitions: 4}})
	s := runBenchServer(b, c.ListenAddrs(), nil)
	body := benchValue(b)
	var next atomic.Int64 // the next key
	request := func() string {
		k := next.Add(1) % 10_000
		return "POST /commit?topic=bench&acks=1&key=user" + strconv.FormatInt(k, 10) + " HTTP/1.1\r\nHost: kproxy\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body)
	}
	s.handle(requestCtx(b, request())) // the topic's metadata, outside the timing

	b.Run("handler", func(b *testing.B) {
		benchParallel(b, 64, func(pb *testing.PB) {
			// Each goroutine cycles through 16 requests of its own.
			reqs := make([]*fasthttp.RequestCtx, 16)
			for i := range reqs {
				reqs[i] = requestCtx(b, request())
			}
			for i := 0; pb.Next(); i++ {
				rc := reqs[i%len(reqs)]
				rc.Response.Reset()
				s.handle(rc)
				if code := rc.Response.StatusCode(); code != 200 {
					b.Fatalf("status %d: %s", code, rc.Response.Body())
				}
			}
		})
	})

	b.Run("server", func(b *testing.B) {
		benchParallel(b, 64, func(pb *testing.PB) {
			conn, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			reqs := make([][]byte, 16)
			for i := range reqs {
				reqs[i] = []byte(request())
			}
			br := bufio.NewReader(conn)
			var resp fasthttp.Response
			for i := 0; pb.Next(); i++ {
				if _, err := conn.Write(reqs[i%len(reqs)]); err != nil {
					b.Fatal(err)
				}
				if err := resp.Read(br); err != nil {
					b.Fatal(err)
				}
				if code := resp.StatusCode(); code != 200 {
					b.Fatalf("status %d: %s", code, resp.Body())
				}
			}
		})
	})
}

// runBenchServer runs a kproxy on a free loopback port against brokers,
// its configuration changed by set (nil: the defaults), until the
// benchmark's end.
func runBenchServer(b *testing.B, brokers []string, set func(*Config)) *Server {
	b.Helper()
	cfg := DefaultConfig()
	cfg.Port = 0
	cfg.ListenHost = "127.0.0.1"
	cfg.BrokerHosts = brokers
	if set != nil {
		set(&cfg)
	}
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			b.Errorf("Run: %v", err)
		}
	})
	return s
}
