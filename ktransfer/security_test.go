package ktransfer_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// ktransfer consumes from brokers that need TLS with a client certificate
// and SASL SCRAM, and keeps its nodes under a digest ACL that everyone may
// read and only its user may change.
func TestSecureKafkaAndZooKeeperACL(t *testing.T) {
	k, kc := kafkatest.StartSecure(t, []kafkatest.Topic{{Name: "t", Partitions: 2}}, "SCRAM-SHA-256")
	z := zktest.Start(t)
	e := &env{kafka: k, zkAdr: z.Addr, conn: envConn(t, z.Addr), kc: kc,
		zkAuth: zklayout.Auth{User: "ktransfer", Password: "zk-pass"}}
	var recs [][2]string
	for i := range 50 {
		recs = append(recs, [2]string{"k" + strconv.Itoa(i%5), strconv.Itoa(i)})
	}
	e.produce(t, "t", recs)
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "50 pushes", 10*time.Second, func() bool { return len(b.got()) == 50 })
	waitFor(t, "offsets committed", 10*time.Second, func() bool {
		a, _ := strconv.Atoi(e.storedOffset(t, "m", "t", 0))
		c, _ := strconv.Atoi(e.storedOffset(t, "m", "t", 1))
		return a+c == 50
	})

	// The owner sees the ACL (ZooKeeper hides digests from others).
	owner := envConn(t, z.Addr)
	if err := e.zkAuth.Authenticate(owner, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{
		zklayout.Offsets(chroot, "m", "t") + "/0",
		zklayout.Offsets(chroot, "m", "t"),
		zklayout.Consumers(chroot) + "/m",
		zklayout.Owners(chroot, "m", "t") + "/0",
		zklayout.ConsumerIDs(chroot, "m"),
	} {
		acl, _, err := owner.GetACL(node)
		if err != nil {
			t.Fatalf("%s: %v", node, err)
		}
		want := append(zk.DigestACL(zk.PermAll, "ktransfer", "zk-pass"), zk.WorldACL(zk.PermRead)...)
		if len(acl) != 2 || acl[0] != want[0] || acl[1] != want[1] {
			t.Errorf("%s: ACL %v, want %v", node, acl, want)
		}
	}
	// e.conn has no credentials: it reads but cannot change or remove.
	offset := zklayout.Offsets(chroot, "m", "t") + "/0"
	if _, _, err := e.conn.Get(offset); err != nil {
		t.Errorf("an unauthenticated client cannot read a world_read offset: %v", err)
	}
	if _, err := e.conn.Set(offset, []byte("0"), -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("an unauthenticated client set an offset: %v", err)
	}
	if err := e.conn.Delete(offset, -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("an unauthenticated client deleted an offset: %v", err)
	}
	if _, err := e.conn.Create(zklayout.Owners(chroot, "m", "t")+"/9", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("an unauthenticated client claimed a partition: %v", err)
	}
	// A client with another password is another identity.
	other := envConn(t, z.Addr)
	if err := (zklayout.Auth{User: "ktransfer", Password: "guess"}).Authenticate(other, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Set(offset, []byte("0"), -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("a wrong password set an offset: %v", err)
	}
}

// With acl: private, only ktransfer's user may even read its nodes.
func TestZooKeeperPrivateACL(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.zkAuth = zklayout.Auth{User: "ktransfer", Password: "zk-pass", ACL: "private"}
	e.produce(t, "t", [][2]string{{"a", "1"}, {"a", "2"}})
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "2 pushes", 10*time.Second, func() bool { return len(b.got()) == 2 })
	node := zklayout.Offsets(chroot, "m", "t") + "/0"
	owner := envConn(t, e.zkAdr)
	if err := e.zkAuth.Authenticate(owner, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "offset 2 stored", 10*time.Second, func() bool {
		data, _, err := owner.Get(node)
		return err == nil && string(data) == "2"
	})
	if _, _, err := e.conn.Get(node); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("an unauthenticated client read a private offset: %v", err)
	}
}

// TestZKAuthUserWithColonRefused: ZooKeeper's digest scheme reads
// "user:password" up to the first colon, and refuses an ACL whose id has
// more than one: a zk_auth.user holding a colon was accepted, then every
// node ktransfer created was refused ("zk: invalid ACL specified", retried
// for ever, nothing claimed or pushed), and kmonitor authenticated as
// another user than the one named. It is refused at start, naming the
// field (kmonitor: TestZKAuthUserWithColonRefused there).
func TestZKAuthUserWithColonRefused(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.zkAuth = zklayout.Auth{User: "ktransfer:eu", Password: "zk-pass"}
	tr, err := ktransfer.New(e.config(t, 0, module("m", "t", "127.0.0.1:1")), testLog(t))
	if err == nil {
		tr.Close()
		t.Fatal(`ktransfer.New accepted zk_auth.user "ktransfer:eu"`)
	}
	if !strings.Contains(err.Error(), `zk_auth.user: must not contain ':'`) {
		t.Errorf("ktransfer: %v\nlacks the zk_auth.user problem", err)
	}
}
