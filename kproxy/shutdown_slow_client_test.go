package kproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// unread is the number of bytes the kernel holds for kproxy, not yet read,
// on its end of conn (from /proc/net/tcp), or -1 when that end is not found.
func unread(t *testing.T, conn net.Conn) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	local, remote := conn.RemoteAddr().(*net.TCPAddr), conn.LocalAddr().(*net.TCPAddr)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasSuffix(f[1], fmt.Sprintf(":%04X", local.Port)) && strings.HasSuffix(f[2], fmt.Sprintf(":%04X", remote.Port)) {
			var tx, rx int
			fmt.Sscanf(f[4], "%x:%x", &tx, &rx)
			return rx
		}
	}
	return -1
}

// slowClientAtShutdown starts a kproxy with read_timeout_ms 20 s and
// shutdown_timeout_ms 500 and a client that, after a first request
// answered, has sent the start of its next request's headers and nothing
// more: kproxy is reading it.
func slowClientAtShutdown(t *testing.T, edit func(*kproxy.Config)) (*proxy, net.Conn, *runtest.Log) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	logs := &runtest.Log{}
	p := logProxy(t, c, logs, func(cfg *kproxy.Config) {
		cfg.ReadTimeoutMs = 20_000
		cfg.ShutdownTimeoutMs = 500
		if edit != nil {
			edit(cfg)
		}
	})
	addr := strings.TrimPrefix(p.url, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// A first request answered: kproxy serves the connection.
	if _, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	// The next one's first bytes, and no more for now.
	if _, err := io.WriteString(conn, "POST /commit?topic=orders HTTP/1.1\r\nHost: "); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "kproxy reading the request", func() bool { return unread(t, conn) == 0 })
	return p, conn, logs
}

// A client still sending its request's headers at SIGTERM, slower than
// shutdown_timeout_ms (within read_timeout_ms), holds the shutdown past
// shutdown_timeout_ms, and the Kafka clients are closed without their
// flush. Nothing was buffered in them: no record was taken, none lost, and
// Run returns no error (kproxy exits 0, not 1 with "0 records not
// delivered").
func TestShutdownPastTimeoutWithNothingLostIsNoError(t *testing.T) {
	p, _, logs := slowClientAtShutdown(t, nil)
	if err := p.stop(); err != nil {
		t.Errorf("Run: %v, want nil: no record was taken, none lost\n%s", err, logs.String())
	}
}

// The shutdown closes the connections still open once the requests in
// flight have had their time (the log says so): the slow client's
// connection is closed by the time Run returns, not left to read_timeout_ms
// with the goroutine reading it.
func TestShutdownClosesConnectionsLeftOpen(t *testing.T) {
	p, conn, logs := slowClientAtShutdown(t, nil)
	p.stop()
	if !closedWithin(conn, time.Second) {
		t.Errorf("the connection still open 1s after Run returned, want closed\n%s", logs.String())
	}
}

// As above with spool_dir set: the spool's drain client, closed without
// its flush with nothing buffered, is no error either.
func TestShutdownPastTimeoutWithSpoolAndNothingLostIsNoError(t *testing.T) {
	p, _, logs := slowClientAtShutdown(t, func(cfg *kproxy.Config) { cfg.SpoolDir = t.TempDir() })
	if err := p.stop(); err != nil {
		t.Errorf("Run: %v, want nil: no record was taken, none lost\n%s", err, logs.String())
	}
}
