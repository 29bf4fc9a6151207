// Command kgoproxy is the reference kproxy is measured against: the
// shortest HTTP → Kafka proxy on franz-go. POST /commit?topic=&key= writes
// the body as one record with one ProduceSync per request (acks=1, no
// idempotence, no linger, murmur2 key partitioning, no compression) and
// answers 200, or 500 with the error. GET /stats answers "ok N inflight N":
// the records answered 200 and the requests being handled.
//
//	go run ./scripts/kgoproxy -addr 127.0.0.1:5031 -brokers 127.0.0.1:9092
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
)

func main() {
	fs := flag.NewFlagSet("kgoproxy", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:5031", "listen address")
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	_ = fs.Parse(os.Args[1:])
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*brokers, ",")...),
		kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kgoproxy:", err)
		os.Exit(1)
	}
	var ok, inflight atomic.Int64
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/stats" {
			fmt.Fprintf(ctx, "ok %d inflight %d\n", ok.Load(), inflight.Load())
			return
		}
		inflight.Add(1)
		defer inflight.Add(-1)
		r := &kgo.Record{Topic: string(ctx.QueryArgs().Peek("topic")), Key: append([]byte(nil), ctx.QueryArgs().Peek("key")...),
			Value: append([]byte(nil), ctx.PostBody()...)}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
			return
		}
		ok.Add(1)
		fmt.Fprintf(ctx, `{"partition":%d,"offset":%d}`+"\n", r.Partition, r.Offset)
	}}
	stopped := make(chan struct{})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		_ = srv.Shutdown() // returns once the requests in flight are answered
		close(stopped)
	}()
	if err := srv.ListenAndServe(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "kgoproxy:", err)
		os.Exit(1)
	}
	<-stopped
	cl.Close()
}
