package kmonitor_test

import (
	"io"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestAddedPartitionReportedAfterItsModuleIsCreatedAgain: a module whose
// offsets/t records a partition count of 1, on a topic of 2 partitions
// (one added since), is deleted whole and created again, count included,
// before kmonitor's folder watchers look for it (a busy machine runs them
// late, which the test makes sure of). The count's watcher sees the
// module's offsets/ gone and returns; the folder watchers find it created
// again and go on. The topic must be followed anew, count and all: before,
// the folder watchers went on alone, the count was never read again, and
// partition 1, which no process had started, vanished from every output
// for good, with no error.
func TestAddedPartitionReportedAfterItsModuleIsCreatedAgain(t *testing.T) {
	kmonitor.DelayConsumersRelists(t, 2*time.Second)
	kmonitor.DelayFolderRelists(t, 2*time.Second)
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 2}})
	e := startWith(t, k, nil, io.Discard)
	produce(t, e.kafka, "t", 0, 5)
	produce(t, e.kafka, "t", 1, 3)
	// owners/ unreadable: its watcher does not see the module go (as
	// TestModuleRecreatedBeforeConsumersListedAgain).
	module := moduleWithUnreadableOwners(t, e.conn, "m")
	setPartitionCount(t, e.conn, "m", "t", 1)
	setOffset(t, e.conn, "m", "t", "0", "5")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":0,"1":3}}}`+"\n", 15*time.Second)

	deleteAll(t, e.conn, module)
	// Not a wait for an outcome: time for the count's watcher to find the
	// module gone, well before the folder watchers look.
	time.Sleep(300 * time.Millisecond)
	setPartitionCount(t, e.conn, "m", "t", 1)
	setOffset(t, e.conn, "m", "t", "0", "4")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":1,"1":3}}}`+"\n", 15*time.Second)
}
