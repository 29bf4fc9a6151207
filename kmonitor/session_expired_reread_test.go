package kmonitor_test

import (
	"io"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/tcpproxy"
)

// TestLagUnknownAfterAnExpiryUntilReadAgain attacks the same promise as
// TestLagUnknownOnceTheServerExpiredTheSession, past the expiry: once the
// server expired kmonitor's session, the offsets it holds may be stale
// until its watchers have read them again in the next session. The client
// opens that one at once, which ended the outage: the stale lag was served
// as known until the re-read (here delayed 4 s, as on a busy machine or a
// cluster with many offsets to read again).
func TestLagUnknownAfterAnExpiryUntilReadAgain(t *testing.T) {
	kmonitor.DelayOffsetRereads(t, 4*time.Second)
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	var px *tcpproxy.Proxy
	e := startWith(t, k, zkThroughProxy(t, &px, 6000), io.Discard)
	produce(t, e.kafka, "a", 0, 4)
	setOffset(t, e.conn, "m", "a", "0", "1")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":3}}}`+"\n", 10*time.Second)

	witness, _, err := zk.Connect([]string{px.Addr()}, 6*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer witness.Close()
	if !waitFor(10*time.Second, func() bool { return witness.State() == zk.StateHasSession }) {
		t.Fatal("the witness got no session")
	}
	if _, err := witness.Create("/witness", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	if _, _, err := witness.Exists("/witness"); err != nil {
		t.Fatal(err)
	}
	px.Freeze()
	setOffset(t, e.conn, "m", "a", "0", "4") // caught up: lag 0
	if !waitFor(15*time.Second, func() bool { ok, _, _ := e.conn.Exists("/witness"); return !ok }) {
		t.Fatal("the witness session was not expired")
	}
	time.Sleep(300 * time.Millisecond)
	e.eventually(t, "", `{"test_cluster":{"m":{"0":null}}}`+"\n", 5*time.Second)
	px.Thaw()
	// From now until the watcher re-reads (4 s): never the stale 3.
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		_, body := e.get(t, "")
		if body == `{"test_cluster":{"m":{"0":3}}}`+"\n" {
			t.Fatalf("after the expiry, in the new session before the offset was read again: stale lag served as known: %q", body)
		}
		if body == `{"test_cluster":{"m":{"0":0}}}`+"\n" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the lag 0 never came")
}
