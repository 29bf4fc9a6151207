package kmonitor_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/tcpproxy"
)

// TestHealthyWhileTheSessionOutlivesALostConnection: kmonitor's ZooKeeper
// connection is lost (a server restarting, a link cut) and no new one is
// made yet. The session lives on for its timeout (8 s), and the lag stays
// known meanwhile: /health answers 200 and kmonitor_zookeeper_up is 1, as
// the lag says, until the session timeout has passed since ZooKeeper last
// answered; then 503 and 0. Before, both said "no session" from the
// moment the connection was lost, while /delay served every lag as known:
// a probe on /health restarted kmonitor at each ZooKeeper restart.
func TestHealthyWhileTheSessionOutlivesALostConnection(t *testing.T) {
	e, px := lagOf3ThroughProxy(t)
	get := func(p string) (int, string) {
		t.Helper()
		resp, err := http.Get(e.url + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const up = `kmonitor_zookeeper_up{cluster="test_cluster"} `
	px.Freeze() // a new connection is accepted and left unanswered
	cut := time.Now()
	if n := px.Cut(); n == 0 {
		t.Fatal("no ZooKeeper connection through the proxy to cut")
	}
	defer px.Thaw()
	// The outage counts from the last answer, up to a third of the session
	// before the cut: 3 s after it stay within the session.
	for time.Since(cut) < 3*time.Second {
		code, body := get("/delay?detail=1")
		if code != 200 || !strings.Contains(body, `"lag":3`) {
			t.Fatalf("connection lost %v ago, within the session: /delay %d %s; want the lag known", time.Since(cut).Round(time.Millisecond), code, body)
		}
		if code, body := get("/health"); code != 200 {
			t.Fatalf("connection lost %v ago, the session alive and the lag served as known: /health %d %q; want 200", time.Since(cut).Round(time.Millisecond), code, body)
		}
		if _, body := get("/metrics"); !strings.Contains(body, up+"1") {
			t.Fatalf("connection lost %v ago, the session alive: %s0; want 1", time.Since(cut).Round(time.Millisecond), up)
		}
		time.Sleep(100 * time.Millisecond)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, _ := get("/health")
		_, metrics := get("/metrics")
		if code == http.StatusServiceUnavailable && strings.Contains(metrics, up+"0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ZooKeeper silent for %v, past the 8 s session: /health %d, want 503 with %s0", time.Since(cut).Round(time.Second), code, up)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if since := time.Since(cut); since < 5*time.Second {
		t.Errorf("/health 503 %v after the connection was lost; the session (8 s) was alive then", since.Round(time.Millisecond))
	}
}

// TestLagNotGrownByACommitUnseenWhileZooKeeperAway: kmonitor's ZooKeeper
// connection is lost, the session alive, while the module goes on
// committing through the other ZooKeeper servers and records are
// produced. kmonitor sees the new log ends, not the commits: before, it
// paired the offset it held with each new log end, a lag growing by every
// record produced (here 3, then 53), served as known and fresh, for up to
// a session timeout at each ZooKeeper blip. The lag is now the one as
// ZooKeeper last answered (3), until the connection is back or the
// session over.
func TestLagNotGrownByACommitUnseenWhileZooKeeperAway(t *testing.T) {
	e, px := lagOf3ThroughProxy(t)
	px.Freeze()
	cut := time.Now()
	if n := px.Cut(); n == 0 {
		t.Fatal("no ZooKeeper connection through the proxy to cut")
	}
	defer px.Thaw()
	produce(t, e.kafka, "a", 0, 50)
	setOffset(t, e.conn, "m", "a", "0", "50") // the module's commit, through another server
	for time.Since(cut) < 3*time.Second {     // within the 8 s session
		resp, err := http.Get(e.url + "/delay?detail=1")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `"lag":3,`) {
			t.Fatalf("connection lost %v ago, the session alive: /delay %s; want the lag as ZooKeeper last answered, 3", time.Since(cut).Round(time.Millisecond), b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lagOf3ThroughProxy starts kmonitor with its ZooKeeper connection
// through a proxy (an 8 s session), and a module 3 records behind on
// topic a; it returns once /delay says so.
func lagOf3ThroughProxy(t *testing.T) (*env, *tcpproxy.Proxy) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	var px *tcpproxy.Proxy
	e := startWith(t, k, zkThroughProxy(t, &px, 8000), io.Discard)
	produce(t, e.kafka, "a", 0, 4)
	setOffset(t, e.conn, "m", "a", "0", "1")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":3}}}`+"\n", 10*time.Second)
	return e, px
}
