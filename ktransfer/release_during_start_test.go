package ktransfer_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestReleaseDuringStartRetryKeepsRunning: both partitions cannot start
// (unreadable stored offsets), so the first process retries their start
// with a backoff. A second process joins: one partition is handed over,
// cancelling its start while it waits to retry. That is a release, not a
// failure: the first process must keep running.
func TestReleaseDuringStartRetryKeepsRunning(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	dir := zklayout.Offsets(chroot, "m", "t")
	if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"0", "1"} {
		if _, err := e.conn.Create(dir+"/"+p, []byte("not an offset"), 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	tr, err := ktransfer.New(e.config(t, 0, m), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	waitFor(t, "both partitions owned by the first process", 10*time.Second, func() bool { return len(e.owners(t, "m", "t")) == 2 })
	time.Sleep(time.Second) // a few start attempts; the next waits its backoff
	second := e.start(t, m)
	_ = second
	select {
	case err := <-done:
		t.Fatalf("the first process stopped after handing a partition over: Run returned %v", err)
	case <-time.After(5 * time.Second):
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
}
