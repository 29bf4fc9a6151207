package kproxy_test

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// /health says "spool full" once the spool has no room for a record of
// max_message_bytes: while it answers 200, such a record of a topic with a
// long name (its name is in every spool entry) must still be spooled.
func TestSpoolHealthFullCountsEntryOverhead(t *testing.T) {
	long := "t" + strings.Repeat("x", 199)
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: long, Partitions: 1}})
	const spoolMax = 1 << 20
	const maxMessage = spoolMax - 1000
	p := spoolProxy(t, c, func(cfg *kproxy.Config) {
		cfg.SpoolMaxBytes = spoolMax
		cfg.MaxMessageBytes = maxMessage
	})
	f := kafkatest.NewFaults(t, c)
	end := f.Outage(int16(kerr.NotLeaderForPartition.Code))
	defer end()
	// An entry of 950 bytes: 8 length and CRC, 8 time, the topic's 2+200,
	// the key's 1+1, the value's 2+727, 1 header count.
	small, _ := msgpack.Marshal(strings.Repeat("s", 724))
	if a := p.post(t, "topic="+long+"&key=k", small); a.code != 202 {
		t.Fatalf("small record: %d %s, want 202 (spooled)", a.code, a.body)
	}
	code, text := health(t, p)
	// A record of max_message_bytes exactly: its body, its key and
	// recordOverhead (90).
	big, _ := msgpack.Marshal(strings.Repeat("b", maxMessage-90-1-5))
	a := p.post(t, "topic="+long+"&key=k", big)
	if code == 200 && a.code != 202 {
		t.Fatalf("/health said %d %q, then a record of max_message_bytes got %d %s", code, text, a.code, a.body)
	}
	if a.code != 202 && !strings.HasPrefix(text, "spool full") {
		t.Fatalf("a record of max_message_bytes got %d %s while /health said %d %q", a.code, a.body, code, text)
	}
	t.Logf("/health %d %q, record of max_message_bytes %d", code, text, a.code)
}
