package kmonitor_test

import (
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// The offsets an old ZooKeeper client read are shown as unknown until the
// next client has read them again. Here the next one may no longer list
// the module's offsets/ (its ACL was closed while the old client held a
// watch below it, which an ACL change does not fire): the partition the
// old client read must not keep showing its old lag as if it were known.
func TestOffsetsOfAReplacedClientUnknownUntilReadAgain(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 4}})
	var log logBuffer
	e := startWith(t, k, shortZKSession, &log)
	produce(t, e.kafka, "a", 2, 4)
	setOffset(t, e.conn, "m", "a", "2", "1")
	e.eventually(t, "", `{"test_cluster":{"m":{"2":3}}}`+"\n", 10*time.Second)

	closeOffsets(t, e.conn, "m")

	restartZK := stopZK(e)
	// The session is 2 s: the client is replaced 4 s after it was lost.
	waitClientReplaced(t, &log, 15*time.Second)
	restartZK(t)
	// The new client has listed the module and found offsets/ closed to it.
	e.eventuallyContains(t, "", 15*time.Second, `"*.*":null`)
	if _, j := e.get(t, ""); j != `{"test_cluster":{"m":{"*.*":null,"2":null}}}`+"\n" { // its key as before: an unreadable folder switches none
		t.Fatalf("offsets of the replaced client, not read again: got %q, want partition 2 unknown", j)
	}
	if _, z := e.get(t, "?format=zabbix"); z != "- test_cluster.kmonitor.errors 2\n" {
		t.Fatalf("zabbix: got %q, want no lag line and 2 errors", z)
	}
}
