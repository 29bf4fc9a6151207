package kmonitor_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// Dotted zabbix keys join names that may hold dots themselves: module
// "a.b" (one topic) partition 1 and module "a" (two topics) topic "b"
// partition 1 both make test_cluster.a.b.1.delay. Zabbix would take two
// values a poll for one item, each the lag of another partition. Neither
// may be sent under that key: both count as errors, and the log names them
// (the keys=item form tells them apart).
func TestDottedZabbixKeysThatCollideAreNotSent(t *testing.T) {
	e, log := startCollidingKeys(t, "15") // lag 5
	e.eventually(t, "", `{"test_cluster":{"a":{"a.1":3,"b.1":5},"a.b":{"1":1}}}`+"\n", 10*time.Second)
	_, z := e.get(t, "?format=zabbix")
	if want := "- test_cluster.a.a.1.delay 3\n- test_cluster.kmonitor.errors 2\n"; z != want {
		t.Errorf("zabbix with two partitions under one key:\n got  %q\n want %q", z, want)
	}
	waitCollisionWarned(t, log)
	log.mu.Lock()
	logged := log.buf.String()
	log.mu.Unlock()
	if !strings.Contains(logged, "test_cluster.a.b.1.delay") {
		t.Errorf("the warning does not name the key: %s", logged)
	}
	// The item form tells them apart.
	_, items := e.get(t, "?format=zabbix&keys=item")
	for _, want := range []string{"kmonitor.delay[test_cluster,a,b,1] 5", "kmonitor.delay[test_cluster,a.b,a,1] 1", "kmonitor.errors[test_cluster] 0"} {
		if !strings.Contains(items, want) {
			t.Errorf("item keys lack %q: %s", want, items)
		}
	}
}

// zabbix_sender fed one cluster at a time (/delay?cluster=NAME) gets the
// same answer for a key shared by several partitions, and the log must
// say why those partitions count as errors just as well.
func TestDottedZabbixKeysThatCollideAreLoggedForOneCluster(t *testing.T) {
	e, log := startCollidingKeys(t, "15")
	e.eventually(t, "?cluster=test_cluster&format=zabbix", "- test_cluster.a.a.1.delay 3\n- test_cluster.kmonitor.errors 2\n", 10*time.Second)
	waitCollisionWarned(t, log)
}

// A key shared by several partitions stays out while one of them is in
// error: sending the other one's lag under it would show the partition
// in error as healthy to an item that meant it.
func TestDottedZabbixKeySharedWithAPartitionInErrorIsNotSent(t *testing.T) {
	e, log := startCollidingKeys(t, "bogus") // unknown
	e.eventually(t, "", `{"test_cluster":{"a":{"a.1":3,"b.1":null},"a.b":{"1":1}}}`+"\n", 10*time.Second)
	if _, z := e.get(t, "?format=zabbix"); z != "- test_cluster.a.a.1.delay 3\n- test_cluster.kmonitor.errors 2\n" {
		t.Errorf("zabbix with a key shared by a partition in error:\n got  %q\n want %q", z, "- test_cluster.a.a.1.delay 3\n- test_cluster.kmonitor.errors 2\n")
	}
	waitCollisionWarned(t, log)
}

// startCollidingKeys starts kmonitor on topics a and b (2 partitions
// each, partition 1 of a 10 records long, of b 20) and modules "a.b"
// (topic a, lag 1) and "a" (topics a, lag 3, and b at offset bOffset),
// whose partitions 1 share the dotted zabbix key test_cluster.a.b.1.delay.
// It returns kmonitor and its log.
func startCollidingKeys(t *testing.T, bOffset string) (*env, *logBuffer) {
	t.Helper()
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 2}, {Name: "b", Partitions: 2}})
	log := new(logBuffer)
	e := startWith(t, k, nil, log)
	produce(t, e.kafka, "a", 1, 10)
	produce(t, e.kafka, "b", 1, 20)
	setOffset(t, e.conn, "a.b", "a", "1", "9") // lag 1
	setOffset(t, e.conn, "a", "a", "1", "7")   // lag 3
	setOffset(t, e.conn, "a", "b", "1", bOffset)
	return e, log
}

// waitCollisionWarned waits up to 5 s for log to warn of zabbix keys
// shared by several partitions.
func waitCollisionWarned(t *testing.T, log *logBuffer) {
	t.Helper()
	if !waitFor(5*time.Second, func() bool { return log.count("zabbix keys shared by several partitions") > 0 }) {
		t.Errorf("no warning naming the partitions that share a zabbix key")
	}
}
