package kproxy

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// Records whose deadline passed before they reach Kafka's client are
// failed by it at once, with every record queued behind them in their
// partition (other requests' records with time left, acks=0 ones answered
// 200). Whatever held a request that long, its records are refused 503
// "not written" at the hand-over, never answered 200 at acks=0, and Kafka's
// client never gets them.
func TestRecordsPastDeadlineNotHandedOver(t *testing.T) {
	c := kafkatest.StartBrokers(t, 1, []kafkatest.Topic{{Name: "late", Partitions: 1}})
	cfg := DefaultConfig()
	cfg.Port, cfg.ListenHost, cfg.AdminAddr = 0, "127.0.0.1", "" // not the default ports: another test process may hold them
	cfg.BrokerHosts = c.ListenAddrs()
	cfg.TransactionalProducers = 1
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	past, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name   string
		acks   int
		atomic bool
	}{{"acks=0", 0, false}, {"acks=1", 1, false}, {"acks=-1", 2, false}, {"atomic", 2, true}} {
		t.Run(tc.name, func(t *testing.T) {
			j := getBatchJob()
			defer j.release()
			j.body = append(j.body[:0], `[{"key":"k","value":"v"}]`...)
			var berr *batchError
			if j.recs, berr = parseJSONBatch(j.recs, j.body, []byte("late"), 10); berr != nil {
				t.Fatal(berr.reason)
			}
			dl, stop := context.WithTimeout(context.Background(), 10*time.Second)
			defer stop()
			if berr = s.checkBatch(dl, s.acl(), nil, j.recs, time.Now(), false); berr != nil {
				t.Fatal(berr.reason)
			}
			j.timeout = past // the request waited past its records' deadline
			out := s.produceBatch(context.Background(), tc.acks, tc.atomic, j)
			// The reason says what happened: kproxy held them past their
			// deadline (not "kafka did not take" them, nor every
			// transactional producer "stayed busy").
			if out.status != 503 || !strings.Contains(out.reason, "nothing was handed to kafka: not written") {
				t.Errorf("records handed over past their deadline answered %d %q; want 503, nothing handed to kafka, not written", out.status, out.reason)
			}
			if n := s.prod.leader.BufferedProduceRecords() + s.prod.all.BufferedProduceRecords(); n != 0 {
				t.Errorf("Kafka's clients hold %d records", n)
			}
			if n := s.acks0Out.Load(); n != 0 {
				t.Errorf("acks=0 records out: %d, want 0", n)
			}
		})
	}
}
