package kproxy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolTakesRecordsPastTakenSegmentName: a directory in spool_dir
// named like the first segment the spool would create (left by an
// operator) made every record of an outage 503 ("file exists"). The
// records are spooled (202) and drained once Kafka is back, each once and
// in order.
func TestSpoolTakesRecordsPastTakenSegmentName(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "00000000000000000000.seg"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := spoolProxy(t, c, func(cfg *kproxy.Config) { cfg.SpoolDir = dir })
	end := kafkatest.NewFaults(t, c).Outage(kerr.NotLeaderForPartition.Code)
	want := map[string][]int{}
	for i := range 5 {
		if a := p.post(t, "topic="+topic+"&key=k", keySeqValue(t, "k", i)); a.code != 202 {
			end()
			t.Fatalf("record %d during the outage: %d %s, want 202 (spooled)", i, a.code, a.body)
		}
		want["k"] = append(want["k"], i)
	}
	clientsAnswered(t, p)
	end()
	spoolEmpty(t, p)
	if dups := checkSpooledOrder(t, c, want); dups != 0 {
		t.Errorf("%d duplicates, want none", dups)
	}
}
