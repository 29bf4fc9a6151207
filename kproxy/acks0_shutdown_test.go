package kproxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestShutdownAcks0LossesAllLogged: kproxy is stopped while acks=0
// records, answered 200, are still being delivered to a partition whose
// broker refuses them until produce_timeout_ms. The shutdown's flush waits
// for them, and each is finally refused: kproxy exits 0, and its metric
// kproxy_acks0_lost_records_total goes with the process. The log is all
// that is left: it must account for every record lost (the lines are
// sampled, one a second, each naming how many it held back before it), not
// for the first alone.
func TestShutdownAcks0LossesAllLogged(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	var logs runtest.Log
	p := logProxy(t, c, &logs, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 500 })
	decode(t, p.post(t, "topic="+topic+"&acks=1", unique(t, "first"))) // the topic is known

	kafkatest.NewFaults(t, c).ErrorProduce(1_000_000, 6) // NOT_LEADER_OR_FOLLOWER: retried until the deadline
	const n = 30
	for i := range n {
		decode(t, p.post(t, "topic="+topic+"&key=k&acks=0", unique(t, fmt.Sprintf("acks0-%d", i))))
	}
	if err := p.stop(); err != nil {
		t.Logf("Run: %v", err)
	}

	logged := acks0LossesLogged(logs.String())
	if logged < n {
		t.Errorf("%d acks=0 records answered 200 were lost at shutdown; the log accounts for %d:\n%s", n, logged, logs.String())
	}
}

// TestShutdownAcks0LossesAllLoggedAtClose: as above, but the records are
// still out at shutdown_timeout_ms (the broker holds their request):
// closing the Kafka clients fails them. kgo runs their promises after its
// Close has returned; the log must still account for every one.
func TestShutdownAcks0LossesAllLoggedAtClose(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	var logs runtest.Log
	p := logProxy(t, c, &logs, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs, cfg.ShutdownTimeoutMs = 5000, 200 })
	decode(t, p.post(t, "topic="+topic+"&acks=1", unique(t, "first")))
	release := make(chan struct{})
	defer close(release)
	var held atomic.Int32
	holdProduce(c, release, &held)
	const n = 2000
	for i := range n {
		decode(t, p.post(t, "topic="+topic+"&key=k&acks=0", unique(t, fmt.Sprintf("acks0-%d", i))))
	}
	t.Logf("Run: %v", p.stop())
	if logged := acks0LossesLogged(logs.String()); logged < n {
		t.Errorf("%d acks=0 records answered 200 were lost at shutdown; the log accounts for %d", n, logged)
	}
}

// logProxy is startProxy's kproxy logging into logs.
func logProxy(t *testing.T, c *kfake.Cluster, logs *runtest.Log, edit func(*kproxy.Config)) *proxy {
	t.Helper()
	cfg := kproxy.DefaultConfig()
	cfg.Port, cfg.ListenHost, cfg.AdminAddr = 0, "127.0.0.1", "127.0.0.1:0"
	cfg.BrokerHosts = c.ListenAddrs()
	cfg.ReadTimeoutMs, cfg.WriteTimeoutMs = 2000, 2000
	edit(&cfg)
	srv, err := kproxy.New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return runProxy(t, srv)
}

// acks0LossesLogged counts the acks=0 records a log says were lost: a line
// per record logged ("acks=0 record …"), naming how many it held back
// before it (suppressed=N); a summary of records not logged one by one
// ("acks=0 records …") counts its suppressed=N alone.
func acks0LossesLogged(log string) int {
	logged := 0
	line := regexp.MustCompile(`msg="acks=0 record(s?) [^"]*not delivered[^"]*".*\bsuppressed=(\d+)`)
	for _, l := range strings.Split(log, "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if m[1] == "" {
			logged++
		}
		k, _ := strconv.Atoi(m[2])
		logged += k
	}
	return logged
}

// slowLossLines is a log handler whose writes of the lines of lost acks=0
// records take delay (a log destination that stalls: a full pipe, a slow
// disk).
type slowLossLines struct {
	slog.Handler
	delay time.Duration
}

func (h slowLossLines) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "acks=0 record answered 200 and not delivered" {
		time.Sleep(h.delay) // the stalled write under test
	}
	return h.Handler.Handle(ctx, r)
}

// TestShutdownAcks0LossLineWrittenBeforeExit: the last acks=0 record lost
// at shutdown — its request still out at shutdown_timeout_ms, failed by
// closing the Kafka clients — comes more than a second after the line
// before: it logs its own line, which carries the count of the losses held
// back since then, and that write is slow. kproxy must not finish its
// shutdown (and the process exit) before the line is written: the
// held-back records would be accounted for nowhere.
func TestShutdownAcks0LossLineWrittenBeforeExit(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	var logs runtest.Log
	cfg := kproxy.DefaultConfig()
	cfg.Port, cfg.ListenHost, cfg.AdminAddr = 0, "127.0.0.1", "127.0.0.1:0"
	cfg.BrokerHosts = c.ListenAddrs()
	cfg.ReadTimeoutMs, cfg.WriteTimeoutMs = 2000, 2000
	cfg.ProduceTimeoutMs, cfg.ShutdownTimeoutMs = 300, 100
	log := slog.New(slowLossLines{slog.NewTextHandler(&logs, nil), 300 * time.Millisecond})
	srv, err := kproxy.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	p := runProxy(t, srv)
	// The topic looked up and a first record written. With 300 ms a cold
	// client on a loaded machine can be answered 504 (503): sent again
	// (a copy more changes nothing here).
	for deadline := time.Now().Add(20 * time.Second); ; {
		a := p.post(t, "topic="+topic+"&acks=1", unique(t, "first"))
		if a.code == 200 {
			break
		}
		if a.code != 503 && a.code != 504 || time.Now().After(deadline) {
			t.Fatalf("warm-up record: %d %s", a.code, a.body)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Refused (NOT_LEADER_OR_FOLLOWER, retried until the deadline), then,
	// once hold is set, held at the broker.
	var hold atomic.Bool
	var held atomic.Int32
	release := make(chan struct{})
	defer close(release)
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !hold.Load() {
			return kafkatest.ProduceError(req.(*kmsg.ProduceRequest), kerr.NotLeaderForPartition.Code), nil, true
		}
		held.Add(1)
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	const n = 5
	for i := range n {
		decode(t, p.post(t, "topic="+topic+"&acks=0", unique(t, fmt.Sprintf("early-%d", i))))
	}
	waitFor(t, "the first acks=0 records lost", func() bool { return p.metric(t, "kproxy_acks0_lost_records_total") == strconv.Itoa(n) })
	waitFor(t, "the first loss line written", func() bool { return acks0LossesLogged(logs.String()) >= 1 })
	first := time.Now()
	// The lines are sampled one a second: the next loss logs a line of its
	// own, with the count held back since the first.
	time.Sleep(time.Until(first.Add(1100 * time.Millisecond)))
	hold.Store(true)
	decode(t, p.post(t, "topic="+topic+"&acks=0", unique(t, "last")))
	waitFor(t, "the last record's request held at the broker", func() bool { return held.Load() > 0 })
	t.Logf("Run: %v", p.stop())

	if logged := acks0LossesLogged(logs.String()); logged < n+1 {
		t.Errorf("%d acks=0 records answered 200 were lost; when kproxy had shut down, its log accounted for %d:\n%s", n+1, logged, logs.String())
	}
}
