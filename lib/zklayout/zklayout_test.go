package zklayout_test

import (
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

func TestPaths(t *testing.T) {
	for got, want := range map[string]string{
		zklayout.BrokerIDs("/mq/c1"):           "/mq/c1/brokers/ids",
		zklayout.BrokerIDs(""):                 "/brokers/ids",
		zklayout.ConsumerIDs("/mq/c1", "m"):    "/mq/c1/consumers/m/ids",
		zklayout.Owners("/mq/c1/", "m", "t"):   "/mq/c1/consumers/m/owners/t",
		zklayout.Offsets("mq/c1", "m", "t"):    "/mq/c1/consumers/m/offsets/t",
		zklayout.Consumers("/mq/test_cluster"): "/mq/test_cluster/consumers",
	} {
		if got != want {
			t.Errorf("%s, want %s", got, want)
		}
	}
}

func TestOffsetCodec(t *testing.T) {
	if got := string(zklayout.EncodeOffset(1234567890123)); got != "1234567890123" {
		t.Errorf("EncodeOffset: %q", got)
	}
	for in, want := range map[string]int64{"0": 0, "42": 42, " 42\n": 42, "9223372036854775807": 1<<63 - 1} {
		if got, err := zklayout.ParseOffset([]byte(in)); err != nil || got != want {
			t.Errorf("ParseOffset(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "  ", "-1", "4x", "0x10", "1e3", "9223372036854775808", "{\"offset\":1}"} {
		if got, err := zklayout.ParseOffset([]byte(in)); err == nil {
			t.Errorf("ParseOffset(%q) = %d, want an error", in, got)
		}
	}
}

// An offset beyond int64 is a decimal integer: the error says it is out of
// range and names the value, as every other refusal names what is wrong.
func TestParseOffsetOutOfRange(t *testing.T) {
	for _, in := range []string{"9223372036854775808", "99999999999999999999", "-9223372036854775809"} {
		_, err := zklayout.ParseOffset([]byte(in))
		if err == nil {
			t.Errorf("ParseOffset(%q): no error", in)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "out of range") || !strings.Contains(msg, in) || strings.Contains(msg, "not a decimal integer") {
			t.Errorf("ParseOffset(%q): %q, want it to say %q is out of range", in, msg, in)
		}
	}
}

func FuzzParseOffset(f *testing.F) {
	for _, s := range []string{"0", "42\n", "-1", "abc", "99999999999999999999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := zklayout.ParseOffset(b)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("negative offset %d from %q", v, b)
		}
		back, err := zklayout.ParseOffset(zklayout.EncodeOffset(v))
		if err != nil || back != v {
			t.Fatalf("round trip of %d: %d, %v", v, back, err)
		}
	})
}

func TestBrokerAddr(t *testing.T) {
	b := zklayout.NewBroker("10.0.0.5", 9092)
	if a, err := b.Addr(); err != nil || a != "10.0.0.5:9092" {
		t.Errorf("Addr: %q %v", a, err)
	}
	// A broker with only named listeners writes host null and port -1.
	b, err := zklayout.ParseBroker([]byte(`{"listener_security_protocol_map":{"INTERNAL":"PLAINTEXT"},` +
		`"endpoints":["INTERNAL://kafka-1.internal:9093"],"jmx_port":-1,"host":null,"timestamp":"1","port":-1,"version":5}`))
	if err != nil {
		t.Fatal(err)
	}
	if a, err := b.Addr(); err != nil || a != "kafka-1.internal:9093" {
		t.Errorf("Addr from endpoints: %q %v", a, err)
	}
	if _, err := zklayout.ParseBroker([]byte("not json")); err == nil {
		t.Errorf("ParseBroker accepted garbage")
	}
}

func TestBrokerAddrFor(t *testing.T) {
	b, err := zklayout.ParseBroker([]byte(`{"listener_security_protocol_map":{"INTERNAL":"PLAINTEXT","EXTERNAL":"SASL_SSL","SSL":"SSL"},` +
		`"endpoints":["INTERNAL://10.0.0.5:9092","EXTERNAL://kafka-1.example.com:9094","SSL://[::1]:9093"],"host":"10.0.0.5","port":9092,"version":5}`))
	if err != nil {
		t.Fatal(err)
	}
	for protocol, want := range map[string]string{
		"PLAINTEXT":      "10.0.0.5:9092",
		"SASL_SSL":       "kafka-1.example.com:9094",
		"SSL":            "[::1]:9093",
		"SASL_PLAINTEXT": "10.0.0.5:9092", // no such listener: host and port
	} {
		if a, err := b.AddrFor(protocol); err != nil || a != want {
			t.Errorf("AddrFor(%s): %q %v, want %q", protocol, a, err, want)
		}
	}
}

func TestRegisterAndDiscoverBrokers(t *testing.T) {
	srv := zktest.Start(t)
	conn := zktest.Connect(t, srv.Addr)
	const chroot = "/mq/test_cluster"
	if err := zklayout.RegisterBroker(conn, chroot, 0, "127.0.0.1", 9092); err != nil {
		t.Fatal(err)
	}
	if err := zklayout.RegisterBroker(conn, chroot, 1, "127.0.0.1", 9093); err != nil {
		t.Fatal(err)
	}
	_, stat, err := conn.Get(chroot + "/brokers/ids/0")
	if err != nil {
		t.Fatal(err)
	}
	if stat.EphemeralOwner == 0 {
		t.Errorf("broker node is not ephemeral")
	}
	addrs, err := zklayout.DiscoverBrokers(conn, chroot)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 2 || !(addrs[0] == "127.0.0.1:9092" || addrs[1] == "127.0.0.1:9092") {
		t.Errorf("discovered %v", addrs)
	}
	// A session's end removes its brokers.
	other := zktest.Connect(t, srv.Addr)
	conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ids, _, err := other.Children(chroot + "/brokers/ids")
		if err == nil && len(ids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("brokers still registered 30s after the session closed: %v %v", ids, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := zklayout.DiscoverBrokers(other, "/no/such/chroot"); err == nil {
		t.Errorf("DiscoverBrokers on a missing chroot succeeded")
	}
}

// TestCreateAllUnderReadOnlyParents: the path's upper nodes exist and
// refuse this client children (a Kafka cluster's chroot with
// zookeeper.set.acl: world may only read; its consumers/ node is open).
// CreateAll must pass over the nodes that exist and create the missing
// ones below. (Before, ZooKeeper checked the parent's ACL before the
// node's existence: the create of the existing chroot failed with "not
// authenticated", and so did every CreateAll under it.)
func TestCreateAllUnderReadOnlyParents(t *testing.T) {
	srv := zktest.Start(t)
	conn := zktest.Connect(t, srv.Addr)
	open := zk.WorldACL(zk.PermAll)
	if err := zklayout.CreateAll(conn, "/mq/c/consumers", open); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/mq", "/mq/c"} {
		if _, err := conn.SetACL(p, zk.WorldACL(zk.PermRead), -1); err != nil {
			t.Fatal(err)
		}
	}
	if err := zklayout.CreateAll(conn, "/mq/c/consumers/m/ids", open); err != nil {
		t.Fatalf("CreateAll under read-only parents: %v", err)
	}
	if ok, _, err := conn.Exists("/mq/c/consumers/m/ids"); !ok || err != nil {
		t.Errorf("/mq/c/consumers/m/ids not created: %v %v", ok, err)
	}
	// A missing node that may not be created is still an error.
	if err := zklayout.CreateAll(conn, "/mq/c/other", open); err == nil {
		t.Errorf("CreateAll of a node under a read-only parent succeeded")
	}
}

func TestOffsetsTopicCodec(t *testing.T) {
	if n, ok := zklayout.ParseOffsetsTopic(zklayout.EncodeOffsetsTopic(12)); !ok || n != 12 {
		t.Errorf("round trip of 12: %d %v", n, ok)
	}
	for _, data := range []string{"", " ", "12", "{}", `{"partitions":0}`, `{"partitions":-3}`, `{"partitions":"2"}`, "garbage"} {
		if n, ok := zklayout.ParseOffsetsTopic([]byte(data)); ok {
			t.Errorf("ParseOffsetsTopic(%q) = %d, want no count", data, n)
		}
	}
}
