package kproxy_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestSharedTransactionalIDNamed: two kproxy processes given the same
// transactional_id (one kproxy.yaml copied to a fleet) fence each other's
// transactional clients: each atomic batch of one after a batch of the
// other fails, and each replaces its client, fencing the other's in
// turn. The only trace was a warning "transactional client replaced",
// which a fenced client's first batch and any other failure log alike.
// A client fenced by another producer of its id is logged at Error,
// naming the id and the likely cause.
func TestSharedTransactionalIDNamed(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	var logs [2]*runtest.Log
	var ps [2]*proxy
	for i := range ps {
		logs[i] = &runtest.Log{}
		cfg := kproxy.DefaultConfig()
		cfg.Port, cfg.ListenHost, cfg.AdminAddr = 0, "127.0.0.1", "127.0.0.1:0"
		cfg.BrokerHosts = c.ListenAddrs()
		cfg.TransactionalProducers = 1
		cfg.TransactionalID = "shared"
		srv, err := kproxy.New(cfg, slog.New(slog.NewTextHandler(logs[i], nil)))
		if err != nil {
			t.Fatal(err)
		}
		ps[i] = runProxy(t, srv)
	}
	var codes []int
	for range 3 {
		for _, p := range ps {
			a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{key: "k", value: mp(t, "v")}}))
			codes = append(codes, a.code)
		}
	}
	t.Logf("answers, alternating: %v", codes)
	for i, l := range logs {
		if !strings.Contains(l.String(), "level=ERROR") || !strings.Contains(l.String(), "transactional_id=shared-0") {
			t.Errorf("kproxy %d's log, its client fenced by the other's, names no shared transactional id at Error:\n%s", i, l.String())
		}
	}
}
