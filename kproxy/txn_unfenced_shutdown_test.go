package kproxy_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestShutdownFencesIdUnfencedAfterFailedAbort: an atomic batch refused
// on one broker is aborted; when its abort fails (EndTxn refused) the
// transactional client is replaced and its id fenced, which aborts the
// transaction at the brokers. When that fence fails too (InitProducerID
// refused), the transaction stays open, holding back read_committed
// consumers of the partitions it wrote to, until the id's next use or the
// transaction timeout (2 × produce_timeout_ms + 5 s: 7 s here). A shutdown
// with no atomic batch since fences the id: a record written after the
// shutdown is visible to read_committed consumers within 3 s. It was not
// fenced — only the ids of clients still busy were.
func TestShutdownFencesIdUnfencedAfterFailedAbort(t *testing.T) {
	c, p := txnProxy(t, 1000)
	if a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{key: "k", value: mp(t, "first")}})); a.code != 200 {
		t.Fatalf("first atomic batch: %v", a)
	}

	var refuse atomic.Bool
	refuse.Store(true)
	var endTxns atomic.Int32
	c.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !refuse.Load() {
			return nil, nil, false
		}
		endTxns.Add(1)
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp, nil, true
	})
	var refusedInits atomic.Int32
	stopInits := answerInitProducerID(c, func(int32) int16 {
		if !refuse.Load() {
			return 0
		}
		refusedInits.Add(1)
		return kerr.TransactionalIDAuthorizationFailed.Code
	})
	defer stopInits()

	// Broker 2 refuses its partition once partitions 0 and 1 hold the
	// batch's records: the batch is aborted with records in the log.
	before, stopRefusing := refuseAfterAppends(t, c, kerr.InvalidRecord.Code)
	recs, _ := failureBatch(t, "open-")
	a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, recs))
	stopRefusing()
	if a.code == 200 || a.code == 207 {
		t.Fatalf("atomic batch with partition 2 refused: %v, want one error status", a)
	}
	if c.PartitionInfo(topic, 0).HighWatermark == before[0] {
		t.Fatal("the batch's records for partition 0 never reached the log: the test proves nothing")
	}
	waitFor(t, "the failed abort's fence", func() bool { return endTxns.Load() > 0 && refusedInits.Load() > 0 })
	time.Sleep(200 * time.Millisecond) // the fence's retries end at its first refusal: the replacement is done
	if info := c.PartitionInfo(topic, 0); info.LastStableOffset == info.HighWatermark {
		t.Fatal("the transaction was ended despite the refused abort and fence: the test proves nothing")
	}

	refuse.Store(false) // the brokers answer again; kproxy shuts down
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	if !laterVisible(t, c, stopped.Add(3*time.Second)) {
		info := c.PartitionInfo(topic, 0)
		t.Fatalf("a record written after the shutdown is not visible to read_committed consumers %v after it "+
			"(partition 0: last stable offset %d, high watermark %d): the transactional id whose fence failed was not "+
			"fenced at shutdown, its transaction left open until the transaction timeout",
			time.Since(stopped).Round(time.Millisecond), info.LastStableOffset, info.HighWatermark)
	}
}
