package kmonitor

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// A child's goroutine that returns by itself (its znode deleted) leaves
// no context behind: one never cancelled stays among its parent's
// children, the client's, for as long as the client lasts; consumer
// groups that come and go would add one each.
func TestChildEndedByItselfLeavesNoContext(t *testing.T) {
	conn := zktest.Connect(t, zktest.Start(t).Addr)
	for _, p := range []string{"/x", "/x/c"} {
		if _, err := conn.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	c := newCluster("test_cluster", ClusterConfig{}, BaseConfig{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	first := make(chan context.Context, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.watchChildren(ctx, conn, folder{path: "/x", client: ctx, listed: func([]string) {}}, func(cctx context.Context, name string, _ func()) {
			select {
			case first <- cctx:
				return // the first one ends by itself
			default:
			}
			<-cctx.Done()
		})
	}()
	var cctx context.Context
	select {
	case cctx = <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("no child started")
	}
	select {
	case <-cctx.Done():
	case <-time.After(5 * time.Second):
		t.Error("the context of a child that ended by itself is still live")
	}
	cancel()
	<-done
}
