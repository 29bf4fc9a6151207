package kmonitor_test

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// The partitions stay through a long ZooKeeper outage, the one claimed in
// owners/ with no offset committed yet as much as those with an offset:
// when the client without a session is replaced, it must not vanish as if
// the module did not have it. The next client drops it once it has found
// the claim gone.
func TestOwnedPartitionWithoutOffsetStaysThroughAReplacedClient(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 2}})
	var log logBuffer
	e := startWith(t, k, shortZKSession, &log)
	produce(t, e.kafka, "a", 0, 4)
	setOffset(t, e.conn, "m", "a", "0", "1")
	owners := zklayout.Owners(chroot, "m", "a")
	if err := zklayout.CreateAll(e.conn, owners, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	// Persistent, not ephemeral: the claim must outlast the test's own
	// session over the outage.
	if _, err := e.conn.Create(owners+"/1", []byte("host-1-abc"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	e.eventually(t, "", `{"test_cluster":{"m":{"0":3,"1":null}}}`+"\n", 10*time.Second)

	restartZK := stopZK(e)
	// The session is 2 s: the client is replaced 5 s after it was lost.
	waitClientReplaced(t, &log, 20*time.Second)
	want := `{"test_cluster":{"m":{"0":null,"1":null}}}` + "\n"
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, got := e.get(t, ""); got != want {
			t.Fatalf("after the client was replaced: got %q, want %q", got, want)
		}
	}

	restarted := restartZK(t)
	e.eventually(t, "", `{"test_cluster":{"m":{"0":3,"1":null}}}`+"\n", 20*time.Second)
	// The claim released: the next client drops it. (A connection of its
	// own: the test's first session may have expired with the outage.)
	if err := zktest.Connect(t, restarted.Addr).Delete(owners+"/1", -1); err != nil {
		t.Fatal(err)
	}
	e.eventually(t, "", `{"test_cluster":{"m":{"0":3}}}`+"\n", 10*time.Second)
}
