package ktransfer_test

import (
	"encoding/json"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestDiscoveredBrokersThroughTheListenerOfTheConfiguredProtocol: without
// broker_hosts, ktransfer finds the brokers under <zk_chroot>/brokers/ids.
// A broker with an internal PLAINTEXT listener and an external SASL_SSL
// one registers host and port of the PLAINTEXT one; ktransfer speaking
// SASL over TLS must take the SASL_SSL endpoint. One registration that
// does not parse (written by another tool, a broker of a newer format)
// must not keep ktransfer from the others. Before, ktransfer dialled the
// plaintext address, which nothing answers here, and one bad
// registration failed the start ("discover brokers").
func TestDiscoveredBrokersThroughTheListenerOfTheConfiguredProtocol(t *testing.T) {
	k, kc := kafkatest.StartSecure(t, []kafkatest.Topic{{Name: "t", Partitions: 2}}, "PLAIN")
	z := zktest.Start(t)
	e := &env{kafka: k, zkAdr: z.Addr, conn: envConn(t, z.Addr), kc: kc}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plainAddr := plain.Addr().(*net.TCPAddr)
	plain.Close() // a plaintext listener that is not there
	dir := zklayout.BrokerIDs(chroot)
	if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	for id, addr := range k.ListenAddrs() {
		b := zklayout.NewBroker(plainAddr.IP.String(), plainAddr.Port)
		b.ListenerSecurityProtocolMap = map[string]string{"INTERNAL": "PLAINTEXT", "EXTERNAL": "SASL_SSL"}
		b.Endpoints = []string{"INTERNAL://" + plainAddr.String(), "EXTERNAL://" + addr}
		data, _ := json.Marshal(b)
		if _, err := e.conn.Create(dir+"/"+strconv.Itoa(id), data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.conn.Create(dir+"/99", []byte("not json"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	e.produce(t, "t", [][2]string{{"a", "1"}, {"b", "2"}, {"c", "3"}})
	b := newBackend(t, nil)
	cfg := e.config(t, 0, module("m", "t", b.URL))
	cfg.BrokerHosts = nil
	tr, err := ktransfer.New(cfg, testLog(t))
	if err != nil {
		t.Fatalf("New with brokers discovered in ZooKeeper: %v", err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "3 pushes", 15*time.Second, func() bool { return len(b.got()) == 3 })
}
