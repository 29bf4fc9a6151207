package kafkatest

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
)

// A stopped cluster refuses connections on its port; restarted, it is on
// the same port with the records it had, and takes more.
func TestRestartableKeepsRecordsAndPort(t *testing.T) {
	r := StartRestartable(t, []Topic{{"t", 2}})
	// A record the cluster takes gets 15 s (a loaded machine's stall is
	// no failure); one it cannot take fails after 2 s.
	produce := func(v string, limit time.Duration) error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(r.Addr()), kgo.DefaultProduceTopic("t"),
			kgo.RecordDeliveryTimeout(limit))
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), limit+5*time.Second)
		defer cancel()
		return cl.ProduceSync(ctx, kgo.StringRecord(v)).FirstErr()
	}
	for _, v := range []string{"a", "b", "c"} {
		if err := produce(v, 15*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	r.Stop()
	if r.Cluster() != nil {
		t.Fatal("Cluster() of a stopped cluster is not nil")
	}
	if err := produce("lost", 2*time.Second); err == nil {
		t.Fatal("a stopped cluster took a record")
	}
	r.Restart()
	if got := r.Cluster().ListenAddrs()[0]; got != r.Addr() {
		t.Fatalf("restarted on %s, was %s", got, r.Addr())
	}
	if err := produce("d", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rec := range ReadAll(t, r.Cluster(), kafkaconf.Default(), "t") {
		got = append(got, string(rec.Value))
	}
	if len(got) != 4 {
		t.Fatalf("records after the restart: %q, want a, b, c, d", got)
	}
}

// The broker's port is taken below Linux's ephemeral range (32768-60999):
// while the cluster is stopped, a connection of any test running beside
// it may take a port of that range as its local port, and Restart could
// not bind it again.
func TestRestartablePortBelowEphemeralRange(t *testing.T) {
	r := StartRestartable(t, []Topic{{"t", 1}})
	_, port, _ := net.SplitHostPort(r.Addr())
	if p, _ := strconv.Atoi(port); p < 1024 || p >= 32768 {
		t.Fatalf("broker on %s, want a port within 1024-32767", r.Addr())
	}
}
