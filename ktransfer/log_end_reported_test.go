package ktransfer_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestLogEndReportedWhileTheWindowIsFull attacks the promise that /status's
// high_water and lag, ktransfer_high_water_offset and ktransfer_lag give
// the partition's log end: the window fills behind a record the backend
// refuses, so the reader fetches nothing more of the partition, and
// records are written meanwhile. The log end of the last fetch (5) stayed
// reported, and the lag hid the 5 records written since.
func TestLogEndReportedWhileTheWindowIsFull(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", numbered(0, 5, keyEach))
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) })
	mod := module("m", "t", b.URL)
	mod.WindowSize = 2
	_, admin := e.startAdmin(t, 0, mod)
	waitFor(t, "the window full", 30*time.Second, func() bool {
		return metricValue(t, admin, `ktransfer_window_used{module="m"}`) == "2"
	})
	reportsLogEnd(t, admin, 5, 5)
	e.produce(t, "t", numbered(5, 10, keyEach))
	reportsLogEnd(t, admin, 10, 10)
}

// TestLogEndReportedOfAnIdlePartition: a partition claimed with nothing to
// push (its offset stored at its log end, 3) reports that log end, not 0,
// though no fetch of it returns a record.
func TestLogEndReportedOfAnIdlePartition(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", numbered(0, 3, keyEach))
	dir := zklayout.Offsets(chroot, "m", "t")
	if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Create(dir+"/0", []byte("3"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, nil)
	_, admin := e.startAdmin(t, 0, module("m", "t", b.URL))
	reportsLogEnd(t, admin, 3, 0)
}
