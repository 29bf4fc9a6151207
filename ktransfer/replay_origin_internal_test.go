package ktransfer

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDeadLetterOriginPartitionInRange: a dead letter's ktransfer-partition
// header past int32 ("4294967296") was read with Atoi and cut to int32:
// partition 0, replayed (and signed) as that partition's record. Such an
// origin is unreadable: the dead letter is skipped, not replayed.
func TestDeadLetterOriginPartitionInRange(t *testing.T) {
	mc := Module{Name: "m", Topic: "t"}
	for _, p := range []string{"4294967296", "2147483648", "-1"} {
		rec := &kgo.Record{Value: []byte("v"), Headers: []kgo.RecordHeader{
			{Key: "ktransfer-module", Value: []byte("m")},
			{Key: "ktransfer-topic", Value: []byte("t")},
			{Key: "ktransfer-partition", Value: []byte(p)},
			{Key: "ktransfer-offset", Value: []byte("5")},
		}}
		if r, mine := deadLetterOrigin(rec, mc); r != nil || !mine {
			t.Errorf("ktransfer-partition %s: origin read as %+v (mine %v), want it unreadable: skipped", p, r, mine)
		}
	}
	rec := &kgo.Record{Value: []byte("v"), Headers: []kgo.RecordHeader{
		{Key: "ktransfer-module", Value: []byte("m")},
		{Key: "ktransfer-topic", Value: []byte("t")},
		{Key: "ktransfer-partition", Value: []byte("2147483647")},
		{Key: "ktransfer-offset", Value: []byte("5")},
	}}
	if r, _ := deadLetterOrigin(rec, mc); r == nil {
		t.Errorf("ktransfer-partition 2147483647: origin unreadable, want it read")
	}
}
