package kproxy_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestMaxInFlightRequestsStarts: max_in_flight_requests 2..5
// passes Validate ("must be 1..5"), but kgo refuses
// MaxProduceRequestsInflightPerBroker != 1 on the idempotent (acks=-1)
// client, so kproxy.New fails.
func TestMaxInFlightRequestsStarts(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	cfg := kproxy.DefaultConfig()
	cfg.Port, cfg.ListenHost, cfg.AdminAddr = 0, "127.0.0.1", ""
	cfg.BrokerHosts = c.ListenAddrs()
	cfg.MaxInFlightRequests = 2
	if err := cfg.Validate("kproxy.yaml"); err != nil {
		t.Fatalf("Validate refuses max_in_flight_requests=2: %v", err)
	}
	srv, err := kproxy.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("max_in_flight_requests=2 validates, but New fails: %v", err)
	}
	srv.Close()
}

// TestAcks0LostNotCountedAsWritten: kproxy_records_total is "Records
// Kafka accepted, by acks level", but acks=0 records are counted when they
// are answered, also those Kafka then refuses for good.
func TestAcks0LostNotCountedAsWritten(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	failProduce(t, c, kerr.InvalidRecord.Code, 1<<30)
	for i := range 5 {
		if a := p.post(t, "topic="+topic+"&acks=0&key=k"+strconv.Itoa(i), []byte{0x01}); a.code != 200 {
			t.Fatalf("acks=0: %d %q", a.code, a.body)
		}
	}
	waitFor(t, "5 acks=0 records lost", func() bool { return p.metric(t, "kproxy_acks0_lost_records_total") == "5" })
	if n := endOffsets(t, c, topic); n != 0 {
		t.Fatalf("%d records in Kafka", n)
	}
	if got := p.metric(t, `kproxy_records_total{acks="0"}`); got != "0" {
		t.Errorf(`kproxy_records_total{acks="0"} = %s with 0 records accepted by Kafka (5 lost)`, got)
	}
}

// TestAcks0BoundedNeverBlocks: acks=0 is "answered 200 as soon as kproxy
// holds the record". While Kafka does not answer, acks=0 records pile up in
// kproxy: up to req_pool_size of them are answered 200 at once, the next one
// 503 at once (not written) — never a handler blocked in a full kgo buffer
// (before: the answer waited up to produce_timeout_ms). Once Kafka answers,
// every record answered 200 is written.
func TestAcks0BoundedNeverBlocks(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.ReqPoolSize = 20
		cfg.ProduceTimeoutMs = 8000
	})
	decode(t, p.post(t, "topic="+topic+"&key=k", unique(t, "warm-up")))
	release := make(chan struct{})
	var held atomic.Int32
	holdProduce(c, release, &held)
	var accepted []string
	for i := range 21 {
		body := unique(t, "acks0-"+strconv.Itoa(i))
		t0 := time.Now()
		a := p.post(t, "topic="+topic+"&key=k&acks=0", body)
		if d := time.Since(t0); d > 3*time.Second { // blocked, it waits for produce_timeout_ms (8 s)
			t.Errorf("acks=0 record %d answered %d after %v: blocked", i, a.code, d.Round(time.Millisecond))
		}
		switch {
		case i < 20 && a.code == 200:
			accepted = append(accepted, string(body))
		case i == 20 && a.code == 503:
		default:
			t.Errorf("acks=0 record %d of 21 with req_pool_size 20 and Kafka held: %d %q", i, a.code, a.body)
		}
	}
	close(release)
	waitFor(t, "the acks=0 records answered 200 in Kafka", func() bool {
		kafka := inKafka(t, c)
		for _, b := range accepted {
			if kafka[b] != 1 {
				return false
			}
		}
		return true
	})
}

// TestMetadataErrorWhileRequestOutIs504: a record's produce request is
// written and waits at the broker; meanwhile a metadata refresh reports a
// non-retriable error for the topic. kgo's leader client (not idempotent)
// fails the partition's records at once with that error although their
// request is out (bumpRepeatedLoadErr: canFail = !idempotent), and
// produceStatus takes a kerr error as a definite refusal ("the record was
// not written"). The broker then appends the request.
func TestMetadataErrorWhileRequestOutIs504(t *testing.T) {
	for _, tc := range []struct {
		name string
		code int16
	}{
		{"UNKNOWN_SERVER_ERROR", kerr.UnknownServerError.Code},
		{"TOPIC_AUTHORIZATION_FAILED", kerr.TopicAuthorizationFailed.Code},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
			p := startProxy(t, c, func(cfg *kproxy.Config) {
				cfg.Kafka.MetadataRefreshMs = 1000
				cfg.ProduceTimeoutMs = 10000
			})
			decode(t, p.post(t, "topic="+topic+"&key=k", unique(t, "warm-up")))
			body := unique(t, "in-flight-"+tc.name)
			release := make(chan struct{})
			var released atomic.Bool
			defer func() {
				if !released.Load() {
					close(release)
				}
			}()
			var held atomic.Int32
			c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				// Only the next produce request; kept, not dropped: kfake
				// drops a control that slept without its lock, a race
				// with a ControlKey call.
				c.KeepControl()
				if !held.CompareAndSwap(0, 1) {
					return nil, nil, false
				}
				c.SleepControl(func() { <-release })
				return nil, nil, false
			})
			answered := make(chan answer, 1)
			go func() { answered <- p.post(t, "topic="+topic+"&key=k&acks=1", body) }()
			waitFor(t, "the produce request held at the broker", func() bool { return held.Load() > 0 })

			var broken atomic.Bool
			broken.Store(true)
			// The brokers and cluster as the cluster itself describes
			// them, so that kgo sees no broker change.
			mreq := kmsg.NewPtrMetadataRequest()
			real, err := mreq.RequestWith(context.Background(), kafkatest.Client(t, c, kafkaconf.Default()))
			if err != nil {
				t.Fatal(err)
			}
			c.ControlKey(int16(kmsg.Metadata), func(r kmsg.Request) (kmsg.Response, error, bool) {
				if !broken.Load() {
					c.DropControl()
					return nil, nil, false
				}
				c.KeepControl()
				req := r.(*kmsg.MetadataRequest)
				named := false
				for _, rt := range req.Topics {
					named = named || rt.Topic != nil && *rt.Topic == topic
				}
				if !named {
					return nil, nil, false
				}
				resp := req.ResponseKind().(*kmsg.MetadataResponse)
				resp.SetVersion(req.Version)
				resp.Brokers, resp.ControllerID, resp.ClusterID = real.Brokers, real.ControllerID, real.ClusterID
				for _, rt := range req.Topics {
					st := kmsg.NewMetadataResponseTopic()
					st.Topic = rt.Topic
					st.ErrorCode = tc.code
					resp.Topics = append(resp.Topics, st)
				}
				return resp, nil, true
			})
			var a answer
			select {
			case a = <-answered:
			case <-time.After(6 * time.Second):
				broken.Store(false)
				released.Store(true)
				close(release)
				a = <-answered
				t.Logf("no early answer; after release: %d %q", a.code, a.body)
				return
			}
			broken.Store(false)
			released.Store(true)
			close(release)
			t.Logf("answer while held: %d %q", a.code, a.body)
			waitFor(t, "the held request appended", func() bool { return inKafka(t, c)[string(body)] == 1 })
			if a.code != 504 {
				t.Errorf("record whose produce request was out (and then appended): answered %d %q, want 504 \"may have been written\"",
					a.code, strings.TrimSpace(a.body))
			}
		})
	}
}
