package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// rssKiB reads a process's resident memory (VmRSS) or its peak (VmHWM).
func rssKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// firstStatus sends payload on a new connection and returns the status of
// the first answer, or 0 when the server closed the connection without one
// within wait.
func firstStatus(t *testing.T, addr, payload string, wait time.Duration) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(payload))
	c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHostileClients runs kproxy_bin against clients that misbehave in the
// ways an attacker or a broken client does, while a well-behaved client
// keeps writing. kproxy must answer the well-behaved one throughout, close
// the others within read_timeout_ms, write nothing for what it refused, and
// keep its memory bounded with 10,000 idle connections open.
func TestHostileClients(t *testing.T) {
	raiseFileLimit(t, 12_000)
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 2}})
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	const readTimeout = time.Second
	cfg := fmt.Sprintf("log_dir: %s\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\nbroker_hosts: [%s]\n"+
		"read_timeout_ms: %d\nwrite_timeout_ms: 1000\nidle_timeout_ms: 60000\nmax_request_size_bytes: 65536\n"+
		"release_idle_buffers: true\n",
		filepath.Join(dir, "log"), port, c.ListenAddrs()[0], readTimeout.Milliseconds())
	f := filepath.Join(dir, "kproxy.yaml")
	os.WriteFile(f, []byte(cfg), 0o644)
	cmd, stderr := bintest.Start(t, binary(t), "-f", f)
	exited := bintest.Exited(t, cmd)
	pid := cmd.Process.Pid

	good := "http://" + addr + "/commit?topic=t&key=good"
	bintest.AwaitServing(t, cmd, exited, bintest.StartWithin, stderr, bintest.LogFile(filepath.Join(dir, "log", "kproxy.log")), func() error {
		return bintest.Answers200(http.Post(good, "", bytes.NewReader([]byte{0x01})))
	})
	written := int64(1)
	baseRSS := rssKiB(t, pid, "VmRSS")

	// The well-behaved client, all along.
	var goodOK, goodFail atomic.Int64
	var slowest atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		client := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			start := time.Now()
			resp, err := client.Post(good, "", bytes.NewReader([]byte{0x01}))
			if d := int64(time.Since(start)); d > slowest.Load() {
				slowest.Store(d)
			}
			if err != nil {
				goodFail.Add(1)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				goodOK.Add(1)
			} else {
				goodFail.Add(1)
			}
		}
	})

	// Rejected requests, each answered with a clear status (or cut off)
	// and never written.
	hdr := "POST /commit?%s HTTP/1.1\r\nHost: k\r\nContent-Length: %d\r\n\r\n%s"
	for _, tc := range []struct {
		name, payload string
		want          int
	}{
		{"bad percent-encoding", fmt.Sprintf(hdr, "topic=%zz", 1, "\x01"), 400},
		{"NUL in the topic", fmt.Sprintf(hdr, "topic=t%00", 1, "\x01"), 400},
		{"two topics", fmt.Sprintf(hdr, "topic=t&topic=__consumer_offsets", 1, "\x01"), 400},
		{"two keys", fmt.Sprintf(hdr, "topic=t&key=a&key=b", 1, "\x01"), 400},
		{"no value for acks", fmt.Sprintf(hdr, "topic=t&acks", 1, "\x01"), 400},
		{"acks out of range", fmt.Sprintf(hdr, "topic=t&acks=99999999999999999999", 1, "\x01"), 400},
		{"query of only separators", fmt.Sprintf(hdr, "&&&===&&", 1, "\x01"), 400},
		{"huge key in the request line", fmt.Sprintf(hdr, "topic=t&key="+strings.Repeat("k", 1<<20), 1, "\x01"), 431},
		{"body larger than declared", fmt.Sprintf(hdr, "topic=t", 2, "\x92\x01\x02\x03"), 400},
		{"declared over max_request_size_bytes", fmt.Sprintf(hdr, "topic=t", 1<<20, "\x01"), 413},
		{"negative Content-Length", fmt.Sprintf(hdr, "topic=t", -1, "\x01"), 400},
		{"endless chunked body", "POST /commit?topic=t HTTP/1.1\r\nHost: k\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strings.Repeat("1000\r\n"+strings.Repeat("\x00", 4096)+"\r\n", 20), 413},
		{"garbage request line", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n", 400},
		{"header without end", "POST /commit?topic=t HTTP/1.1\r\nX: " + strings.Repeat("a", 70_000), 431},
	} {
		if got := firstStatus(t, addr, tc.payload, 3*readTimeout); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}

	// Slow senders are cut off at read_timeout_ms: headers one byte at a
	// time, a body that stops, a chunked body without its end.
	for _, tc := range []struct{ name, start string }{
		{"slow-loris headers", "POST /commit?topic=t HTTP/1.1\r\nHost: k\r\n"},
		{"stalled body", "POST /commit?topic=t HTTP/1.1\r\nHost: k\r\nContent-Length: 100\r\n\r\n\x01\x02"},
		{"unterminated chunked body", "POST /commit?topic=t HTTP/1.1\r\nHost: k\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		conn.Write([]byte(tc.start))
		closed := false
		for time.Since(start) < 5*readTimeout {
			// Trickle a byte now and then, as slow-loris does.
			conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			var b [512]byte
			_, err := conn.Read(b[:])
			if err != nil && !isTimeout(err) {
				closed = true
				break
			}
			if tc.name == "slow-loris headers" {
				conn.Write([]byte("X"))
			}
		}
		conn.Close()
		if !closed {
			t.Errorf("%s: connection still open after %v (read_timeout_ms %v)", tc.name, time.Since(start), readTimeout)
		} else if d := time.Since(start); d > 2*readTimeout+1500*time.Millisecond { // and a loaded machine's stalls
			t.Errorf("%s: closed after %v, read_timeout_ms is %v", tc.name, d, readTimeout)
		}
	}

	// 10,000 idle connections, each after one request, kept alive.
	const idle = 10_000
	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	health := "GET /health HTTP/1.1\r\nHost: k\r\n\r\n"
	for i := range idle {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, conn)
		conn.Write([]byte(health))
		if i%500 == 0 { // the server keeps up while they pile up
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Read(make([]byte, 256)); err != nil {
				t.Fatalf("connection %d unanswered: %v", i, err)
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	idleRSS := rssKiB(t, pid, "VmRSS")
	// Every idle connection is still served.
	for i := 1; i < idle; i += idle / 20 {
		conns[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := conns[i].Read(make([]byte, 512)); err != nil {
			t.Errorf("idle connection %d: %v", i, err)
			break
		}
	}

	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	peak := rssKiB(t, pid, "VmHWM")
	t.Logf("well-behaved client: %d answered 200, %d failed, slowest %v; RSS %d KiB at start, %d KiB with %d idle connections, peak %d KiB",
		goodOK.Load(), goodFail.Load(), time.Duration(slowest.Load()), baseRSS, idleRSS, idle, peak)
	if goodFail.Load() != 0 || goodOK.Load() < 50 {
		t.Errorf("well-behaved client: %d ok, %d failed", goodOK.Load(), goodFail.Load())
	}
	// A hostile client holding it up would keep it past its 5 s timeout
	// (a failure); 3 s leaves room for the stalls of a loaded machine.
	if s := time.Duration(slowest.Load()); s > 3*time.Second {
		t.Errorf("well-behaved client waited %v at worst", s)
	}
	// 10,000 connections cost memory, but not without bound: an idle
	// keep-alive connection holds a goroutine and, with
	// release_idle_buffers (the default), no buffers (about 6 KiB
	// measured; 16 KiB when buffers stay attached).
	if grow := idleRSS - baseRSS; grow > idle*12 {
		t.Errorf("RSS grew %d KiB for %d idle connections", grow, idle)
	}
	written += goodOK.Load()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	<-exited
	if !cmd.ProcessState.Success() {
		t.Fatalf("exit after SIGTERM: %v; stderr: %s", cmd.ProcessState, stderr.String())
	}
	n := kafkatest.Records(t, c, kafkaconf.Default(), "t")
	if n != written {
		t.Errorf("%d records in Kafka, %d requests answered 200: a refused request was written", n, written)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// raiseFileLimit lifts this process's open-file limit to at least n (the
// hard limit allowing), for the client side of many connections.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Fatalf("open-file hard limit %d is below the %d this test needs (ulimit -Hn)", lim.Max, n)
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}
