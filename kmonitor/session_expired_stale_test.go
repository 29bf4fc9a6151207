package kmonitor_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/tcpproxy"
)

// expiredBehindProxy starts kmonitor on a 6 s session through a proxy,
// with partition m/a/0 at lag 3; then ZooKeeper stops answering it (the
// proxy frozen, until the test ends), the offset moves to the log end
// (lag 0, which kmonitor cannot see), and it returns once the server has
// expired kmonitor's session: a witness session, whose last request went
// through after kmonitor's proxy froze, has lost its ephemeral node. It
// returns the proxy and when it froze.
func expiredBehindProxy(t *testing.T) (*env, *tcpproxy.Proxy, time.Time) {
	return expiredBehindProxyWith(t, false)
}

// expiredBehindProxyWith is expiredBehindProxy; with unstored, topic a
// has a second partition of 4 records, which offsets/a counts (2) but no
// process has started (lag 4, from its log start), and which a process
// starts while kmonitor's proxy is frozen, caught up (lag 0).
func expiredBehindProxyWith(t *testing.T, unstored bool) (*env, *tcpproxy.Proxy, time.Time) {
	t.Helper()
	parts, want := 1, `{"test_cluster":{"m":{"0":3}}}`
	if unstored {
		parts, want = 2, `{"test_cluster":{"m":{"0":3,"1":4}}}`
	}
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: int32(parts)}})
	var px *tcpproxy.Proxy
	e := startWith(t, k, zkThroughProxy(t, &px, 6000), io.Discard)
	produce(t, e.kafka, "a", 0, 4)
	if unstored {
		produce(t, e.kafka, "a", 1, 4)
		setPartitionCount(t, e.conn, "m", "a", 2)
	}
	setOffset(t, e.conn, "m", "a", "0", "1")
	e.eventually(t, "", want+"\n", 10*time.Second)

	// The witness has a proxy of its own, frozen after kmonitor's: its
	// last contact is after kmonitor's whatever the scheduler does between
	// the two (through one proxy, a heartbeat of kmonitor's sent between
	// the witness's last request and the freeze, on a loaded machine,
	// kept kmonitor's session a tick longer than the witness's).
	wpx, err := tcpproxy.Start(px.Target())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wpx.Close() })
	witness, _, err := zk.Connect([]string{wpx.Addr()}, 6*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(witness.Close)
	if !waitFor(10*time.Second, func() bool { return witness.State() == zk.StateHasSession }) {
		t.Fatal("the witness got no session")
	}
	if _, err := witness.Create("/witness", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	px.Freeze()
	t.Cleanup(px.Thaw)
	frozen := time.Now()
	if _, _, err := witness.Exists("/witness"); err != nil {
		t.Fatal(err)
	}
	wpx.Freeze()
	t.Cleanup(wpx.Thaw)
	setOffset(t, e.conn, "m", "a", "0", "4") // caught up: lag 0, which kmonitor cannot see
	if unstored {
		setOffset(t, e.conn, "m", "a", "1", "4")
	}
	if !waitFor(15*time.Second, func() bool { ok, _, _ := e.conn.Exists("/witness"); return !ok }) {
		t.Fatal("the witness session was not expired")
	}
	return e, px, frozen
}

// TestLagUnknownOnceTheServerExpiredTheSession attacks the promise that a
// cluster kmonitor has not heard from for longer than its session timeout
// shows no lag: once the server has expired the session, kmonitor's
// watches are gone and the offset it holds may be stale. The outage was
// dated from the client's Disconnected event, which comes 2/3 of the
// session after the last answer, and the lag kept a session more: the
// stale lag 3 (true lag 0) was served as known, with zabbix's errors at
// 0, for seconds after the server expired the session.
func TestLagUnknownOnceTheServerExpiredTheSession(t *testing.T) {
	e, _, frozen := expiredBehindProxy(t)
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

// TestLagUnknownAfterAnExpiryUntilReadAgain attacks the same promise past
// the expiry: the offsets kmonitor holds may be stale until its watchers
// have read them again in the next session. The client opens that one at
// once, which ended the outage: the stale lag was served as known until
// the re-read (here delayed 4 s, as on a busy machine or a cluster with
// many offsets to read again).
func TestLagUnknownAfterAnExpiryUntilReadAgain(t *testing.T) {
	kmonitor.DelayOffsetRereads(t, 4*time.Second)
	e, px, _ := expiredBehindProxy(t)
	time.Sleep(300 * time.Millisecond)
	e.eventually(t, "", `{"test_cluster":{"m":{"0":null}}}`+"\n", 5*time.Second)
	px.Thaw()
	// From now until the watcher reads the offset again (4 s): never the
	// stale 3.
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, body := e.get(t, "")
		if body == `{"test_cluster":{"m":{"0":3}}}`+"\n" {
			t.Fatalf("after the expiry, in the next session before the offset was read again: the stale lag served as known: %q", body)
		}
		if body == `{"test_cluster":{"m":{"0":0}}}`+"\n" {
			return
		}
	}
	t.Fatal("the lag 0 never came")
}

// TestUnstoredLagUnknownAfterAnExpiryUntilReadAgain: the same promise for
// a partition kmonitor knew without an offset znode (lag 4, from its log
// start), which a process started while ZooKeeper did not answer kmonitor
// (stored 4: lag 0). After the expiry, until its offset was read in the
// next session (here its watcher's first read delayed 4 s), it was served
// as the known lag 4, the stale one: its entry was built from the module's
// partition count, never checked against the session.
func TestUnstoredLagUnknownAfterAnExpiryUntilReadAgain(t *testing.T) {
	kmonitor.DelayOffsetFirstReads(t, 4*time.Second)
	e, px, _ := expiredBehindProxyWith(t, true)
	time.Sleep(300 * time.Millisecond)
	e.eventually(t, "", `{"test_cluster":{"m":{"0":null,"1":null}}}`+"\n", 5*time.Second)
	px.Thaw()
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, body := e.get(t, "")
		if strings.Contains(body, `"1":4`) {
			t.Fatalf("after the expiry, in the next session before the offset was read: the stale lag of the partition no process had started served as known: %q", body)
		}
		if body == `{"test_cluster":{"m":{"0":0,"1":0}}}`+"\n" {
			return
		}
	}
	_, body := e.get(t, "")
	t.Fatalf("the lags 0 never came: %q", body)
}
