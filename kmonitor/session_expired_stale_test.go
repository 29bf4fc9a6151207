package kmonitor_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/tcpproxy"
)

// TestLagUnknownOnceTheServerExpiredTheSession attacks the promise that a
// cluster kmonitor has not heard from for longer than its session timeout
// shows no lag: ZooKeeper stops answering kmonitor (a network partition,
// through the proxy) and an offset changes meanwhile. Once the server has
// expired the sessions behind the proxy (a witness session, whose last
// request went through after kmonitor's last contact, has lost its
// ephemeral node), kmonitor's watches are gone and the offset it holds may
// be stale. The outage was dated from the client's Disconnected event,
// which comes 2/3 of the session after the last answer, and the lag kept
// a session more: the stale lag 3 (true lag 0) was served as known, with
// zabbix's errors at 0, for seconds after the server expired the session.
func TestLagUnknownOnceTheServerExpiredTheSession(t *testing.T) {
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
	// kmonitor's client pings every third of the session when idle: its
	// last contact is now behind the witness's.
	time.Sleep(2500 * time.Millisecond)
	if _, _, err := witness.Exists("/witness"); err != nil {
		t.Fatal(err)
	}
	px.Freeze()
	defer px.Thaw()
	frozen := time.Now()
	setOffset(t, e.conn, "m", "a", "0", "4") // caught up: lag 0, which kmonitor cannot see

	if !waitFor(15*time.Second, func() bool { ok, _, _ := e.conn.Exists("/witness"); return !ok }) {
		t.Fatal("the witness session was not expired")
	}
	expired := time.Since(frozen)
	// The server expires sessions at its ticks: kmonitor's answer is looked
	// at a little later, then for 3 s.
	time.Sleep(300 * time.Millisecond)
	for range 6 {
		_, body := e.get(t, "")
		_, zbx := e.get(t, "?format=zabbix")
		if body != `{"test_cluster":{"m":{"0":null}}}`+"\n" || strings.Contains(zbx, ".delay ") {
			t.Fatalf("%v after ZooKeeper stopped answering (the server expired the session %v after): %q, zabbix %q; want the lag null, no delay line",
				time.Since(frozen).Truncate(time.Millisecond), expired.Truncate(time.Millisecond), body, zbx)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
