package kmonitor_test

import (
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
)

// The watcher of a deleted offsets/<topic> whose parent offsets/ kmonitor
// may not list shows the folder as unreadable ("*"), and asks again every
// 5 s. At each retry it found the folder still deleted and dropped the
// entry, then listed offsets/ again, was denied again, and set it back:
// between the two the module vanished from /delay (and from the errors
// count, zabbix, Prometheus), for as long as a busy machine took to list
// offsets/. Here that listing is made to take 1 s.
func TestDeletedTopicUnderUnreadableFolderStaysThroughItsRetry(t *testing.T) {
	kmonitor.DelayParentWaits(t, time.Second)
	e, want := deletedTopicUnderClosedOffsets(t)

	// Over 7 s: past the first retry, 5 s after the entry was set, and the
	// 1 s its listing of offsets/ takes.
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, got := e.get(t, ""); got != want {
			t.Fatalf("/delay at the retry of the deleted topic's unlistable folder: %q, want %q", got, want)
		}
	}
}
