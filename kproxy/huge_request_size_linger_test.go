package kproxy_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestHugeMaxRequestSizeKeepsEarlyRefusalsAnswered: with
// max_request_size_bytes at the largest integer (accepted: "no limit" to
// its writer), a request refused for its headers (431) while its client
// was still uploading got a connection reset, not its answer: the most the
// lingering close reads, max_header_bytes + max_request_size_bytes,
// overflowed to a negative number, so it read nothing and closed on the
// unread upload. With the default sizes the same request gets its 431
// (TestEarlyRefusalsAnsweredWhileUploading).
func TestHugeMaxRequestSizeKeepsEarlyRefusalsAnswered(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	cfg, err := kproxy.LoadConfig(writeConfig(t, c.ListenAddrs()[0], "max_request_size_bytes: 9223372036854775807\nread_timeout_ms: 2000"))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	srv, err := kproxy.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	p := runProxy(t, srv)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	body := make([]byte, 8<<20)
	for i := range 30 {
		req, _ := http.NewRequest("POST", p.url+"/commit?topic=orders", bytes.NewReader(body))
		req.Header.Set("X-Big", strings.Repeat("a", 8000))
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("headers over max_header_bytes (#%d): no answer: %v", i, err)
			continue
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 431 {
			t.Errorf("headers over max_header_bytes (#%d): %d %q, want 431", i, resp.StatusCode, answer)
		}
	}
}
