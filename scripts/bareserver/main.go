// Command bareserver is the HTTP ceiling for benchmarks: a fasthttp server
// that reads each request body and answers 200, doing nothing else; with
// -spooled it answers 202 {"spooled":true} as kproxy does for a spooled
// record (scripts/bench-spool.sh); with -body FILE it answers every request
// with that file's contents, as a ceiling for a server answering a stored
// document (scripts/bench-kmonitor.sh).
//
//	go run ./scripts/bareserver -addr 127.0.0.1:5099 [-spooled | -body FILE]
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
	spooled := fs.Bool("spooled", false, "answer 202 {\"spooled\":true}, as kproxy does for a spooled record")
	bodyFile := fs.String("body", "", "answer every request with this file's contents")
	_ = fs.Parse(os.Args[1:])
	var n int
	code, body := fasthttp.StatusOK, `{"partition":0,"offset":0}`+"\n"
	if *spooled {
		code, body = fasthttp.StatusAccepted, `{"spooled":true}`+"\n"
	}
	if *bodyFile != "" {
		b, err := os.ReadFile(*bodyFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bareserver:", err)
			os.Exit(2)
		}
		body = string(b)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		n += len(ctx.PostBody()) // read the body, as kproxy does
		ctx.SetStatusCode(code)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(body)
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
