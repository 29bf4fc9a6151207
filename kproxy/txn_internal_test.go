package kproxy

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// openClients counts the kgo clients made and not yet closed.
type openClients struct{ n atomic.Int64 }

func (o *openClients) OnNewClient(*kgo.Client)    { o.n.Add(1) }
func (o *openClients) OnClientClosed(*kgo.Client) { o.n.Add(-1) }

// TestTxnPoolCloseClosesEveryClient: txnPool.close with the shutdown
// deadline already passed closes every transactional client — the idle
// ones, and one whose transaction is still in progress — and fences the
// transactional id of that one (Kafka then aborts its transaction; kfake
// only bumps the epoch, so the test sees the InitProducerID sent).
func TestTxnPoolCloseClosesEveryClient(t *testing.T) {
	const tp0 = "txn"
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: tp0, Partitions: 1}})
	cfg := DefaultConfig()
	cfg.BrokerHosts = c.ListenAddrs()
	cfg.TransactionalProducers = 4
	cfg.ProduceTimeoutMs = 10_000 // a transaction timeout of 25 s
	log := slog.New(slog.DiscardHandler)
	ps := testProducers(t, cfg, log)
	p := newTxnPool(cfg, "kproxy-test", ps, log)
	var open openClients
	p.opts = append(p.opts, kgo.WithHooks(&open))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Every client made and used once; three go back idle, the last is
	// left in a transaction holding a record.
	var tps []*txnProducer
	for range cfg.TransactionalProducers {
		tp := p.get(ctx, ctx)
		if tp == nil {
			t.Fatal("no free transactional client")
		}
		if err := p.begin(tp, ctx); err != nil {
			t.Fatal(err)
		}
		tps = append(tps, tp)
	}
	for _, tp := range tps[:3] {
		if err := tp.cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
			t.Fatal(err)
		}
		p.put(tp)
	}
	busy := tps[3]
	if err := busy.cl.ProduceSync(ctx, &kgo.Record{Topic: tp0, Value: []byte("in the open transaction")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if n := open.n.Load(); n != 4 {
		t.Fatalf("%d transactional clients open, want 4", n)
	}

	var closing atomic.Bool
	var fenced atomic.Int32
	c.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if id := req.(*kmsg.InitProducerIDRequest).TransactionalID; closing.Load() && id != nil && *id == busy.id {
			fenced.Add(1)
		}
		return nil, nil, false
	})
	passed, stop := context.WithCancel(context.Background())
	stop() // shutdown_timeout_ms already passed
	closing.Store(true)
	p.close(passed)
	closing.Store(false)
	if fenced.Load() == 0 {
		t.Error("the transactional id of the client busy at shutdown was not fenced")
	}
	if n := open.n.Load(); n != 0 {
		t.Errorf("%d transactional clients left open by close", n)
	}
	// The busy batch, cut short, ends as produceAtomic would end it.
	if err := busy.cl.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Error("a commit on a client closed at shutdown succeeded")
	}
	p.abort(busy)
	if n := open.n.Load(); n != 0 {
		t.Errorf("%d transactional clients open after the busy batch's abort", n)
	}
}

// TestTxnPoolCloseBeforeCommitIs503: a batch whose records were all
// acknowledged and whose client close shut (shutdown_timeout_ms passed)
// before its commit was issued is answered 503, not written: no EndTxn is
// sent, and close fenced the id. A commit issued before close shut the
// client may be on the wire: 504 (README: "503, or 504 when its commit
// was issued").
func TestTxnPoolCloseBeforeCommitIs503(t *testing.T) {
	for _, issued := range []bool{false, true} {
		t.Run(map[bool]string{false: "shut before the commit", true: "commit issued, then shut"}[issued], func(t *testing.T) {
			const tp0 = "txn"
			c := kafkatest.Start(t, []kafkatest.Topic{{Name: tp0, Partitions: 1}})
			cfg := DefaultConfig()
			cfg.BrokerHosts = c.ListenAddrs()
			cfg.TransactionalProducers = 1
			cfg.ProduceTimeoutMs = 10_000
			log := slog.New(slog.DiscardHandler)
			ps, err := newProducers(context.Background(), cfg, log, producerHooks{batchRecords: nopObserver{},
				batchMaxBytes: func(string) int32 { return int32(cfg.MaxMessageBytes) }})
			if err != nil {
				t.Fatal(err)
			}
			defer ps.close(context.Background())
			p := newTxnPool(cfg, "kproxy-test", ps, log)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			tp := p.get(ctx, ctx)
			if err := p.begin(tp, ctx); err != nil {
				t.Fatal(err)
			}
			if err := tp.cl.ProduceSync(ctx, &kgo.Record{Topic: tp0, Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			var endTxn atomic.Int32
			release := make(chan struct{})
			defer close(release)
			c.ControlKey(int16(kmsg.EndTxn), func(kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				endTxn.Add(1)
				c.SleepControl(func() { <-release }) // the commit stays unanswered
				return nil, nil, false
			})
			committed := make(chan error, 1)
			commit := func() { committed <- p.commit(tp, nil, time.Now().Add(p.timeout)) } // produceAtomic's commit
			if issued {
				go commit()
				for endTxn.Load() == 0 {
					if ctx.Err() != nil {
						t.Fatal("the commit never reached the broker")
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			passed, stop := context.WithCancel(context.Background())
			stop()
			p.close(passed) // the batch still holds tp: its client is closed, its id fenced
			if !issued {
				commit()
			}
			err = <-committed
			code, reason := commitStatus(err)
			t.Logf("EndTxn requests seen by the broker: %d; commit err %v -> %d %q", endTxn.Load(), err, code, reason)
			switch {
			case !issued && endTxn.Load() != 0:
				t.Errorf("%d EndTxn requests sent by a client closed at shutdown", endTxn.Load())
			case !issued && (code != 503 || !strings.Contains(reason, "no record of the batch was written")):
				t.Errorf("commit never sent (client closed at shutdown, id fenced): answered %d %q, want 503 not written", code, reason)
			case issued && code != 504:
				t.Errorf("commit sent, unanswered when the client was closed: answered %d %q, want 504", code, reason)
			}
		})
	}
}

// TestTxnPoolCloseWaitsForAFenceUnderWay: a client being replaced (its
// abort failed: retire) when kproxy shuts down fences its transactional
// id through the acks=1 client, which the shutdown closes right after the
// transactional ones. close skipped that id (no client: retire's own fence
// would do it) and returned at once; the acks=1 client closed under the
// fence, which failed, and the transaction stayed open until its timeout,
// holding back read_committed consumers. close waits for it now (at most
// fenceAtShutdown).
func TestTxnPoolCloseWaitsForAFenceUnderWay(t *testing.T) {
	const tp0 = "txn"
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: tp0, Partitions: 1}})
	cfg := DefaultConfig()
	cfg.BrokerHosts = c.ListenAddrs()
	cfg.TransactionalProducers = 1
	log := slog.New(slog.DiscardHandler)
	ps := testProducers(t, cfg, log)
	p := newTxnPool(cfg, "kproxy-test", ps, log)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tp := p.get(ctx, ctx)
	if tp == nil {
		t.Fatal("no free transactional client")
	}
	if err := p.begin(tp, ctx); err != nil {
		t.Fatal(err)
	}
	if err := tp.cl.ProduceSync(ctx, &kgo.Record{Topic: tp0, Value: []byte("in the open transaction")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// The fence's InitProducerID takes 500 ms to be answered.
	var asked atomic.Int32
	c.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if id := req.(*kmsg.InitProducerIDRequest).TransactionalID; id != nil && *id == tp.id {
			asked.Add(1)
			c.SleepControl(func() { time.Sleep(500 * time.Millisecond) })
		}
		return nil, nil, false
	})
	retired := make(chan struct{})
	go func() {
		defer close(retired)
		p.retire(context.Background(), tp, errors.New("abort transaction: test"))
	}()
	for asked.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// closeKafka's order, shutdown_timeout_ms passed: the transactional
	// clients, then the producers.
	passed, stop := context.WithCancel(context.Background())
	stop()
	p.close(passed)
	ps.close(passed)
	<-retired
	if !tp.fenced {
		t.Error("the transactional id being fenced at shutdown was not: the fencing client was closed under it")
	}
}
