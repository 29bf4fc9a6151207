// Package admintest checks what a client can hold on an admin listener
// (daemon.AdminServer): the tests of kproxy's and ktransfer's share it.
package admintest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// Shorten sets the idle and read bounds srv has to 300 ms.
func Shorten(srv *http.Server) {
	for _, d := range []*time.Duration{&srv.IdleTimeout, &srv.ReadTimeout} {
		if *d > 0 {
			*d = 300 * time.Millisecond
		}
	}
}

// Check fails unless the admin server at addr closes an idle
// keep-alive connection and a stalled body's connection within 3 s, and
// runs a 1 s CPU profile to its end.
func Check(t *testing.T, addr string) {
	t.Helper()
	const wait = 3 * time.Second
	dial := func() net.Conn {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}

	idle := dial()
	if _, err := io.WriteString(idle, "GET /health HTTP/1.1\r\nHost: admin\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	idle.SetReadDeadline(time.Now().Add(wait))
	if _, err := br.ReadByte(); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a keep-alive connection idle for %v after /health is still open: an idle client holds it forever", wait)
	}

	stalled := dial()
	if _, err := io.WriteString(stalled, "POST /health HTTP/1.1\r\nHost: admin\r\nContent-Length: 1000\r\n\r\n0123456789"); err != nil {
		t.Fatal(err)
	}
	stalled.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadAll(stalled); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a request whose body stalled %v ago still holds its connection: a slow sender holds it forever", wait)
	}

	start := time.Now()
	resp, err = http.Get("http://" + addr + "/debug/pprof/profile?seconds=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if d := time.Since(start); resp.StatusCode != 200 || len(body) == 0 || d < 900*time.Millisecond {
		t.Errorf("a 1 s CPU profile: %d, %d bytes after %v", resp.StatusCode, len(body), d)
	}
}
