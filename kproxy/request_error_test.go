package kproxy_test

import (
	"bufio"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestMalformedRequestLineKeepsSecrets: a request whose first line lacks
// its HTTP version is answered 400 with one line saying so, but neither
// that answer nor kproxy's log (at debug, where the HTTP server's errors
// go) carries the request's other headers: its Authorization and Cookie
// hold a client's secret (README, clients: secrets are never logged).
func TestMalformedRequestLineKeepsSecrets(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	const secret = "shop-pass-Zq81"
	cfg := kproxy.DefaultConfig()
	cfg.Port, cfg.ListenHost, cfg.AdminAddr = 0, "127.0.0.1", "127.0.0.1:0"
	cfg.BrokerHosts = c.ListenAddrs()
	cfg.ReadTimeoutMs, cfg.WriteTimeoutMs = 2000, 2000
	cfg.Clients = []kproxy.Client{{Name: "shop", Secret: secret, Topics: []string{topic}}}
	var logs runtest.Log
	srv, err := kproxy.New(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	p := runProxy(t, srv)

	auth := base64.StdEncoding.EncodeToString([]byte("shop:" + secret))
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	go conn.Write([]byte("POST /commit?topic=" + topic + "\r\nAuthorization: Basic " + auth +
		"\r\nCookie: session=" + secret + "\r\nContent-Length: 1\r\nConnection: close\r\n\r\n\x01"))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	a := answer{resp.StatusCode, string(b), resp.Header}
	if a.code != 400 || !oneLine(a) || !strings.Contains(a.body, "first line") {
		t.Errorf("%d %q, want 400 with one line about the request's first line", a.code, a.body)
	}
	if strings.Contains(a.body, auth) || strings.Contains(a.body, secret) {
		t.Errorf("the answer carries the request's credentials: %q", a.body)
	}
	// The server logs the connection's error once the answer is written.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "first line") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l := logs.String(); strings.Contains(l, auth) || strings.Contains(l, secret) {
		t.Errorf("the log carries the request's credentials:\n%s", l)
	}
	if n := endOffsets(t, c, topic); n != 0 {
		t.Errorf("%d records written", n)
	}
}
