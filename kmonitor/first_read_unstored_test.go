package kmonitor_test

import (
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestOffsetNotReadYetIsNotUnstored: README: a partition with no offset
// znode is one no process has started, shown with its whole log as lag.
// One whose znode is there and not read yet (kmonitor starting, ZooKeeper
// slow, a read retried after an error) is not: its lag is not known yet.
// Here both modules committed the log end (lag 0) and their first reads
// are slow, while the count and the log end are read at once: every output
// showed lag 100 (the whole log) for them, as known, until the reads came,
// which on a real topic fires a delay trigger at every start.
func TestOffsetNotReadYetIsNotUnstored(t *testing.T) {
	kmonitor.DelayOffsetFirstReads(t, 2*time.Second)
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 2}})
	produce(t, k, "t", 0, 100)
	produce(t, k, "t", 1, 100)
	z := zktest.Start(t)
	conn := zktest.Connect(t, z.Addr)
	for _, m := range []string{"a", "b"} {
		setPartitionCount(t, conn, m, "t", 2)
		setOffset(t, conn, m, "t", "0", "100")
		setOffset(t, conn, m, "t", "1", "100")
	}
	e := startOnZK(t, k, z, nil, io.Discard)
	wrong := regexp.MustCompile(`"[01]":[1-9]|delay [1-9]|kmonitor_lag_messages\{[^}]*\} [1-9]`)
	read := `{"test_cluster":{"a":{"0":0,"1":0},"b":{"0":0,"1":0}}}`
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, body := e.get(t, "")
		_, zb := e.get(t, "?format=zabbix")
		_, prom := e.get(t, "?format=prometheus")
		for _, out := range []string{body, zb, prom} {
			if m := wrong.FindString(out); m != "" {
				t.Fatalf("committed at the log end, first read not done: %q shown as a known lag in\n%s", m, out)
			}
		}
		if strings.TrimSpace(body) == read {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("offsets never read: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
