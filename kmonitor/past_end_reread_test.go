package kmonitor_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestPastLogEndKeptWhenOffsetReadAgainUnchanged: a committed offset past
// the log end (1000 over 10) is an error, until the log end passes it or
// the module commits a lower one. The verdict needs a log end read after
// the offset, and every read of the offset node counted as a new offset:
// a write of the same value (ktransfer rewrites the node as it claims the
// partition), or a read again after a session expiry, showed lag 0 — the
// module keeping up — until the next poll (poll_interval_ms: 60 s in the
// README's example), and a Zabbix trigger on the error resolved and fired
// again. An offset read again unchanged keeps its verdict.
func TestPastLogEndKeptWhenOffsetReadAgainUnchanged(t *testing.T) {
	const poll = 2 * time.Second
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	e := startWith(t, k, func(c *kmonitor.Config) { c.Base.PollIntervalMs = int(poll / time.Millisecond) }, io.Discard)
	produce(t, e.kafka, "a", 0, 10)
	setOffset(t, e.conn, "m", "a", "0", "1000")
	const pastEnd = `"error":"committed offset 1000 past the log end 10: topic re-created or log truncated"`
	e.eventuallyContains(t, "?detail=1", 10*time.Second, pastEnd)
	setOffset(t, e.conn, "m", "a", "0", "1000") // as a claim rewrites it
	for end := time.Now().Add(poll + poll/4); time.Now().Before(end); {
		if _, body := e.get(t, "?detail=1"); !strings.Contains(body, pastEnd) {
			t.Fatalf("offset 1000 written again unchanged, the log end still 10: %s", strings.TrimSpace(body))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
