package kmonitor_test

import (
	"io"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/tcpproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zkserver"
)

// ZooKeeper grants a session timeout between 2 and 20 ticks, whatever the
// client asks for. kmonitor asks for 10 s of a server whose tick is 100 ms:
// it gets 2 s. Once ZooKeeper stops answering (a network partition), the
// server expires the session 2 s after it last heard from kmonitor, and
// changes to the offsets are no longer seen: the lags kmonitor holds must
// turn unknown after the session it was granted, not after the 10 s it
// asked for.
func TestOffsetsStaleAfterTheNegotiatedSessionTimeout(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	z, err := zkserver.Start(zkserver.Config{Dir: t.TempDir(), TickMs: 100}) // sessions of 0.2..2 s
	if err != nil {
		t.Fatalf("start zookeeper: %v", err)
	}
	t.Cleanup(func() { _ = z.Stop() })
	var px *tcpproxy.Proxy
	e := startOnZK(t, k, z, zkThroughProxy(t, &px, 10000), io.Discard)
	produce(t, e.kafka, "a", 0, 4)
	setOffset(t, e.conn, "m", "a", "0", "1")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":3}}}`+"\n", 10*time.Second)

	px.Freeze()
	defer px.Thaw()
	frozen := time.Now()
	setOffset(t, e.conn, "m", "a", "0", "4") // caught up: kmonitor cannot see it
	// The lags turn unknown the granted 2 s after the last answer (its
	// client gives the connection up 2/3 of that after it): about 2 s.
	// The 10 s asked for would keep the old lag 3 for 10 s.
	e.eventually(t, "", `{"test_cluster":{"m":{"0":null}}}`+"\n", 7*time.Second)
	t.Logf("lag unknown %v after ZooKeeper stopped answering", time.Since(frozen).Truncate(time.Millisecond))
}
