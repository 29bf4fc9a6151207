package ktransfer_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestKproxyAbortedBatchNeverPushed runs the chain kproxy → Kafka →
// ktransfer with atomic batches: a batch kproxy aborted because a broker
// refused one of its records, after its other records reached the log,
// is never pushed; the committed batches before and after it are, each
// record once.
func TestKproxyAbortedBatchNeverPushed(t *testing.T) {
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 3})
	for p := range int32(3) {
		if err := e.kafka.MoveTopicPartition("t", p, p); err != nil { // partition p led by broker p
			t.Fatal(err)
		}
	}
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))

	srv := e.startKproxy(t)
	post := func(label string) int {
		t.Helper()
		var recs []string
		for i := range 12 {
			recs = append(recs, fmt.Sprintf(`{"key":"k%d","value":"%s-%d"}`, i, label, i))
		}
		resp, err := http.Post("http://"+srv.Addr().String()+"/batch?topic=t&acks=-1&atomic=1", "application/json",
			strings.NewReader("["+strings.Join(recs, ",")+"]"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	logEnd := func() (n int64) {
		for _, end := range kafkatest.EndOffsets(t, e.kafka, e.kc, "t") {
			n += end
		}
		return n
	}

	if code := post("committed"); code != 200 {
		t.Fatalf("first atomic batch: %d", code)
	}
	before := logEnd()
	var refusing atomic.Bool
	refusing.Store(true)
	e.kafka.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !refusing.Load() {
			return nil, nil, false
		}
		e.kafka.KeepControl()
		if e.kafka.CurrentNode() != 2 {
			return nil, nil, false
		}
		return kafkatest.ProduceError(req.(*kmsg.ProduceRequest), kerr.InvalidRecord.Code), nil, true
	})
	if code := post("aborted"); code != 503 { // a refusal of a batch as invalid: not written, perhaps another record's
		t.Fatalf("atomic batch with a record refused: %d, want 503", code)
	}
	refusing.Store(false)
	if code := post("after"); code != 200 {
		t.Fatalf("atomic batch after the abort: %d", code)
	}
	if grew := logEnd() - before; grew < 12+3+4 {
		t.Fatalf("the log grew by %d: the aborted batch's records never reached it, so the test proves nothing", grew)
	}

	e.committedAtEnd(t, "m", "t")
	got := map[string]int{}
	for _, p := range b.got() {
		got[p.body]++
	}
	for _, label := range []string{"committed", "after", "aborted"} {
		for i := range 12 {
			v := fmt.Sprintf(`"%s-%d"`, label, i)
			switch n := got[v]; {
			case label == "aborted" && n > 0:
				t.Errorf("%s pushed %d times: a record of an aborted transaction", v, n)
			case label != "aborted" && n != 1:
				t.Errorf("%s pushed %d times, want once", v, n)
			}
		}
	}
}
