package ktransfer

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// seen is what a raw listener read of one request: its request line and
// the headers an allowed target must not choose.
type seen struct {
	line, host, auth string
	hosts            int      // Host headers in the request
	lines            []string // the header lines, names spelled as sent
}

// answer200 is rawBackend's usual answer.
const answer200 = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

// rawBackend accepts connections on 127.0.0.1:0 and reports each
// request's head exactly as it came over the wire, answering each with
// answer (a whole HTTP response).
func rawBackend(t *testing.T, answer string) (net.Listener, <-chan seen) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan seen, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					// The head is read twice: as lines, and parsed.
					var head bytes.Buffer
					for {
						l, err := br.ReadString('\n')
						if err != nil {
							return
						}
						head.WriteString(l)
						if l == "\r\n" {
							break
						}
					}
					all := strings.Split(strings.TrimSuffix(head.String(), "\r\n\r\n"), "\r\n")
					line, lines := all[0], all[1:]
					r := textproto.NewReader(bufio.NewReader(&head))
					if _, err := r.ReadLine(); err != nil {
						return
					}
					h, err := r.ReadMIMEHeader()
					if err != nil {
						return
					}
					n, _ := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
					if _, err := io.CopyN(io.Discard, br, n); err != nil {
						return
					}
					out <- seen{line: line, host: h.Get("Host"), auth: h.Get("Authorization"), hosts: len(h.Values("Host")), lines: lines}
					if _, err := io.WriteString(c, answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln, out
}

// TestTargetCannotChooseHostOrAuthorization: an allowed target URL whose
// path starts with // and whose query holds :// must not make the HTTP
// client read another host out of the path (and send it as Host), nor
// user information out of it (sent as Authorization: Basic); a host
// spelled otherwise than in backend_servers (upper case, trailing dot,
// leading zeros in the port) reaches the backend as the backend's
// host:port. The request line carries the URL's own path and query.
func TestTargetCannotChooseHostOrAuthorization(t *testing.T) {
	ln, got := rawBackend(t, answer200)
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	m := DefaultModule()
	m.Name, m.Topic, m.WorkerNum = "m", "t", 1
	m.Protocol.URI, m.Protocol.ReadTimeoutMs, m.Protocol.WriteTimeoutMs, m.Protocol.ConnTimeoutMs = "/push", 2000, 2000, 2000
	m.Protocol.TargetHeader = "target"
	m.BackendServers = []string{addr, "localhost:" + port}
	p, err := newPusher(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, b := range p.backends {
			b.CloseIdleConnections()
		}
	})
	for _, tc := range []struct{ url, host, target string }{
		{"http://" + addr + "//evil.internal/admin?next=http://x", addr, "//evil.internal/admin?next=http://x"},
		{"http://" + addr + "//admin:s3cret@evil.internal/admin?next=http://x", addr, "//admin:s3cret@evil.internal/admin?next=http://x"},
		{"http://" + addr + "//evil.internal?next=http://x", addr, "//evil.internal?next=http://x"},
		{"http://" + addr + "/a@evil.internal/b?u=http://admin:pw@evil.internal/", addr, "/a@evil.internal/b?u=http://admin:pw@evil.internal/"},
		{"http://" + addr + "/%2F%2Fevil.internal/x?next=http://x", addr, "/%2F%2Fevil.internal/x?next=http://x"},
		{"http://" + addr + "/a/../../admin?x=1", addr, "/a/../../admin?x=1"},
		{"http://" + addr + "//../evil.internal/x?y=ftp://z", addr, "//../evil.internal/x?y=ftp://z"},
		{"http://LOCALHOST.:0" + port + "/hook?n=1", "localhost:" + port, "/hook?n=1"},
		{"http://localhost:" + port + "//Evil.Internal:99/hook?n=http://x", "localhost:" + port, "//Evil.Internal:99/hook?n=http://x"},
	} {
		rec := &kgo.Record{Topic: "t", Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "target", Value: []byte(tc.url)}}}
		tg, why := p.targetOf(rec)
		if tg == nil {
			t.Errorf("%s: refused (%s); every backend here is allowed", tc.url, why)
			continue
		}
		var buf []byte
		a := p.push(tg.backend, &record{msg: rec, target: tg}, &buf)
		if a.err != nil || a.status != 200 {
			t.Errorf("%s: push: %+v", tc.url, a)
			continue
		}
		var s seen
		select {
		case s = <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the backend got no request", tc.url)
		}
		if want := "POST " + tc.target + " HTTP/1.1"; s.line != want {
			t.Errorf("%s: request line %q, want %q", tc.url, s.line, want)
		}
		if s.host != tc.host || s.hosts != 1 {
			t.Errorf("%s: Host %q (%d of them), want %q", tc.url, s.host, s.hosts, tc.host)
		}
		if s.auth != "" {
			t.Errorf("%s: Authorization %q sent", tc.url, s.auth)
		}
	}
}
