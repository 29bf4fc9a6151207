package ktransfer_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// clogged is the address of a listener whose accept queue is full: a
// connect to it hangs (its SYNs are dropped) until the dialer's timeout,
// as with a backend behind a firewall dropping packets.
func clogged(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	c, err := net.Dial("tcp", addr) // fills the queue
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if c2, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c2.Close()
		t.Fatal("a connect to a listener with a full accept queue did not hang: this test needs Linux's behaviour")
	}
	return addr
}

// TestReleaseFreesWorkerOfConnectingPush: a process with worker_num 2
// holds two partitions; a record of partition 1 goes to a backend whose
// connects hang (conn_timeout_ms 20 s). A second process joins and
// partition 1 moves to it: the release abandons the push at
// shutdown_timeout_ms (300 ms). Its worker must serve partition 0 again:
// two keys of partition 0 are then pushed at once. Before, a release
// closed the connections of its pushes, not their connects: the worker
// stayed in the connect until conn_timeout_ms.
func TestReleaseFreesWorkerOfConnectingPush(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	dead := clogged(t)
	at := newTwoAtOnce() // two pushes of partition 0 in flight at once
	good := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if p.partition != "0" {
			return
		}
		at.hold()
	})
	m := module("m", "t", good.URL, dead)
	m.Protocol.TargetHeader = "target"
	m.Protocol.ConnTimeoutMs = 20000
	m.WorkerNum = 2
	cfg := e.config(t, 0, m)
	cfg.ShutdownTimeoutMs = 300
	tr, err := ktransfer.New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 30*time.Second)
	waitFor(t, "the first process holding both partitions", 10*time.Second, func() bool { return len(tr.Status()[0].Partitions) == 2 })
	cl := kafkatest.Client(t, e.kafka, e.kc, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produce := func(part int32, key, url string) {
		r := targeted("t", key, key, url)
		r.Partition = part
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(1, "h", "http://"+dead+"/hook")
	time.Sleep(time.Second) // the push of partition 1 connecting to the dead backend
	e.start(t, m)
	waitFor(t, "partition 1 handed over", 20*time.Second, func() bool {
		o := e.owners(t, "m", "t")
		return len(tr.Status()[0].Partitions) == 1 && len(o) == 2 && o["0"] != o["1"]
	})
	handedOver := time.Now()
	gURL := strings.TrimSuffix(good.URL, "/")
	produce(0, "x", gURL+"/x")
	produce(0, "y", gURL+"/y")
	select {
	case <-at.both:
	case <-time.After(6 * time.Second):
		t.Fatalf("partition 0's two keys not pushed at once with worker_num 2 %v after the hand-over: a worker is still held by the released partition's connecting push", time.Since(handedOver).Round(time.Millisecond))
	}
}
