package ktransfer_test

import (
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestFleetActsOnChangesMadeWhileItsWatchIsDown attacks the fleet's
// promise that partitions are assigned over the live instances (README,
// "Fleet"; DESIGN, "Fleet") when a change of ids/ comes while a process's
// watch on it is not set, so that no event tells it: process a holds both
// partitions of module m, then b registers, and a must hand one over well
// before its periodic check (a minute away here). The watch is down when
// b registers because:
//   - its first arm fails (the connection down at that moment) and is
//     tried again a second later;
//   - its first arm is late (a's first reassignment read ids/ before);
//   - its arm after a change it was told of (a persistent node under
//     ids/, which takes no partition) fails and is tried again.
//
// Before, an arm that came after a's reassignment had read the folder
// woke nothing: a held both partitions, and b none, until the periodic
// check (10 s by default).
func TestFleetActsOnChangesMadeWhileItsWatchIsDown(t *testing.T) {
	for _, tc := range []struct {
		name        string
		fail        bool // the arms fail; else the first one is late
		afterChange bool // the arms disturbed follow a change a was told of
	}{
		{"first arm fails", true, false},
		{"first arm late", false, false},
		{"arm after a change fails", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) { changeWhileWatchDown(t, tc.fail, tc.afterChange) })
	}
}

func changeWhileWatchDown(t *testing.T, fail, afterChange bool) {
	// Only watches move partitions: the periodic recomputation, which
	// would mend what a missed, is a minute away.
	t.Cleanup(ktransfer.SetPartitionPoll(time.Minute)) // restored after the processes stopped
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	m := module("m", "t", newBackend(t, nil).URL)
	ids := zklayout.ConsumerIDs(chroot, "m")
	owners := zklayout.Owners(chroot, "m", "t")
	var aLog runtest.Log
	tr, err := ktransfer.New(e.config(t, 0, m), cutLog(&aLog))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("a's log:\n%s", aLog.String())
		}
	})
	var tries func(string) int
	var release func()
	if !afterChange {
		// Both folders: a's own claims must not wake it through owners/.
		tries, release = ktransfer.DisturbWatch(t, tr, fail, ids, owners)
	}
	a := &running{tr: tr, stop: runtest.Start(t, tr.Run, 20*time.Second)}
	waitFor(t, "a to hold both partitions", 30*time.Second, func() bool {
		return settled(t, e, []*running{a}, 2)
	})
	if afterChange {
		tries, release = ktransfer.DisturbWatch(t, tr, true, ids, owners)
		if _, err := e.conn.Create(ids+"/stale", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a to read the persistent node its watch told of", 30*time.Second, func() bool {
			return strings.Contains(aLog.String(), "persistent nodes under ids/")
		})
	}
	// b registers once a has no reassignment left to run: one still to
	// come would read b whatever the watch did. With both folders
	// disturbed from the start, a's only one is its first, done when it
	// holds both partitions. After the change, the one it asks for runs
	// within a debounce (100 ms) of the first failed arm: b registers
	// after the second, a second later.
	disturbed := 1
	if afterChange {
		disturbed = 2
	}
	waitFor(t, "a's watch on ids/ disturbed", 30*time.Second, func() bool { return tries(ids) >= disturbed })
	b := e.start(t, m)
	waitFor(t, "b registered", 30*time.Second, func() bool {
		ok, _, err := e.conn.Exists(ids + "/" + b.tr.ID())
		return err == nil && ok
	})
	release()
	start := time.Now()
	waitFor(t, "a to hand b its partition, well before the periodic check", 10*time.Second, func() bool {
		return settled(t, e, []*running{a, b}, 2)
	})
	t.Logf("b held its partition %v after the disturbance of a's watch ended (arms of it disturbed: %d)", time.Since(start).Round(time.Millisecond), tries(ids))
}
