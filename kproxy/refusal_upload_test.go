package kproxy_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
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
	body := make([]byte, 12<<20) // over the default max_request_size_bytes (10 MiB)
	for _, tc := range []struct {
		name string
		edit func(*kproxy.Config)
		tls  bool
	}{
		{"release_idle_buffers true", func(cfg *kproxy.Config) { cfg.ReleaseIdleBuffers = true }, false},
		{"release_idle_buffers false", func(cfg *kproxy.Config) { cfg.ReleaseIdleBuffers = false }, false},
		{"tls", func(cfg *kproxy.Config) { cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey }, true},
	} {
		p := startProxy(t, c, tc.edit)
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
					var r io.Reader = bytes.NewReader(body) // Content-Length: 12 MiB
					if chunked {
						r = struct{ io.Reader }{r} // no length: sent chunked
					}
					resp, err := client.Post(base+path, "application/msgpack", r)
					if err != nil {
						t.Errorf("%s, POST %s, 12 MiB, chunked %v (#%d): no answer: %v", tc.name, path, chunked, i, err)
						continue
					}
					answer, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 413 || !strings.Contains(string(answer), "max_request_size_bytes") {
						t.Errorf("%s, POST %s, 12 MiB, chunked %v (#%d): %d %q, want 413 naming max_request_size_bytes",
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
