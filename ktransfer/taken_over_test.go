package ktransfer_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestTakenOverPartitionStopsWithoutACommit: a process pushes partition 0,
// whose first record's push gets no answer (read_timeout_ms 0): nothing of
// the partition can be committed. Another owner takes the partition over
// (its owner node replaced). The process must notice from the owner node
// (its watch wakes it), drop the partition and push none of its later
// records. Before, only a refused commit told it: with the head record
// hung it never came, and the process went on pushing a partition whose
// owner node was another's, beside the new owner.
func TestTakenOverPartitionStopsWithoutACommit(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	done := make(chan struct{})
	hung := make(chan struct{}, 1)
	var pushes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		if r.URL.Query().Get("key") == "h" {
			select {
			case hung <- struct{}{}:
			default:
			}
			select {
			case <-r.Context().Done():
			case <-done:
			}
			return
		}
		pushes.Add(1)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) }) // before srv.Close, which waits for the handlers
	m := module("m", "t", srv.URL)
	m.Protocol.ReadTimeoutMs = 0
	tr := startClaimingPartition0(t, e.config(t, 0, m))
	e.produce(t, "t", [][2]string{{"h", "v"}})
	select {
	case <-hung:
	case <-time.After(10 * time.Second):
		t.Fatal("the push of h never came")
	}
	takeOverPartition0(t, e)
	waitFor(t, "the process to drop the partition whose owner node is another's", 5*time.Second, func() bool {
		return len(tr.Status()[0].Partitions) == 0
	})
	e.produce(t, "t", [][2]string{{"a", "v"}, {"b", "v"}, {"c", "v"}})
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if n := pushes.Load(); n > 0 {
			t.Fatalf("%d records of the partition pushed after another owner took it", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if o := e.owners(t, "m", "t")["0"]; o != "intruder" {
		t.Errorf("owner node now %q, want the new owner's", o)
	}
}

// startClaimingPartition0 runs a process of cfg until the test ends and
// waits until it holds partition 0 of its first module.
func startClaimingPartition0(t *testing.T, cfg ktransfer.Config) *ktransfer.Transfer {
	t.Helper()
	tr, err := ktransfer.New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "partition 0 claimed", 10*time.Second, func() bool { return len(tr.Status()[0].Partitions) == 1 })
	return tr
}

// takeOverPartition0 replaces the owner node of module m's partition t/0
// by another owner's ("intruder"), as a process that took it over would.
// One transaction: between a delete and a create the process, woken by the
// delete, may claim the partition again first (the create then fails).
func takeOverPartition0(t *testing.T, e *env) {
	t.Helper()
	owner := zklayout.Owners(chroot, "m", "t") + "/0"
	if _, err := e.conn.Multi(
		&zk.DeleteRequest{Path: owner, Version: -1},
		&zk.CreateRequest{Path: owner, Data: []byte("intruder"), Acl: zk.WorldACL(zk.PermAll), Flags: zk.FlagEphemeral},
	); err != nil {
		t.Fatalf("replace %s: %v", owner, err)
	}
}
