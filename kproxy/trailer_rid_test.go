package kproxy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestTrailerRequestIDIsNotTheRid: README ("Record headers"): rid is
// "X-Request-ID, or a random UUID (version 4) when the request has none";
// "Only the header section counts: such a field in the trailer of a
// chunked body is not taken" (RFC 9110 6.5.1: a trailer field is not a
// header). A chunked /commit without X-Request-ID in its headers but with
// one in its trailer must get a new UUID as rid, not the trailer's value.
func TestTrailerRequestIDIsNotTheRid(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ExtHeaders = []string{"rid"} })
	body := record(t, map[string]any{"a": 1})
	got := commitRaw(t, p, c, fmt.Sprintf("POST /commit?topic=%s&key=k HTTP/1.1\r\nHost: kproxy\r\nTransfer-Encoding: chunked\r\n"+
		"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\nX-Request-ID: from-trailer\r\n\r\n", topic, len(body), body))
	if len(got) != 1 || !uuidV4.MatchString(strings.TrimPrefix(got[0], "rid=")) {
		t.Errorf("record headers %q, want one rid holding a new UUID: the trailer's X-Request-ID became the rid", got)
	}
}
