package kproxy_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestAtomicCommitResentThenFencedMayHaveBeenWritten: an atomic batch's
// commit (EndTxn) is applied by the coordinator and its answer lost with
// the connection; Kafka's client sends the commit again, and it is
// refused PRODUCER_FENCED — what a second process using the same
// transactional_id gets it answered once its fence (which waits for the
// first commit to complete) bumped the epoch. The batch was answered 503,
// "no record of the batch was written", while every record of it was
// visible to read_committed consumers: a client sending it again wrote it
// twice. A commit written more than once whose last answer is a refusal
// may have been applied: 504.
func TestAtomicCommitResentThenFencedMayHaveBeenWritten(t *testing.T) {
	c, p := txnProxy(t, 3000)
	side := kafkatest.Client(t, c, kafkaconf.Default())
	var commits atomic.Int32
	var forwarding, over atomic.Bool
	c.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		end := req.(*kmsg.EndTxnRequest)
		if !end.Commit || over.Load() || forwarding.Load() {
			return nil, nil, false
		}
		if commits.Add(1) == 1 {
			// Applied (through a client of the test, to the same
			// coordinator), then the connection breaks.
			node := c.CurrentNode()
			forwarding.Store(true)
			var err error
			var resp kmsg.Response
			c.SleepControl(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				resp, err = side.Broker(int(node)).Request(ctx, end)
			})
			forwarding.Store(false)
			if err != nil || resp.(*kmsg.EndTxnResponse).ErrorCode != 0 {
				t.Errorf("the commit forwarded to broker %d: %v %v", node, err, resp)
			}
			return nil, errors.New("fault: connection closed after the commit was applied"), true
		}
		resp := end.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.ProducerFenced.Code
		return resp, nil, true
	})
	a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{key: "k", value: mp(t, "committed")}}))
	over.Store(true)
	t.Logf("answer %d after %d commit attempts: %s", a.code, commits.Load(), a.raw)
	if commits.Load() < 2 {
		t.Fatalf("the commit was sent %d times, want it sent again after its connection broke", commits.Load())
	}
	var visible int
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		if string(r.Value) == string(mp(t, "committed")) {
			visible++
		}
	}
	if visible != 1 {
		t.Fatalf("%d records of the batch visible to read_committed consumers, want 1 (the commit applied)", visible)
	}
	if a.code != 504 {
		t.Errorf("answer %d to a batch committed whose commit's resend was refused PRODUCER_FENCED, want 504 (may have been written)", a.code)
	}
}
