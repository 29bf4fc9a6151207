package ktransfer_test

import (
	"errors"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestStopWaitsForAClientReplacement stops ktransfer while its session
// watcher, ZooKeeper silent for two session timeouts, is putting a new
// client in place. Run must not return before the watcher did, and the
// client it put in place must be closed; before, Run closed the client
// it found and returned, and the new one, installed after, stayed open
// (its goroutines, its connection attempts) for as long as the process.
func TestStopWaitsForAClientReplacement(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	z := zktest.Start(t)
	e := &env{kafka: k, zkAdr: z.Addr, kc: kafkaconf.Default()}
	b := newBackend(t, nil)
	started, release := ktransfer.HoldClientReplace(t)
	r := e.startWith(t, 2000, module("m", "t", b.URL))
	waitFor(t, "the partition claimed", 10*time.Second, func() bool { return len(r.tr.Status()[0].Partitions) == 1 })
	z.Stop()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("no client replacement 20 s after ZooKeeper stopped (session timeout 2 s)")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	select {
	case err := <-stopped:
		t.Errorf("Run returned (%v) while its session watcher was replacing the ZooKeeper client", err)
		release()
		time.Sleep(time.Second) // the replacement, left running, puts its client in place
	case <-time.After(8 * time.Second):
		release()
		select {
		case <-stopped:
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not return 20 s after the replacement went on")
		}
	}
	closed := make(chan error, 1)
	go func() { _, _, err := ktransfer.ZKConn(r.tr).Exists("/"); closed <- err }()
	select {
	case err := <-closed:
		if !errors.Is(err, zk.ErrConnectionClosed) {
			t.Errorf("a request on the client in use after Run returned: %v; want %v", err, zk.ErrConnectionClosed)
		}
	case <-time.After(5 * time.Second):
		t.Error("the client in use after Run returned is still open: a request waits for a server")
	}
}
