package kmonitor_test

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// kmonitor reads log-end offsets from brokers that need TLS with a client
// certificate and SASL, and committed offsets that ktransfer keeps private
// in ZooKeeper (zk_auth.acl: private), with the same credentials.
func TestSecureKafkaAndPrivateOffsets(t *testing.T) {
	k, kc := kafkatest.StartSecure(t, []kafkatest.Topic{{Name: "a", Partitions: 2}}, "PLAIN")
	auth := zklayout.Auth{User: "ktransfer", Password: "zk-pass"}
	e := startOn(t, k, kc, auth)
	produceWith(t, k, kc, "a", 1, 5)

	// The offsets as ktransfer with acl: private leaves them.
	privateOffset(t, e.conn, auth, true)
	e.eventually(t, "", `{"test_cluster":{"m":{"1":3}}}`+"\n", 10*time.Second)
}

// Without the credentials, private offsets are an error on the dashboard,
// never a lag of 0.
func TestPrivateOffsetsWithoutCredentials(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 1, 5)
	auth := zklayout.Auth{User: "ktransfer", Password: "zk-pass"}
	privateOffset(t, e.conn, auth, false)
	e.eventually(t, "", `{"test_cluster":{"m":{"1":null}}}`+"\n", 10*time.Second)
	_, detail := e.get(t, "?detail=1")
	if !strings.Contains(detail, "not authenticated") {
		t.Errorf("detail does not say why: %s", detail)
	}
}

// A module ktransfer keeps private (zk_auth.acl: private gives the ACL to
// the module's folder, offsets/, the topic folder and the offset nodes)
// is, to a kmonitor without the credentials, a module whose offsets are
// unknown: it shows as one null entry "*" counted in kmonitor.errors,
// never as nothing. Once readable, its partitions show.
func TestPrivateModuleWithoutCredentialsIsAnError(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 1, 5)
	// consumers/ exists already (open), as the README advises.
	if err := zklayout.CreateAll(e.conn, zklayout.Consumers(chroot), zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	setOffset(t, e.conn, "open", "a", "1", "5")
	auth := zklayout.Auth{User: "ktransfer", Password: "zk-pass"}
	dir := privateOffset(t, e.conn, auth, true)
	e.eventually(t, "", `{"test_cluster":{"m":{"*":null},"open":{"1":0}}}`+"\n", 10*time.Second)
	e.eventually(t, "?format=zabbix", "- test_cluster.open.1.delay 0\n- test_cluster.kmonitor.errors 1\n", time.Second)
	e.eventually(t, "?format=zabbix_lld", `[{"{#CLUSTER}":"test_cluster","{#MODULE}":"open","{#TOPIC}":"a","{#PARTITION}":"1"}]`+"\n", time.Second)
	if _, detail := e.get(t, "?detail=1"); !strings.Contains(detail, "not authenticated") {
		t.Errorf("detail does not say why: %s", detail)
	}

	// The ACL opened (setAcl -R): asked again within 5 s.
	for _, p := range []string{chroot + "/consumers/m", chroot + "/consumers/m/offsets", dir, dir + "/1"} {
		if _, err := e.conn.SetACL(p, zk.WorldACL(zk.PermAll), -1); err != nil {
			t.Fatal(err)
		}
	}
	e.eventually(t, "", `{"test_cluster":{"m":{"1":3},"open":{"1":0}}}`+"\n", 20*time.Second)
}

// privateOffset writes module m's offset 2 of topic a partition 1 as
// ktransfer with acl: private leaves it: the offset node readable by auth
// only, and its folders too when folders is set (else open to all). It
// returns the offsets' folder of m and a.
func privateOffset(t *testing.T, conn *zk.Conn, auth zklayout.Auth, folders bool) string {
	t.Helper()
	if err := auth.Authenticate(conn, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	private := zk.DigestACL(zk.PermAll, auth.User, auth.Password)
	dirACL := zk.WorldACL(zk.PermAll)
	if folders {
		dirACL = private
	}
	dir := zklayout.Offsets(chroot, "m", "a")
	if err := zklayout.CreateAll(conn, dir, dirACL); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Create(dir+"/1", []byte("2"), 0, private); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A module's offsets/ that kmonitor may not list shows as "*", an error;
// once that folder is deleted (the module's offsets reset by hand, its
// folder left), there is nothing left to be unknown: the entry goes, as a
// readable module's partitions do, rather than stay an error for ever.
func TestUnreadableOffsetsFolderDeletedLeavesNoError(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 1, 5)
	auth := zklayout.Auth{User: "ktransfer", Password: "zk-pass"}
	if err := auth.Authenticate(e.conn, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	module := zklayout.Consumers(chroot) + "/m"
	if err := zklayout.CreateAll(e.conn, module+"/ids", zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	private := zk.DigestACL(zk.PermAll, auth.User, auth.Password)
	dir := zklayout.Offsets(chroot, "m", "a")
	if err := zklayout.CreateAll(e.conn, dir, private); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Create(dir+"/1", []byte("2"), 0, private); err != nil {
		t.Fatal(err)
	}
	e.eventually(t, "", `{"test_cluster":{"m":{"*":null}}}`+"\n", 10*time.Second)

	deleteAll(t, e.conn, module+"/offsets")
	e.eventually(t, "", `{"test_cluster":{}}`+"\n", 10*time.Second)
	e.eventually(t, "?format=zabbix", "- test_cluster.kmonitor.errors 0\n", time.Second)
}

// A ZooKeeper-mode broker with two listeners, an internal PLAINTEXT one and
// an external SASL_SSL one, registers host and port of the PLAINTEXT one
// and both in its endpoints. kmonitor configured for SASL over TLS finds
// the brokers through the SASL_SSL endpoints, not through host and port,
// where it would speak TLS to a plaintext listener.
func TestDiscoveredBrokersThroughTheListenerOfTheConfiguredProtocol(t *testing.T) {
	k, kc := kafkatest.StartSecure(t, []kafkatest.Topic{{Name: "a", Partitions: 2}}, "PLAIN")
	const secure = "/mq/secure_cluster"
	e := startWith(t, k, func(c *kmonitor.Config) {
		cl := c.Clusters["test_cluster"]
		cl.Chroot, cl.Kafka = secure, kc
		c.Clusters["test_cluster"] = cl
	}, io.Discard)
	// A plaintext listener that is not there: connections to it fail.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plainAddr := plain.Addr().(*net.TCPAddr)
	plain.Close()
	broker := zktest.Connect(t, e.zk.Addr)
	for id, addr := range k.ListenAddrs() {
		b := zklayout.NewBroker(plainAddr.IP.String(), plainAddr.Port)
		b.ListenerSecurityProtocolMap = map[string]string{"INTERNAL": "PLAINTEXT", "EXTERNAL": "SASL_SSL"}
		b.Endpoints = []string{"INTERNAL://" + plainAddr.String(), "EXTERNAL://" + addr}
		data, _ := json.Marshal(b)
		dir := zklayout.BrokerIDs(secure)
		if err := zklayout.CreateAll(broker, dir, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		if _, err := broker.Create(dir+"/"+strconv.Itoa(id), data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	produceWith(t, k, kc, "a", 1, 5)
	dir := zklayout.Offsets(secure, "m", "a")
	if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Create(dir+"/1", []byte("2"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	e.eventually(t, "", `{"test_cluster":{"m":{"1":3}}}`+"\n", 10*time.Second)
}

// A ZooKeeper-mode broker may have several listeners of the protocol
// kmonitor speaks (INTERNAL and EXTERNAL, both PLAINTEXT), of which this
// host can reach only one. Every such endpoint is a seed: the log ends are
// read through the one that answers, not never read because the first
// listed is out of reach.
func TestDiscoveredBrokersThroughAnyListenerOfTheProtocol(t *testing.T) {
	k := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: "a", Partitions: 2}})
	const other = "/mq/two_listeners"
	e := startWith(t, k, func(c *kmonitor.Config) {
		cl := c.Clusters["test_cluster"]
		cl.Chroot = other
		c.Clusters["test_cluster"] = cl
	}, io.Discard)
	// An internal listener this host cannot reach: connections to it fail.
	internal, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	internalAddr := internal.Addr().(*net.TCPAddr)
	internal.Close()
	broker := zktest.Connect(t, e.zk.Addr)
	dir := zklayout.BrokerIDs(other)
	if err := zklayout.CreateAll(broker, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	for id, addr := range k.ListenAddrs() {
		b := zklayout.NewBroker(internalAddr.IP.String(), internalAddr.Port)
		b.ListenerSecurityProtocolMap = map[string]string{"INTERNAL": "PLAINTEXT", "EXTERNAL": "PLAINTEXT"}
		b.Endpoints = []string{"INTERNAL://" + internalAddr.String(), "EXTERNAL://" + addr}
		data, _ := json.Marshal(b)
		if _, err := broker.Create(dir+"/"+strconv.Itoa(id), data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	produce(t, k, "a", 1, 5)
	offsets := zklayout.Offsets(other, "m", "a")
	if err := zklayout.CreateAll(e.conn, offsets, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Create(offsets+"/1", []byte("2"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	e.eventually(t, "", `{"test_cluster":{"m":{"1":3}}}`+"\n", 10*time.Second)
}

// Offsets kmonitor may not read (private, no zk_auth) are asked again
// every 5 s, for an ACL that changes; the warning that says so is logged
// when it starts, not again at every retry of every znode and folder for
// as long as it lasts.
func TestUnreadableOffsetsWarnedOnce(t *testing.T) {
	var log logBuffer
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 3}})
	e := startWith(t, k, nil, &log)
	auth := zklayout.Auth{User: "ktransfer", Password: "zk-pass"}
	if err := auth.Authenticate(e.conn, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	private := zk.DigestACL(zk.PermAll, auth.User, auth.Password)
	// Module m: open folders, private offset nodes.
	dir := zklayout.Offsets(chroot, "m", "a")
	if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"0", "1", "2"} {
		if _, err := e.conn.Create(dir+"/"+p, []byte("0"), 0, private); err != nil {
			t.Fatal(err)
		}
	}
	// Module p: a private offsets folder.
	if err := zklayout.CreateAll(e.conn, zklayout.Consumers(chroot)+"/p", zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if err := zklayout.CreateAll(e.conn, zklayout.Offsets(chroot, "p", "a"), private); err != nil {
		t.Fatal(err)
	}
	e.eventually(t, "", `{"test_cluster":{"m":{"0":null,"1":null,"2":null},"p":{"*":null}}}`+"\n", 10*time.Second)
	if !waitFor(5*time.Second, func() bool {
		return log.count("offset znode unreadable: set zk_auth") >= 3 && log.count("znode unreadable: set zk_auth") >= 1
	}) {
		t.Fatalf("unreadable offsets not logged: %d znodes, %d folders",
			log.count("offset znode unreadable: set zk_auth"), log.count("znode unreadable: set zk_auth"))
	}
	// Past one retry (5 s): still once each.
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if n, f := log.count("offset znode unreadable: set zk_auth"), log.count("znode unreadable: set zk_auth"); n > 3 || f > 1 {
			t.Fatalf("warned %d times for 3 unreadable offset znodes and %d times for 1 unreadable folder", n, f)
		}
	}
}

// TestZKAuthUserWithColonRefused: ZooKeeper's digest scheme reads
// "user:password" up to the first colon, so a zk_auth.user holding one
// authenticated kmonitor as another user than the one named (and its
// password as the rest). It is refused at start, naming the field.
func TestZKAuthUserWithColonRefused(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	os.WriteFile(f, []byte("base:\n clusters: [c1]\nc1:\n chroot: /mq/c1\n zk_hosts: [127.0.0.1:2181]\n zk_auth: {user: \"kmonitor:eu\", password: p}\n"), 0o644)
	if _, err := kmonitor.LoadConfig(f); err == nil || !strings.Contains(err.Error(), f+`: c1.zk_auth.user: must not contain ':'`) {
		t.Errorf("%v\nlacks the c1.zk_auth.user problem", err)
	}
}
