package kproxy_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// A client that posts a body over max_request_size_bytes without "Expect:
// 100-continue" (Go's client, Java's, most libraries) is still sending it
// when kproxy refuses the request from its Content-Length (or, chunked, at
// the limit). It gets the 413 and its one-line reason, as every refusal
// does, not a connection reset under its upload ("connection reset by
// peer", "broken pipe"), over plain HTTP with release_idle_buffers true or
// false and over TLS, to /commit and /batch alike. Nothing is written.
func TestBodyOverMaxRequestSizeIsAnswered413WhileUploading(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	certs := testcert.New(t)
	// Over the default max_request_size_bytes (10 MiB) by 1 KiB: kproxy
	// drops at most max_header_bytes + max_request_size_bytes of a refused
	// upload before it cuts the connection (TestRefusedUploadLingersBounded),
	// so this one is sent whole however late the client reads its answer.
	// A larger body is answered the same, but a client whose reading of
	// the 413 waits behind sending the bound gets the cut instead.
	body := make([]byte, 10<<20+1024)
	for _, tc := range []struct {
		name string
		edit func(*kproxy.Config)
		tls  bool
	}{
		{"release_idle_buffers true", func(cfg *kproxy.Config) { cfg.ReleaseIdleBuffers = true }, false},
		{"release_idle_buffers false", func(cfg *kproxy.Config) { cfg.ReleaseIdleBuffers = false }, false},
		{"tls", func(cfg *kproxy.Config) { cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey }, true},
	} {
		p := startProxy(t, c, func(cfg *kproxy.Config) {
			// Time to send 10 MiB on a busy machine (the race detector
			// on two shared cores): this is not about read_timeout_ms.
			cfg.ReadTimeoutMs = 20_000
			tc.edit(cfg)
		})
		base := p.url
		tr := &http.Transport{DisableKeepAlives: true}
		if tc.tls {
			base = strings.Replace(base, "http://", "https://", 1)
			tr.TLSClientConfig = &tls.Config{RootCAs: certs.CA}
		}
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for _, path := range []string{"/commit?topic=orders", "/batch?topic=orders"} {
			for _, chunked := range []bool{false, true} {
				for i := range 3 {
					var r io.Reader = bytes.NewReader(body) // with its Content-Length
					if chunked {
						r = struct{ io.Reader }{r} // no length: sent chunked
					}
					resp, err := client.Post(base+path, "application/msgpack", r)
					if err != nil {
						t.Errorf("%s, POST %s, 10 MiB + 1 KiB, chunked %v (#%d): no answer: %v", tc.name, path, chunked, i, err)
						continue
					}
					answer, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 413 || !strings.Contains(string(answer), "max_request_size_bytes") {
						t.Errorf("%s, POST %s, 10 MiB + 1 KiB, chunked %v (#%d): %d %q, want 413 naming max_request_size_bytes",
							tc.name, path, chunked, i, resp.StatusCode, answer)
					}
				}
			}
		}
		tr.CloseIdleConnections()
	}
	if n := endOffsets(t, c, "orders"); n != 0 {
		t.Errorf("%d records written, want none", n)
	}
}

// The lingering close of a refused connection is bounded: a client that
// reads the 413 and then keeps its connection open, sending a byte now and
// then, has it closed once read_timeout_ms has passed, and one that keeps
// sending at full speed is cut once kproxy has dropped a request's size
// (max_header_bytes + max_request_size_bytes), long before
// read_timeout_ms; either way kproxy holds no connection open after.
func TestRefusedUploadLingersBounded(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	certs := testcert.New(t)
	// open counts the connections kproxy holds open on port: ESTABLISHED
	// or CLOSE_WAIT (the client closed, kproxy not) sockets whose local
	// port it is.
	open := func(port string) int {
		t.Helper()
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		n := 0
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 3 && strings.HasSuffix(f[1], fmt.Sprintf(":%04X", p)) && (f[3] == "01" || f[3] == "08") {
				n++
			}
		}
		return n
	}
	const clients = 10
	for _, mode := range []string{"release_idle_buffers true", "release_idle_buffers false", "tls"} {
		for _, stalled := range []bool{true, false} {
			readTimeout := 20_000 // the client sending on is cut by the bytes bound
			if stalled {
				readTimeout = 1000
			}
			p := startProxy(t, c, func(cfg *kproxy.Config) {
				cfg.MaxRequestSizeBytes = 1 << 20
				cfg.ReadTimeoutMs = readTimeout
				cfg.ReleaseIdleBuffers = mode != "release_idle_buffers false"
				if mode == "tls" {
					cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey
				}
			})
			addr := strings.TrimPrefix(p.url, "http://")
			_, port, _ := net.SplitHostPort(addr)
			var wg sync.WaitGroup
			for i := range clients {
				wg.Go(func() {
					raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						t.Error(err)
						return
					}
					defer raw.Close()
					conn := raw
					if mode == "tls" {
						conn = tls.Client(raw, &tls.Config{RootCAs: certs.CA, ServerName: "127.0.0.1"})
					}
					start := time.Now()
					conn.SetDeadline(start.Add(10 * time.Second))
					head := "POST /commit?topic=orders HTTP/1.1\r\nHost: " + addr + "\r\nContent-Length: 104857600\r\n\r\n"
					if _, err := io.WriteString(conn, head); err != nil {
						t.Errorf("%s, client %d: %v", mode, i, err)
						return
					}
					chunk := make([]byte, 64<<10)
					if stalled {
						conn.Write(chunk) // then nothing more, and no close
						resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
						if err != nil {
							t.Errorf("%s, stalled client %d: no answer: %v", mode, i, err)
							return
						}
						answer, err := io.ReadAll(resp.Body) // to the end of the stream: kproxy's close
						if resp.StatusCode != 413 || err != nil {
							t.Errorf("%s, stalled client %d: %d %q (%v), want 413 and the end of the stream", mode, i, resp.StatusCode, answer, err)
						}
						// The client keeps its end open, sending a byte now and
						// then, until a write fails: kproxy closed its end.
						for {
							if _, err := raw.Write([]byte{0}); err != nil {
								return
							}
							if time.Since(start) > 5*time.Second {
								t.Errorf("%s, stalled client %d: connection still open after %v, want closed at read_timeout_ms (1s)", mode, i, time.Since(start))
								return
							}
							time.Sleep(50 * time.Millisecond) // the client's pace, not a wait for an event
						}
					}
					// Sending on: kproxy stops reading after a request's size
					// and closes; the writes then fail.
					for {
						if _, err := conn.Write(chunk); err != nil {
							if since := time.Since(start); since > 5*time.Second {
								t.Errorf("%s, client %d sending on: cut after %v, want once a request's size was dropped", mode, i, since)
							}
							return
						}
					}
				})
			}
			wg.Wait()
			// kproxy's ends of the connections are closed too.
			for deadline := time.Now().Add(5 * time.Second); open(port) > 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%s, stalled %v: kproxy holds %d connections open after the refused uploads ended", mode, stalled, open(port))
				}
			}
		}
	}
}

// slowReader hands out its n bytes 64 KiB at a time, every 10 ms: a client
// uploading over a slow link.
type slowReader struct{ n int }

func (r *slowReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	time.Sleep(10 * time.Millisecond) // the link's pace
	k := min(len(p), 64<<10, r.n)
	clear(p[:k])
	r.n -= k
	return k, nil
}

// The other refusals of a request before its body is read get to a client
// still uploading as the 413 does, not as a connection reset: headers over
// max_header_bytes (431), and a body not received within read_timeout_ms
// (408, a client on a slow link: the lingering close, bounded by
// read_timeout_ms, keeps that answer too).
func TestEarlyRefusalsAnsweredWhileUploading(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ReadTimeoutMs = 300 })
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	body := make([]byte, 8<<20) // within max_request_size_bytes
	for _, tc := range []struct {
		name string
		req  func() *http.Request
		want int
	}{
		{"headers over max_header_bytes", func() *http.Request {
			req, _ := http.NewRequest("POST", p.url+"/commit?topic=orders", bytes.NewReader(body))
			req.Header.Set("X-Big", strings.Repeat("a", 8000))
			return req
		}, 431},
		{"body sent slower than read_timeout_ms", func() *http.Request {
			req, _ := http.NewRequest("POST", p.url+"/commit?topic=orders", &slowReader{n: 8 << 20})
			req.ContentLength = 8 << 20
			return req
		}, 408},
	} {
		for i := range 10 {
			resp, err := client.Do(tc.req())
			if err != nil {
				t.Errorf("%s (#%d): no answer: %v", tc.name, i, err)
				continue
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || strings.Count(string(answer), "\n") != 1 {
				t.Errorf("%s (#%d): %d %q, want %d with its one-line reason", tc.name, i, resp.StatusCode, answer, tc.want)
			}
		}
	}
	if n := endOffsets(t, c, "orders"); n != 0 {
		t.Errorf("%d records written, want none", n)
	}
}
