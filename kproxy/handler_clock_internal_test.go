package kproxy

import (
	"io"
	"log/slog"
	"strconv"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// A RequestCtx prepared by Init (fasthttp's way for custom servers, and
// the handler benchmarks') carries no arrival time. /commit must take the
// clock then, not run its record's deadline from the zero time and answer
// 503 "not written" at once.
func TestCommitWithoutServerClockIsWritten(t *testing.T) {
	c := kafkatest.StartBrokers(t, 1, []kafkatest.Topic{{Name: "clock", Partitions: 1}})
	cfg := DefaultConfig()
	cfg.Port, cfg.ListenHost, cfg.AdminAddr = 0, "127.0.0.1", "" // not the default ports: another test process may hold them
	cfg.BrokerHosts = c.ListenAddrs()
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	body := "\x81\xa6method\xa4Test"
	raw := "POST /commit?topic=clock&acks=1&key=k HTTP/1.1\r\nHost: kproxy\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	ctx := requestCtx(t, raw)
	if !ctx.Time().IsZero() {
		t.Fatalf("the test needs a RequestCtx without a time; it has %v", ctx.Time())
	}
	s.handle(ctx)
	if code := ctx.Response.StatusCode(); code != 200 {
		t.Fatalf("status %d: %s", code, ctx.Response.Body())
	}
}
