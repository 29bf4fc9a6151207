package ktransfer

import (
	"log/slog"
	"path"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestPartitionCountOfTwoAddedPartitionsStartedAtOnce: partitions 1 and 2
// were added to a topic the module started on with 1; two processes store
// their first offsets at the same moment and each moves the count of the
// offsets/<topic> node past the added partitions it sees stored. A listed
// the offsets before B stored partition 2's, B after; A writes the count
// (2) first. B's write, refused for its version, must not be dropped: the
// count would stay below partition 2, which has an offset, and with its
// offset node deleted by an operator, partition 2 would start again at
// its first record since the module's start instead of the newest.
func TestPartitionCountOfTwoAddedPartitionsStartedAtOnce(t *testing.T) {
	z := zktest.Start(t)
	acl := zk.WorldACL(zk.PermAll)
	const chroot = "/mq/c"
	dir := zklayout.Offsets(chroot, "m", "t")
	admin := zktest.ConnectSession(t, z.Addr, 10*time.Second)
	if err := zklayout.CreateAll(admin, path.Dir(dir), acl); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Create(dir, zklayout.EncodeOffsetsTopic(1), 0, acl); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"0", "1"} {
		if _, err := admin.Create(dir+"/"+c, []byte("0"), 0, acl); err != nil {
			t.Fatal(err)
		}
	}
	proc := func(id int32) *partition {
		conn := zktest.ConnectSession(t, z.Addr, 10*time.Second)
		m := &module{t: &Transfer{cfg: Config{ZKChroot: chroot}, zk: conn, acl: acl, id: "x"},
			cfg: Module{Name: "m", Topic: "t"}, log: slog.New(slog.DiscardHandler)}
		return &partition{m: m, id: id, log: m.log}
	}
	a, b := proc(1), proc(2)

	bListed, aWrote := make(chan struct{}), make(chan struct{})
	bDone := make(chan struct{})
	hook := func(p *partition) {
		switch p {
		case a:
			// A listed partitions 0 and 1: B stores 2 and gets ready to
			// write the count, then A writes it.
			if _, err := admin.Create(dir+"/2", []byte("0"), 0, acl); err != nil {
				t.Error(err)
			}
			go func() {
				defer close(bDone)
				b.recordPartitions()
			}()
			select {
			case <-bListed:
			case <-time.After(10 * time.Second):
				t.Error("B never got to its write")
			}
		case b:
			select {
			case bListed <- struct{}{}:
				select {
				case <-aWrote:
				case <-time.After(10 * time.Second):
					t.Error("A never wrote")
				}
			default: // B's write again
			}
		}
	}
	beforeCountWrite.Store(&hook)
	t.Cleanup(func() { beforeCountWrite.Store(nil) })

	a.recordPartitions()
	close(aWrote)
	select {
	case <-bDone:
	case <-time.After(10 * time.Second):
		t.Fatal("B's write never returned")
	}
	data, _, err := admin.Get(dir)
	if n, ok := zklayout.ParseOffsetsTopic(data); err != nil || !ok || n != 3 {
		t.Errorf("offsets node records %q (%v), want 3 partitions: partitions 1 and 2 have their offsets", data, err)
	}
}
