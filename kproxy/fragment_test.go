package kproxy_test

import (
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestFragmentInRequestTargetRefused: a client that builds the request
// target without escaping sends /commit?topic=orders&key=user#42&acks=-1.
// fasthttp takes "#42&acks=-1" for a fragment and drops it: the record was
// written under the key user, at acks=1, answered 200 (and a /batch's
// atomic=1 after a '#' dropped without a word). Such a target is refused,
// 400 saying to percent-encode the '#', nothing written.
func TestFragmentInRequestTargetRefused(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	p := startProxy(t, c, nil)
	addr := strings.TrimPrefix(p.url, "http://")
	for _, req := range []string{
		"POST /commit?topic=orders&key=user#42&acks=-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n\x03",
		"POST /batch?topic=orders&acks=-1#&atomic=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n[{\"value\":1}]",
	} {
		resp, b, _, _ := sendRaw(t, addr, req)
		if resp.StatusCode != 400 || !strings.Contains(string(b), "%23") {
			t.Errorf("%.50q: %d %q, want 400 saying to percent-encode the '#'", req, resp.StatusCode, b)
		}
	}
	if n := endOffsets(t, c, "orders"); n != 0 {
		t.Errorf("%d records written, want none", n)
	}
}
