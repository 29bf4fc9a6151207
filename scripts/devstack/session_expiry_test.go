package main

import (
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestBrokersRegisteredAgainAfterTheSessionExpired attacks the promise
// that the stack's brokers are registered in ZooKeeper as a ZooKeeper-mode
// Kafka broker's are: a broker whose session expires registers again. The
// stack, paused past its session (SIGSTOP: ZooKeeper, its own process,
// runs on and expires it), lost its registrations for good: kmonitor and
// ktransfer found no broker until the stack was restarted.
func TestBrokersRegisteredAgainAfterTheSessionExpired(t *testing.T) {
	port := bintest.FreePorts(t, 3)
	st := startStack(t, "-dir", t.TempDir(), "-zk-port", "0", "-kafka-port", strconv.Itoa(port), "-topics", "t:1")
	pid, err := strconv.Atoi(st.ready["pid"])
	if err != nil {
		t.Fatalf("ready file pid %q: %v", st.ready["pid"], err)
	}
	conn := zktest.Connect(t, st.ready["zookeeper"])
	ids := zklayout.BrokerIDs(st.ready["chroot"])
	registered := func() []string {
		children, _, _ := conn.Children(ids)
		slices.Sort(children)
		return children
	}
	if got := registered(); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("%s: %v, want 0 1 2", ids, got)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	defer resume()
	for deadline := time.Now().Add(30 * time.Second); len(registered()) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the paused stack's registrations still there after 30 s: %v", registered())
		}
	}
	resume()
	for deadline := time.Now().Add(20 * time.Second); !slices.Equal(registered(), []string{"0", "1", "2"}); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s 20 s after the stack resumed with its session expired: %v, want 0 1 2", ids, registered())
		}
	}
}
