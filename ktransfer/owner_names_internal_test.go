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

// TestOwnerNodeNamesAreCanonical: only an owner node named as ktransfer and
// Kafka's consumers name it ("7") says who holds partition 7. Nodes named
// "07", "+7" or "007" (written by hand or a tool) were read as partition 7's
// owner too, the last one listed winning: the assignment then saw another
// owner (here a dead instance) than the one holding the partition, and
// moved it.
func TestOwnerNodeNamesAreCanonical(t *testing.T) {
	z := zktest.Start(t)
	conn := zktest.ConnectSession(t, z.Addr, 10*time.Second)
	acl := zk.WorldACL(zk.PermAll)
	const chroot = "/mq/c"
	m := &module{t: &Transfer{cfg: Config{ZKChroot: chroot}, zk: conn, acl: acl, id: "A"}, cfg: Module{Name: "m", Topic: "t"}, log: slog.New(slog.DiscardHandler)}
	dir := zklayout.Owners(chroot, "m", "t")
	if err := zklayout.CreateAll(conn, dir, acl); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"7": "B", "07": "gone", "+7": "gone", "007": "gone", "-1": "gone"} {
		if _, err := conn.Create(path.Join(dir, name), []byte(data), 0, acl); err != nil {
			t.Fatal(err)
		}
	}
	_, stat, err := conn.Get(path.Join(dir, "7"))
	if err != nil {
		t.Fatal(err)
	}
	got, unreadable, err := m.owners(dir)
	if err != nil || unreadable != nil {
		t.Fatal(err, unreadable)
	}
	want := map[int32]owner{7: {id: "B", epoch: stat.Czxid}}
	if len(got) != len(want) || got[7] != want[7] {
		t.Errorf("owners = %+v, want %+v", got, want)
	}
}
