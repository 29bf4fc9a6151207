package ktransfer_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestRestartOffsetStoreIsTheCommittedOffsetReported attacks the promise
// that ktransfer_committed_offset, /status's committed offset, its lag and
// ktransfer_lag report the offset stored in ZooKeeper. A partition's read
// position falls below the log start while a record read before is
// retried: the restart offset (20) is stored at once, and the record
// waits. ktransfer_committed_offset was set by regular commits only, and
// /status and the lag followed the commit point of the records dispatched
// before the restart (9): for as long as the record was retried, the
// operator saw an offset ZooKeeper no longer held, and a lag counted from
// it.
func TestRestartOffsetStoreIsTheCommittedOffsetReported(t *testing.T) {
	for _, policy := range []string{"newest", "oldest"} {
		t.Run(policy, func(t *testing.T) {
			e, _, r, refuse := belowLogStartWhileRetrying(t, policy)
			admin := "http://" + r.tr.AdminAddr().String()
			waitFor(t, "the restart offset stored", 30*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "20" })
			reportsStored(t, e, admin, "20")
			// The log ends at 25 (records written after the restart
			// began): the 5 records from the stored offset on wait behind
			// the retried one, and the lag says so, though the reader
			// fetches nothing of the partition meanwhile.
			reportsLogEnd(t, admin, 25, 5)
			refuse.Store(false)
			waitFor(t, "offset 25 stored", 30*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "25" })
			reportsStored(t, e, admin, "25")
		})
	}
}

// TestStartOffsetStoreIsTheCommittedOffsetReported: a partition claimed
// with nothing to push reports the offset its start stored; the series
// was missing until a record was committed. It reports its log end (3)
// too, though no fetch of it returns a record: that was 0.
func TestStartOffsetStoreIsTheCommittedOffsetReported(t *testing.T) {
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
	waitFor(t, "the start stored (the offset node written again)", 30*time.Second, func() bool {
		_, stat, err := e.conn.Get(dir + "/0")
		return err == nil && stat.Version > 0
	})
	reportsStored(t, e, admin, "3")
	reportsLogEnd(t, admin, 3, 0)
	if n := len(b.got()); n != 0 {
		t.Errorf("%d records pushed, want none below the stored offset", n)
	}
}

// reportsStored waits (10 s at most: the reports follow the store at
// once) until partition 0 of module m reports offset want, which must
// be the one stored in ZooKeeper meanwhile: as ktransfer_committed_offset,
// as /status's committed offset, with /status's lag and ktransfer_lag
// the log end in /status less want, never negative.
func reportsStored(t *testing.T, e *env, admin, want string) {
	t.Helper()
	wantN, err := strconv.ParseInt(want, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	var last string
	deadline := time.Now().Add(10 * time.Second)
	for {
		stored := e.storedOffset(t, "m", "t", 0)
		metric := metricValue(t, admin, `ktransfer_committed_offset{module="m",partition="0"}`)
		var report ktransfer.StatusReport
		if err := json.Unmarshal([]byte(get(t, admin+"/status")), &report); err != nil {
			t.Fatalf("/status: %v", err)
		}
		lagMetric := metricValue(t, admin, `ktransfer_lag{module="m",partition="0"}`)
		var ps *ktransfer.PartitionStatus
		for i := range report.Modules {
			for j := range report.Modules[i].Partitions {
				if report.Modules[i].Name == "m" && report.Modules[i].Partitions[j].Partition == 0 {
					ps = &report.Modules[i].Partitions[j]
				}
			}
		}
		if ps != nil {
			wantLag := max(0, orMinus1(ps.HighWater)-wantN)
			if stored == want && metric == want && ps.Committed == wantN && orMinus1(ps.Lag) == wantLag &&
				lagMetric == strconv.FormatInt(wantLag, 10) {
				return
			}
			last = fmt.Sprintf("ktransfer_committed_offset %q, /status committed %d high_water %d lag %d, ktransfer_lag %q; stored in ZooKeeper %s (want %s, lag %d)",
				metric, ps.Committed, orMinus1(ps.HighWater), orMinus1(ps.Lag), lagMetric, stored, want, wantLag)
		} else {
			last = fmt.Sprintf("partition 0 not in /status; stored in ZooKeeper %s", stored)
		}
		if time.Now().After(deadline) {
			t.Fatalf("reports never matched the stored offset: %s", last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// orMinus1 is a /status number, -1 for null (not known).
func orMinus1(v *int64) int64 {
	if v == nil {
		return -1
	}
	return *v
}

// reportsLogEnd waits (10 s at most: the log end no fetch reports is
// asked of Kafka every second) until partition 0 of module m reports log
// end end and lag lag in /status, ktransfer_high_water_offset and
// ktransfer_lag.
func reportsLogEnd(t *testing.T, admin string, end, lag int64) {
	t.Helper()
	var last string
	deadline := time.Now().Add(10 * time.Second)
	for {
		var report ktransfer.StatusReport
		if err := json.Unmarshal([]byte(get(t, admin+"/status")), &report); err != nil {
			t.Fatalf("/status: %v", err)
		}
		hw := metricValue(t, admin, `ktransfer_high_water_offset{module="m",partition="0"}`)
		lagMetric := metricValue(t, admin, `ktransfer_lag{module="m",partition="0"}`)
		last = fmt.Sprintf("partition 0 not in /status; ktransfer_high_water_offset %q, ktransfer_lag %q", hw, lagMetric)
		for _, m := range report.Modules {
			for _, ps := range m.Partitions {
				if m.Name != "m" || ps.Partition != 0 {
					continue
				}
				if orMinus1(ps.HighWater) == end && orMinus1(ps.Lag) == lag && hw == strconv.FormatInt(end, 10) && lagMetric == strconv.FormatInt(lag, 10) {
					return
				}
				last = fmt.Sprintf("/status high_water %d lag %d (-1: null), ktransfer_high_water_offset %q, ktransfer_lag %q",
					orMinus1(ps.HighWater), orMinus1(ps.Lag), hw, lagMetric)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("log end %d and lag %d never reported: %s", end, lag, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
