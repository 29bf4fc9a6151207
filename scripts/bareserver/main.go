// Command bareserver is the HTTP ceiling for benchmarks: a fasthttp server
// that reads each request body and answers 200, doing nothing else.
//
//	go run ./scripts/bareserver -addr 127.0.0.1:5099
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/valyala/fasthttp"
)

func main() {
	fs := flag.NewFlagSet("bareserver", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:5099", "listen address")
	_ = fs.Parse(os.Args[1:])
	var n int
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		n += len(ctx.PostBody()) // read the body, as kproxy does
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"partition":0,"offset":0}` + "\n")
	}}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		_ = srv.Shutdown()
	}()
	if err := srv.ListenAndServe(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "bareserver:", err)
		os.Exit(1)
	}
}
