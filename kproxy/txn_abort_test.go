package kproxy_test

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestBatchAtomicAbortEndsTransaction: an atomic batch whose records on
// one broker were refused with an error that fails the transactional
// producer's id (UNKNOWN_PRODUCER_ID) while the others were appended is
// answered as not written — and its transaction is then ended at the
// brokers at once, not left open until the transaction timeout (here
// 2 × 2 s + 5 s) with no later atomic batch to heal the client: a
// read_committed consumer of a partition the batch wrote to sees a record
// written there afterwards within 3 s.
func TestBatchAtomicAbortEndsTransaction(t *testing.T) {
	c, p := txnProxy(t, 2000)

	var ended, inits atomic.Int32 // EndTxn and InitProducerID requests once the batch was sent
	var watching atomic.Bool
	for key, n := range map[kmsg.Key]*atomic.Int32{kmsg.EndTxn: &ended, kmsg.InitProducerID: &inits} {
		c.ControlKey(int16(key), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			if init, ok := req.(*kmsg.InitProducerIDRequest); ok && init.TransactionalID == nil {
				return nil, nil, false // the idempotent producer of the later record
			}
			if watching.Load() {
				n.Add(1)
			}
			return nil, nil, false
		})
	}
	// The first atomic batch makes the transactional client.
	if a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{key: "k", value: mp(t, "first")}})); a.code != 200 {
		t.Fatalf("first atomic batch: %v", a)
	}
	watching.Store(true)

	// Broker 2 refuses its partition once the batch's records for
	// partitions 0 and 1 are in the log (brokers 0 and 1).
	before, stop := refuseAfterAppends(t, c, kerr.UnknownProducerID.Code)
	recs, _ := failureBatch(t, "aborted-")
	a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, recs))
	stop()
	if a.code == 200 || a.code == 207 {
		t.Fatalf("atomic batch with partition 2 refused: %v, want one error status", a)
	}
	answered := time.Now()
	if c.PartitionInfo(topic, 0).HighWatermark == before[0] {
		t.Fatal("the batch's records for partition 0 never reached the log: the test proves nothing")
	}

	// A record written to partition 0 after the batch was answered.
	if !laterVisible(t, c, answered.Add(3*time.Second)) {
		info := c.PartitionInfo(topic, 0)
		t.Fatalf("a record written after the aborted batch is not visible to read_committed consumers %v after the answer "+
			"(partition 0: last stable offset %d, high watermark %d; EndTxn requests %d, InitProducerID requests %d): "+
			"the transaction was left open", time.Since(answered).Round(time.Millisecond),
			info.LastStableOffset, info.HighWatermark, ended.Load(), inits.Load())
	}
}

// TestBatchAtomicBeginBoundedByDeadline: while the transaction
// coordinator answers InitProducerID with CONCURRENT_TRANSACTIONS (as
// Kafka does while it is still ending a transaction of the id, for as
// long as it cannot write its markers), an atomic batch is answered by
// its deadline — 503, not written — rather than waiting in kgo's
// BeginTransaction for as long as the coordinator keeps answering so; and
// once the coordinator answers, the next batch commits (the transactional
// producer went back to the pool).
func TestBatchAtomicBeginBoundedByDeadline(t *testing.T) {
	c, p := txnProxy(t, 1000)
	answered := answerInitProducerID(c, func(int32) int16 { return kerr.ConcurrentTransactions.Code })
	defer answered()

	recs, _ := failureBatch(t, "held-")
	reply := make(chan batchAnswer, 1)
	start := time.Now()
	go func() { reply <- p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, recs)) }()
	// produce_timeout_ms for the records, as long again for a commit, and
	// answerGrace: 2.25 s; 4 s leaves room for a loaded machine.
	select {
	case a := <-reply:
		if a.code != 503 {
			t.Errorf("atomic batch while its transaction cannot begin: %v, want 503 (not written)", a)
		}
	case <-time.After(4 * time.Second):
		answered()
		a := <-reply
		t.Fatalf("atomic batch not answered within 4s of its arrival (produce_timeout_ms 1000) while InitProducerID "+
			"was answered CONCURRENT_TRANSACTIONS; answered %v after %v, once the coordinator answered",
			a, time.Since(start).Round(time.Millisecond))
	}
	answered()
	next, _ := failureBatch(t, "next-")
	if a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, next)); a.code != 200 {
		t.Fatalf("atomic batch once the coordinator answers: %v", a)
	}
	got := byValue(t, c, topic)
	for _, r := range recs {
		if got[string(r.value)] != nil {
			t.Errorf("record %q of the batch answered 503 visible", r.value)
		}
	}
}

// TestBatchAtomicSplitTransactionNotCommitted: when a broker's answer to
// an atomic batch's records makes kgo reload the producer id in the middle
// of the transaction (UNKNOWN_PRODUCER_ID with a log start offset past the
// client's last acknowledged record: kgo takes it for a truncated log and
// retries under a bumped epoch), the coordinator aborts what the
// transaction held so far — the batch's records already acknowledged on
// the other brokers — and the retried records start another transaction.
// Every record was answered by Kafka, but the batch is not whole: it must
// not be answered 200 with part of it aborted.
func TestBatchAtomicSplitTransactionNotCommitted(t *testing.T) {
	c, p := txnProxy(t, 2000)
	// A first batch: the client has acknowledged records on every partition.
	first, _ := failureBatch(t, "first-")
	if a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, first)); a.code != 200 {
		t.Fatalf("first atomic batch: %v", a)
	}
	_, appended := watchAppends(t, c)
	var answered atomic.Bool
	stop := onBroker(c, 2, func(pr *kmsg.ProduceRequest) (kmsg.Response, error, bool) {
		if !answered.CompareAndSwap(false, true) {
			return nil, nil, false // the retry is written
		}
		c.SleepControl(func() {
			select {
			case <-appended:
			case <-time.After(5 * time.Second):
			}
		})
		resp := kafkatest.ProduceError(pr, kerr.UnknownProducerID.Code)
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				resp.Topics[i].Partitions[j].LogStartOffset = 1 << 40
			}
		}
		return resp, nil, true
	})
	defer stop()
	second, _ := failureBatch(t, "second-")
	a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, second))
	if !answered.Load() {
		t.Fatal("broker 2 never refused the batch: the test proves nothing")
	}
	got := byValue(t, c, topic)
	visible := 0
	for _, r := range second {
		if got[string(r.value)] != nil {
			visible++
		}
	}
	t.Logf("answer %d; %d of the batch's %d records visible to read_committed consumers", a.code, visible, len(second))
	switch {
	case a.code == 200 && visible != len(second):
		t.Errorf("atomic batch answered 200 with only %d of its %d records committed: %v", visible, len(second), a)
	case a.code != 200 && a.code != 504 && visible != 0:
		t.Errorf("atomic batch answered %d (not written) with %d of its %d records committed", a.code, visible, len(second))
	}
}

// TestBatchAtomicRefusedCommitEndsTransaction: a commit the coordinator
// refuses with TRANSACTION_ABORTABLE is answered 503 (not written), and
// the transaction is then ended at the brokers at once — kgo's TryAbort
// after such a commit only marks the producer id for reloading — so that
// a read_committed consumer of a partition the batch wrote to sees a
// record written there afterwards within 3 s, not after the transaction
// timeout (2 × 2 s + 5 s).
func TestBatchAtomicRefusedCommitEndsTransaction(t *testing.T) {
	c, p := txnProxy(t, 2000)
	var refuse atomic.Bool
	c.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		end := req.(*kmsg.EndTxnRequest)
		if !end.Commit || !refuse.CompareAndSwap(true, false) {
			return nil, nil, false
		}
		resp := end.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.TransactionAbortable.Code
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		return resp, nil, true
	})
	if a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{key: "k", value: mp(t, "first")}})); a.code != 200 {
		t.Fatalf("first atomic batch: %v", a)
	}
	refuse.Store(true)
	// A batch may fail before its commit (kfake now and then answers a
	// produce request of the transaction after a commit
	// OUT_OF_ORDER_SEQUENCE_NUMBER under load): 502 (Kafka's error) or
	// 503, aborted and not written, and sent again until one reaches the
	// commit the broker refuses.
	var recs []brec
	for try := 0; refuse.Load(); try++ {
		if try == 5 {
			t.Fatalf("5 atomic batches failed before their commit")
		}
		batch, _ := failureBatch(t, "refused-"+strconv.Itoa(try)+"-")
		recs = append(recs, batch...)
		a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, batch))
		if !refuse.Load() {
			if a.code != 503 {
				t.Fatalf("atomic batch whose commit was refused: %v, want 503", a)
			}
			break
		}
		if a.code != 503 && a.code != 502 {
			t.Fatalf("atomic batch that failed before its commit: %v, want 502 or 503 (not written)", a)
		}
		t.Logf("atomic batch failed before its commit: %v", a)
	}
	answered := time.Now()

	if !laterVisible(t, c, answered.Add(3*time.Second)) {
		info := c.PartitionInfo(topic, 0)
		t.Fatalf("a record written after the batch whose commit was refused is not visible to read_committed consumers "+
			"3 s after the answer (partition 0: last stable offset %d, high watermark %d): the transaction was left open",
			info.LastStableOffset, info.HighWatermark)
	}
	got := byValue(t, c, topic)
	for _, r := range recs {
		if got[string(r.value)] != nil {
			t.Errorf("record %q of the batch answered 503 visible", r.value)
		}
	}
}

// TestBatchAtomicTransactionalIDDenied: when Kafka denies kproxy's
// principal its transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
// README: "A Kafka principal needs WRITE on the transactional ids"), an
// atomic batch is answered 403 — Kafka denied the write, as for a record
// of a denied topic — not 503, which tells the client to send it again.
func TestBatchAtomicTransactionalIDDenied(t *testing.T) {
	c, p := txnProxy(t, 2000)
	answerInitProducerID(c, func(int32) int16 { return kerr.TransactionalIDAuthorizationFailed.Code })
	recs, _ := failureBatch(t, "denied-")
	for range 2 {
		a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, recs))
		if a.code != 403 || !strings.Contains(a.Error, "not written") {
			t.Fatalf("atomic batch with the transactional id denied: %v, want 403, not written", a)
		}
	}
}
