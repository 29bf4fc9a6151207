package kmonitor_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// A partition added to a module's topic that no ktransfer process has
// claimed has no offset znode: it used to be invisible, the module's
// other partitions at lag 0 reading as a healthy module while its records
// were pushed by no one. ktransfer records in offsets/<topic> the number
// of partitions the topic had when the module first stored offsets of it;
// a partition the brokers list beyond the offset znodes is reported, in
// every form, its lag the records from its log start (where ktransfer
// starts a partition added to the topic) to its log end. Once it has an
// offset znode the committed offset rules again; offsets/<topic> with no
// count (hand-made, sparse) reports only the znodes, as before.
func TestUnstoredPartitionIsReported(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 2}})
	e := startOn(t, k, kafkaconf.Default(), zklayout.Auth{})
	produce(t, e.kafka, "t", 0, 5)
	produce(t, e.kafka, "t", 1, 3)
	dir := zklayout.Offsets(chroot, "m", "t")
	setPartitionCount(t, e.conn, "m", "t", 2)
	setOffset(t, e.conn, "m", "t", "0", "5")
	setOffset(t, e.conn, "m", "t", "1", "3")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":0,"1":0}}}`+"\n", 30*time.Second)

	// The topic grows to 3 partitions; 50 records go to the new one, of
	// which the 10 oldest are deleted (its log starts at 10).
	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, kafkaconf.Default()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adm.CreatePartitions(ctx, 1, "t"); err != nil {
		t.Fatal(err)
	}
	produce(t, e.kafka, "t", 2, 50)
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: "t", Partition: 2, At: 10})
	if r, err := adm.DeleteRecords(ctx, del); err != nil || r.Error() != nil {
		t.Fatalf("delete records: %v %v", err, r.Error())
	}

	e.eventually(t, "", `{"test_cluster":{"m":{"0":0,"1":0,"2":40}}}`+"\n", 30*time.Second)
	e.eventually(t, "?format=zabbix", "- test_cluster.m.0.delay 0\n- test_cluster.m.1.delay 0\n"+
		"- test_cluster.m.2.delay 40\n- test_cluster.kmonitor.errors 0\n", 5*time.Second)
	_, detail := e.get(t, "?detail=1")
	if !strings.Contains(detail, `"2":{"topic":"t","partition":"2","lag":40,"committed":null,"log_end":50,`) {
		t.Errorf("detail of a partition without an offset znode: %s", detail)
	}
	_, lld := e.get(t, "?format=zabbix_lld")
	if !strings.Contains(lld, `{"{#CLUSTER}":"test_cluster","{#MODULE}":"m","{#TOPIC}":"t","{#PARTITION}":"2"}`) {
		t.Errorf("zabbix_lld leaves out the partition without an offset znode: %s", lld)
	}
	_, prom := e.get(t, "?format=prometheus")
	for _, want := range []string{
		`kmonitor_lag_messages{cluster="test_cluster",module="m",partition="2",topic="t"} 40`,
		`kmonitor_lag_known{cluster="test_cluster",module="m",partition="2",topic="t"} 1`,
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("prometheus output lacks %s", want)
		}
	}

	// A process stores its start: the committed offset counts from then.
	setOffset(t, e.conn, "m", "t", "2", "45")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":0,"1":0,"2":5}}}`+"\n", 5*time.Second)

	// A partition below the count loses its offset znode (deleted by
	// hand, to start it again): no process has started it, it is
	// reported from its log start (0) too.
	deleteAll(t, e.conn, dir+"/1")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":0,"1":3,"2":5}}}`+"\n", 5*time.Second)

	// offsets/<topic> without a count (hand-made): sparse znodes are all
	// there is, as before.
	if _, err := e.conn.Set(dir, nil, -1); err != nil {
		t.Fatal(err)
	}
	e.eventually(t, "", `{"test_cluster":{"m":{"0":0,"2":5}}}`+"\n", 5*time.Second)
	e.eventually(t, "?format=zabbix", "- test_cluster.m.0.delay 0\n- test_cluster.m.2.delay 5\n"+
		"- test_cluster.kmonitor.errors 0\n", 5*time.Second)
}
