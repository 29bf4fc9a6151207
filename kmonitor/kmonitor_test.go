package kmonitor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zkserver"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

const chroot = "/mq/test_cluster"

// produce writes n records to topic/partition.
func produce(t *testing.T, c *kfake.Cluster, topic string, partition int32, n int) {
	t.Helper()
	produceWith(t, c, kafkaconf.Default(), topic, partition, n)
}

// produceWith is produce through a client configured by kc.
func produceWith(t *testing.T, c *kfake.Cluster, kc kafkaconf.Config, topic string, partition int32, n int) {
	t.Helper()
	cl := kafkatest.Client(t, c, kc, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Partition: partition, Value: []byte("x")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records to %s/%d: %v", n, topic, partition, err)
	}
}

// setOffset writes an offset znode as ktransfer would (or garbage).
func setOffset(t *testing.T, conn *zk.Conn, module, topic, partition, data string) {
	t.Helper()
	dir := zklayout.Offsets(chroot, module, topic)
	if err := zklayout.CreateAll(conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	p := dir + "/" + partition
	if _, err := conn.Set(p, []byte(data), -1); err == zk.ErrNoNode {
		_, err = conn.Create(p, []byte(data), 0, zk.WorldACL(zk.PermAll))
		if err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
}

// setPartitionCount records on offsets/<topic> of module the topic's
// partition count, as a ktransfer process does when it starts the topic.
func setPartitionCount(t *testing.T, conn *zk.Conn, module, topic string, n int32) {
	t.Helper()
	dir := zklayout.Offsets(chroot, module, topic)
	if err := zklayout.CreateAll(conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Set(dir, zklayout.EncodeOffsetsTopic(n), -1); err != nil {
		t.Fatal(err)
	}
}

func deleteAll(t *testing.T, conn *zk.Conn, p string) {
	t.Helper()
	children, _, err := conn.Children(p)
	if err == zk.ErrNoNode {
		return
	}
	for _, c := range children {
		deleteAll(t, conn, p+"/"+c)
	}
	if err := conn.Delete(p, -1); err != nil && err != zk.ErrNoNode {
		t.Fatal(err)
	}
}

type env struct {
	kafka *kfake.Cluster
	zk    *zkserver.Server
	conn  *zk.Conn
	mon   *kmonitor.Monitor
	url   string
}

// registerBrokers registers every broker of k under <chroot>/brokers/ids
// as ZooKeeper-mode brokers do.
func registerBrokers(t *testing.T, conn *zk.Conn, k *kfake.Cluster) {
	t.Helper()
	for id, addr := range k.ListenAddrs() {
		host, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		if err := zklayout.RegisterBroker(conn, chroot, int32(id), host, p); err != nil {
			t.Fatal(err)
		}
	}
}

// start runs kfake (topic a:8, b:2), ZooKeeper with the broker registered
// only there, and a kmonitor polling every 100 ms.
func start(t *testing.T) *env {
	t.Helper()
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 8}, {Name: "b", Partitions: 2}})
	return startOn(t, k, kafkaconf.Default(), zklayout.Auth{})
}

// startOn is start with the cluster and the connection settings given.
func startOn(t *testing.T, k *kfake.Cluster, kc kafkaconf.Config, auth zklayout.Auth) *env {
	t.Helper()
	return startWith(t, k, func(c *kmonitor.Config) {
		cl := c.Clusters["test_cluster"]
		cl.Kafka, cl.ZKAuth = kc, auth
		c.Clusters["test_cluster"] = cl
	}, io.Discard)
}

// startWith is start on cluster k with the configuration changed by
// mutate, kmonitor's log written to log.
func startWith(t *testing.T, k *kfake.Cluster, mutate func(*kmonitor.Config), log io.Writer) *env {
	t.Helper()
	return startOnZK(t, k, zktest.Start(t), mutate, log)
}

// startOnZK is startWith on the ZooKeeper server z.
func startOnZK(t *testing.T, k *kfake.Cluster, z *zkserver.Server, mutate func(*kmonitor.Config), log io.Writer) *env {
	t.Helper()
	// Sessions that outlast a stall of a loaded machine: the brokers'
	// registrations must not go with an expired session of the test's.
	conn := zktest.ConnectSession(t, z.Addr, 10*time.Second)
	broker := zktest.ConnectSession(t, z.Addr, 10*time.Second) // a session of its own, like a broker's
	registerBrokers(t, broker, k)
	cfg := kmonitor.DefaultConfig()
	cfg.Base.Clusters = []string{"test_cluster"}
	cfg.Base.PollIntervalMs = 100
	cfg.HTTPServer.Port = 0
	cfg.HTTPServer.ListenHost = "127.0.0.1"
	// Long enough that a stall of a loaded machine does not cut an answer.
	cfg.HTTPServer.WriteTimeoutMs = 10000
	cfg.HTTPServer.ReadTimeoutMs = 10000
	cfg.Clusters = map[string]kmonitor.ClusterConfig{"test_cluster": {
		Chroot: chroot, ZKHosts: []string{z.Addr}, ZKConnectTimeoutMs: 1000, ZKSessionTimeoutMs: 4000,
		Kafka: kafkaconf.Default(),
	}}
	if mutate != nil {
		mutate(&cfg)
	}
	m, err := kmonitor.New(cfg, slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return &env{kafka: k, zk: z, conn: conn, mon: m, url: "http://" + m.Addr().String()}
}

// logBuffer collects a log for a test to wait on.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String is what was logged so far.
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// count says how many times msg was logged.
func (l *logBuffer) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), "msg=\""+msg+"\"")
}

func (e *env) get(t *testing.T, query string) (int, string) {
	t.Helper()
	resp, err := http.Get(e.url + "/delay" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls /delay<query> until it answers want, for up to limit.
func (e *env) eventually(t *testing.T, query, want string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var got string
	for time.Since(start) < limit {
		var code int
		code, got = e.get(t, query)
		if code == 200 && got == want {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("/delay%s after %v:\n got  %q\n want %q", query, limit, got, want)
	return 0
}

// eventuallyContains polls /delay<query> until its answer holds every one
// of want, for up to limit.
func (e *env) eventuallyContains(t *testing.T, query string, limit time.Duration, want ...string) {
	t.Helper()
	var got string
	for start := time.Now(); time.Since(start) < limit; time.Sleep(20 * time.Millisecond) {
		_, got = e.get(t, query)
		missing := false
		for _, w := range want {
			if !strings.Contains(got, w) {
				missing = true
				break
			}
		}
		if !missing {
			return
		}
	}
	t.Fatalf("/delay%s after %v:\n got %s\n want all of %q", query, limit, got, want)
}

func TestDelayFromHandMadeOffsets(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 10)
	produce(t, e.kafka, "a", 5, 4)
	produce(t, e.kafka, "b", 1, 6)
	setOffset(t, e.conn, "m1", "a", "0", "7")  // lag 3
	setOffset(t, e.conn, "m1", "a", "5", "4")  // caught up; partitions 1-4 absent: sparse
	setOffset(t, e.conn, "m2", "a", "0", "12") // above the log end: unknown, not lag 0
	setOffset(t, e.conn, "m2", "b", "1", "1")  // m2 has two topics: keys name them
	setOffset(t, e.conn, "m3", "a", "0", "oops")

	e.eventually(t, "", `{"test_cluster":{"m1":{"0":3,"5":0},"m2":{"a.0":null,"b.1":5},"m3":{"0":null}}}`+"\n", 10*time.Second)
	e.eventually(t, "?format=zabbix", "- test_cluster.m1.0.delay 3\n- test_cluster.m1.5.delay 0\n"+
		"- test_cluster.m2.b.1.delay 5\n- test_cluster.kmonitor.errors 2\n", time.Second)
	e.eventually(t, "?cluster=test_cluster&format=zabbix&keys=item", "- kmonitor.delay[test_cluster,m1,a,0] 3\n"+
		"- kmonitor.delay[test_cluster,m1,a,5] 0\n"+
		"- kmonitor.delay[test_cluster,m2,b,1] 5\n- kmonitor.errors[test_cluster] 2\n", time.Second)

	_, detail := e.get(t, "?detail=1")
	if !strings.Contains(detail, `"m3":{"0":{"topic":"a","partition":"0","lag":null,"committed":null,"log_end":10,"lag_seconds":null,"lag_seconds_at_least":false,"error":"bad offset znode`) {
		t.Errorf("detail for a bad znode: %s", detail)
	}
	_, lld := e.get(t, "?format=zabbix_lld")
	if !strings.HasPrefix(lld, `[{"{#CLUSTER}":"test_cluster","{#MODULE}":"m1","{#TOPIC}":"a","{#PARTITION}":"0"}`) {
		t.Errorf("lld: %s", lld)
	}
	_, prom := e.get(t, "?format=prometheus")
	for _, want := range []string{
		`kmonitor_lag_messages{cluster="test_cluster",module="m2",partition="1",topic="b"} 5`,
		`kmonitor_lag_known{cluster="test_cluster",module="m3",partition="0",topic="a"} 0`,
		`kmonitor_zookeeper_up{cluster="test_cluster"} 1`,
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("prometheus output lacks %s", want)
		}
	}

	// Changes: an offset moves, records arrive, a module appears, one goes.
	setOffset(t, e.conn, "m1", "a", "0", "10")
	produce(t, e.kafka, "a", 5, 2)
	setOffset(t, e.conn, "m4", "b", "0", "0")
	deleteAll(t, e.conn, chroot+"/consumers/m3")
	e.eventually(t, "", `{"test_cluster":{"m1":{"0":0,"5":2},"m2":{"a.0":null,"b.1":5},"m4":{"0":0}}}`+"\n", 5*time.Second)
	// The bad znode repaired.
	setOffset(t, e.conn, "m2", "b", "1", "6")
	e.eventually(t, "?cluster=test_cluster", `{"test_cluster":{"m1":{"0":0,"5":2},"m2":{"a.0":null,"b.1":0},"m4":{"0":0}}}`+"\n", 5*time.Second)
}

func TestOffsetChangeShowsWithinASecond(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 3, 100)
	setOffset(t, e.conn, "m", "a", "3", "0")
	e.eventually(t, "", `{"test_cluster":{"m":{"3":100}}}`+"\n", 10*time.Second)
	// A stall of a loaded machine can delay a few changes past a second:
	// the typical change (the median) must show within one, and none may
	// take 5 s (a change seen only by some slower path than the watch).
	var took []time.Duration
	for i := 1; i <= 20; i++ {
		setOffset(t, e.conn, "m", "a", "3", strconv.Itoa(i*5))
		took = append(took, e.eventually(t, "", fmt.Sprintf(`{"test_cluster":{"m":{"3":%d}}}`+"\n", 100-i*5), 10*time.Second))
	}
	slices.Sort(took)
	if median, worst := took[len(took)/2], took[len(took)-1]; median > time.Second || worst > 5*time.Second {
		t.Errorf("changes took %v to show (median %v, slowest %v)", took, median, worst)
	}
}

func TestBadRequests(t *testing.T) {
	e := start(t)
	for q, want := range map[string]string{
		"?cluster=nope":                           "unknown cluster",
		"?format=xml":                             "unknown format",
		"?format=zabbix&keys=weird":               "unknown keys",
		"?format=prometheus&cluster=test_cluster": "leave out cluster",
	} {
		code, body := e.get(t, q)
		if code != 400 || !strings.Contains(body, want) || strings.Count(body, "\n") != 1 {
			t.Errorf("%s: %d %q, want 400 saying %q", q, code, body, want)
		}
	}
	resp, err := http.Post(e.url+"/delay", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST /delay: %d", resp.StatusCode)
	}
	// HEAD answers as GET: the 405 lists it among the methods allowed.
	if allow := resp.Header.Get("Allow"); allow != "GET, HEAD" {
		t.Errorf("POST /delay: Allow %q, want %q", allow, "GET, HEAD")
	}
}

// stopZK stops e's ZooKeeper server; restart starts it again on the same
// port and data, stopped at cleanup.
func stopZK(e *env) (restart func(t *testing.T) *zkserver.Server) {
	_, port, _ := net.SplitHostPort(e.zk.Addr)
	p, _ := strconv.Atoi(port)
	dir := e.zk.Dir
	e.zk.Stop()
	return func(t *testing.T) *zkserver.Server {
		t.Helper()
		restarted, err := zkserver.Start(zkserver.Config{Dir: dir, Port: p, MaxSessionMs: zktest.MaxSessionMs})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { restarted.Stop() })
		return restarted
	}
}

// shortZKSession gives test_cluster a ZooKeeper session of 2 s.
func shortZKSession(c *kmonitor.Config) {
	cl := c.Clusters["test_cluster"]
	cl.ZKSessionTimeoutMs = 2000
	c.Clusters["test_cluster"] = cl
}

// waitClientReplaced waits up to limit for log to say the ZooKeeper
// client without a session is being replaced.
func waitClientReplaced(t *testing.T, log *logBuffer, limit time.Duration) {
	t.Helper()
	if !waitFor(limit, func() bool { return log.count("no zookeeper session; replacing the client") > 0 }) {
		t.Fatal("the ZooKeeper client was not replaced")
	}
	// The first word of a ZooKeeper nothing answers: it names the
	// addresses, so that a mistyped zk_hosts is seen.
	for _, line := range strings.Split(log.String(), "\n") {
		if strings.Contains(line, "replacing the client") && !strings.Contains(line, "zk_hosts=[127.0.0.1:") {
			t.Errorf("the client's replacement logged without zk_hosts: %s", line)
		}
	}
}

// TestZooKeeperRestart restarts the ZooKeeper server under kmonitor: it
// reconnects, re-arms its watches, and follows changes made afterwards.
func TestZooKeeperRestart(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 1, 5)
	setOffset(t, e.conn, "m", "a", "1", "1")
	e.eventually(t, "", `{"test_cluster":{"m":{"1":4}}}`+"\n", 10*time.Second)

	restartZK := stopZK(e)
	code, _ := e.get(t, "")
	if code != 200 {
		t.Errorf("/delay during the outage: %d", code)
	}
	restarted := restartZK(t)
	conn := zktest.Connect(t, restarted.Addr)
	setOffset(t, conn, "m", "a", "1", "3")
	setOffset(t, conn, "late", "a", "1", "0")
	e.eventually(t, "", `{"test_cluster":{"late":{"1":5},"m":{"1":2}}}`+"\n", 20*time.Second)
}

// TestBrokerOutageIsNotHealthy: with the broker gone, lags become unknown
// (null, counted as errors), never a stale number.
func TestBrokerOutageIsNotHealthy(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "b", 0, 3)
	setOffset(t, e.conn, "m", "b", "0", "0")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":3}}}`+"\n", 10*time.Second)
	e.kafka.Close()
	e.eventually(t, "?format=zabbix", "- test_cluster.kmonitor.errors 1\n", 20*time.Second)
	e.eventually(t, "", `{"test_cluster":{"m":{"0":null}}}`+"\n", time.Second)
}

// TestChrootDotSegmentRefused: a chroot with a ".." segment passed
// -check, and path.Join made /mq/../.. the root: the offsets of another
// cluster's (or no cluster's) modules shown as this one's.
func TestChrootDotSegmentRefused(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	os.WriteFile(f, []byte("base:\n clusters: [c1]\nc1:\n chroot: /mq/../..\n zk_hosts: [127.0.0.1:2181]\n"), 0o644)
	_, err := kmonitor.LoadConfig(f)
	want := `c1.chroot: must not hold a . or .. segment (ZooKeeper paths are taken as written elsewhere; here it named another node), got "/mq/../.."`
	if err == nil || !strings.Contains(err.Error(), f+":") || !strings.Contains(err.Error(), want) {
		t.Errorf("%v\nlacks %q", err, want)
	}
}

func TestConfigErrors(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	doc := "base:\n clusters: [c1, c2]\n log_levle: 4\nhttp_server:\n port: 70000\n" +
		"c1:\n chroot: mq/c1\n zk_hosts: [bad, \":22181\", \"10.1.1.1 :2181\"]\n broker_hosts: [\":9092\", \"10.1.1.1 :9092\"]\n zk_session_timeout_ms: 10\n" +
		" zk_auth: {user: u, password: p, acl: private}\n kafka: {sasl: {mechanism: GSSAPI, user: u, password: p}}\n" +
		"c3:\n chroot: /mq/c3\n zk_hosts: [h:1]\n"
	os.WriteFile(f, []byte(doc), 0o644)
	_, err := kmonitor.LoadConfig(f)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		f + ":3: base.log_levle: unknown key",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	os.WriteFile(f, []byte(strings.Replace(doc, " log_levle: 4\n", "", 1)), 0o644)
	_, err = kmonitor.LoadConfig(f)
	for _, want := range []string{
		"http_server.port: must be 0..65535, got 70000",
		`base.clusters[1]: has no section of that name, got "c2"`,
		`c1.chroot: must be an absolute ZooKeeper path like /mq/c1, got "mq/c1"`,
		`c1.zk_hosts[0]: must be host:port, got "bad"`,
		// No host, a space in it: accepted, then "lookup : no such
		// host" at run time, in a line naming neither file nor key.
		// (Kafka's client dials ":9092" on this machine: kept.)
		`c1.zk_hosts[1]: must be host:port, got ":22181"`,
		`c1.zk_hosts[2]: must be host:port, got "10.1.1.1 :2181"`,
		`c1.broker_hosts[1]: must be host:port, got "10.1.1.1 :9092"`,
		"c1.zk_session_timeout_ms: must be 1000..2147483647, got 10",
		"c3: section of a cluster not listed in base.clusters",
		`c1.zk_auth.acl: this binary creates no nodes; remove acl, got "private"`,
		`c1.kafka.sasl.mechanism: must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got "GSSAPI"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "broker_hosts[0]") {
		t.Errorf("broker_hosts \":9092\" (this machine, to Kafka's client) refused: %v", err)
	}
}

// A value written in a cluster section is never replaced by its default:
// an explicit 0 where 0 is invalid stops the start (and -check) naming the
// file, the field and the value. Keys left out, or written with no value,
// still take their defaults.
func TestConfigExplicitZeroIsAnError(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	doc := "base:\n clusters: [test_cluster]\ntest_cluster:\n chroot: /mq/test_cluster\n zk_hosts: [127.0.0.1:2181]\n" +
		" zk_connect_timeout_ms: 0\n zk_session_timeout_ms: 0\n kafka:\n  dial_timeout_ms: 0\n  metadata_refresh_ms: 0\n"
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := kmonitor.LoadConfig(f)
	for _, want := range []string{
		f + ": test_cluster.zk_connect_timeout_ms: must be 1..2147483647, got 0",
		f + ": test_cluster.zk_session_timeout_ms: must be 1000..2147483647, got 0",
		f + ": test_cluster.kafka.dial_timeout_ms: must be 1..2147483647, got 0",
		f + ": test_cluster.kafka.metadata_refresh_ms: must be 1000..3600000 (1 s to 1 h), got 0",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("explicit zeros: %v\nlacks %q", err, want)
		}
	}

	doc = "base:\n clusters: [test_cluster]\ntest_cluster:\n chroot: /mq/test_cluster\n zk_hosts: [127.0.0.1:2181]\n" +
		" zk_session_timeout_ms:\n kafka:\n  metadata_refresh_ms:\n"
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := kmonitor.LoadConfig(f)
	if err != nil {
		t.Fatalf("keys left out or empty: %v", err)
	}
	got := cfg.Clusters["test_cluster"]
	if got.ZKConnectTimeoutMs != 1000 || got.ZKSessionTimeoutMs != 6000 || got.Kafka.DialTimeoutMs != 3000 || got.Kafka.MetadataRefreshMs != 60000 {
		t.Errorf("defaults not applied: zk_connect_timeout_ms=%d zk_session_timeout_ms=%d kafka.dial_timeout_ms=%d kafka.metadata_refresh_ms=%d",
			got.ZKConnectTimeoutMs, got.ZKSessionTimeoutMs, got.Kafka.DialTimeoutMs, got.Kafka.MetadataRefreshMs)
	}
}

// ZooKeeper stays away past the moment kmonitor replaces its client (two
// session timeouts without a session): the partitions it followed still
// show, unknown and counted in kmonitor.errors, rather than vanish as if
// the cluster had no modules; once ZooKeeper is back they are followed
// again.
func TestZooKeeperGoneLongKeepsPartitionsAsErrors(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 4}})
	var log logBuffer
	e := startWith(t, k, nil, &log)
	produce(t, e.kafka, "a", 2, 4)
	setOffset(t, e.conn, "m", "a", "2", "1")
	e.eventually(t, "", `{"test_cluster":{"m":{"2":3}}}`+"\n", 10*time.Second)

	restartZK := stopZK(e)
	e.eventually(t, "", `{"test_cluster":{"m":{"2":null}}}`+"\n", 10*time.Second)
	// The session is 4 s: the client is replaced 8 s after it was lost.
	waitClientReplaced(t, &log, 20*time.Second)
	// The old client's watchers end within moments of the replacement.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		_, j := e.get(t, "")
		_, z := e.get(t, "?format=zabbix")
		if j != `{"test_cluster":{"m":{"2":null}}}`+"\n" || z != "- test_cluster.kmonitor.errors 1\n" {
			t.Fatalf("ZooKeeper away past the client's replacement: json %q, zabbix %q; want the partition shown unknown and counted", j, z)
		}
	}

	restartZK(t)
	e.eventually(t, "", `{"test_cluster":{"m":{"2":3}}}`+"\n", 20*time.Second)
	e.eventually(t, "?format=zabbix", "- test_cluster.m.2.delay 3\n- test_cluster.kmonitor.errors 0\n", 5*time.Second)
}

// kmonitor starts while the cluster's ZooKeeper cannot be reached: nothing
// is known, and once a session timeout has passed the zabbix answer must
// not read as a healthy cluster with no errors.
func TestZooKeeperNeverReachedCountsAsError(t *testing.T) {
	e := startZKUnreachable(t, 0)
	e.eventually(t, "?format=zabbix", "- test_cluster.kmonitor.errors 1\n", 10*time.Second)
	e.eventually(t, "?format=zabbix&keys=item", "- kmonitor.errors[test_cluster] 1\n", time.Second)
}

// TestZooKeeperSessionExpiry replaces the ZooKeeper server with an empty one
// on the same port: kmonitor's session is unknown there (expired), so it
// must open a new session and follow the new tree from scratch. While
// ZooKeeper is gone for longer than a session, lags are unknown, not stale.
func TestZooKeeperSessionExpiry(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 2, 4)
	setOffset(t, e.conn, "m", "a", "2", "1")
	e.eventually(t, "", `{"test_cluster":{"m":{"2":3}}}`+"\n", 10*time.Second)

	_, port, _ := net.SplitHostPort(e.zk.Addr)
	p, _ := strconv.Atoi(port)
	e.zk.Stop()
	// Session timeout is 4 s: past it, the offsets kmonitor holds are stale.
	e.eventually(t, "", `{"test_cluster":{"m":{"2":null}}}`+"\n", 10*time.Second)

	fresh, err := zkserver.Start(zkserver.Config{Dir: t.TempDir(), Port: p, MaxSessionMs: zktest.MaxSessionMs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fresh.Stop() })
	conn := zktest.Connect(t, fresh.Addr)
	registerBrokers(t, conn, e.kafka)
	setOffset(t, conn, "n", "a", "2", "2")
	e.eventually(t, "", `{"test_cluster":{"n":{"2":2}}}`+"\n", 20*time.Second)
}

// TestUnknownTopicAndPartition: offsets of a topic the brokers do not have,
// or of a partition beyond the topic's count, are unknown lags whose detail
// says why; the other partitions' lags are unaffected.
func TestUnknownTopicAndPartition(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 2, 6)
	setOffset(t, e.conn, "m", "a", "2", "1")
	setOffset(t, e.conn, "m", "a", "9", "0")         // a has 8 partitions
	setOffset(t, e.conn, "gone", "nosuch", "0", "3") // no such topic
	e.eventually(t, "", `{"test_cluster":{"gone":{"0":null},"m":{"2":5,"9":null}}}`+"\n", 10*time.Second)
	e.eventuallyContains(t, "?detail=1", 10*time.Second,
		`"gone":{"0":{"topic":"nosuch","partition":"0","lag":null,"committed":3,"log_end":null,"lag_seconds":null,"lag_seconds_at_least":false,"error":"log-end offset unknown: log end of nosuch/0: topic nosuch: UNKNOWN_TOPIC_OR_PARTITION`,
		`"9":{"topic":"a","partition":"9","lag":null,"committed":0,"log_end":null,"lag_seconds":null,"lag_seconds_at_least":false,"error":"log-end offset unknown: log end of a/9: topic a has no partition 9: UNKNOWN_TOPIC_OR_PARTITION`)
	// The topic appears: its lag becomes known.
	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, kafkaconf.Default()))
	if _, err := adm.CreateTopic(context.Background(), 1, 1, nil, "nosuch"); err != nil {
		t.Fatal(err)
	}
	produce(t, e.kafka, "nosuch", 0, 4)
	e.eventually(t, "", `{"test_cluster":{"gone":{"0":1},"m":{"2":5,"9":null}}}`+"\n", 10*time.Second)
}

// Only a partition's canonical decimal name is its offset znode: "07" and
// "+7" beside "7" are malformed znodes, reported as unknown lags, not read
// as partition 7 (which would show it three times, two of them wrong).
func TestNonCanonicalPartitionNameIsNotThePartition(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 7, 8)
	setOffset(t, e.conn, "m", "a", "7", "2")
	setOffset(t, e.conn, "m", "a", "07", "5")
	setOffset(t, e.conn, "m", "a", "+7", "1")
	e.eventually(t, "", `{"test_cluster":{"m":{"+7":null,"07":null,"7":6}}}`+"\n", 10*time.Second)
	e.eventually(t, "?format=zabbix", "- test_cluster.m.7.delay 6\n- test_cluster.kmonitor.errors 2\n", time.Second)
	e.eventuallyContains(t, "?detail=1", time.Second,
		`"07":{"topic":"a","partition":"07","lag":null,"committed":5,"log_end":null,`,
		`"error":"offset znode name \"07\" is not a partition number"`)
}

// history_minutes is not a key in ms: a month of history (43200 minutes),
// which a file could hold before the keys in ms were bounded, fits a
// time.Duration and still loads; only a value past a time.Duration is
// refused.
func TestConfigLongHistoryLoads(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	for _, minutes := range []int{43200, 525600} {
		doc := fmt.Sprintf("base:\n clusters: [test_cluster]\n history_minutes: %d\ntest_cluster:\n chroot: /mq/test_cluster\n zk_hosts: [127.0.0.1:2181]\n", minutes)
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := kmonitor.LoadConfig(f)
		if err != nil || cfg.Base.HistoryMinutes != minutes {
			t.Errorf("history_minutes: %d: %v, got %d", minutes, err, cfg.Base.HistoryMinutes)
		}
	}
	doc := "base:\n clusters: [test_cluster]\n history_minutes: 153722868\ntest_cluster:\n chroot: /mq/test_cluster\n zk_hosts: [127.0.0.1:2181]\n"
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	want := f + ": base.history_minutes: must be 1..153722867 (a time.Duration), got 153722868"
	if _, err := kmonitor.LoadConfig(f); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("history_minutes past a time.Duration: %v\nlacks %q", err, want)
	}
}

// detail=1 belongs to the JSON form: asked with another format, or with a
// value that is neither on nor off, the answer is a 400 saying why, never
// detail JSON where zabbix_sender or a discovery rule expects its own
// format.
func TestDetailOutsideJSONIsABadRequest(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 3)
	setOffset(t, e.conn, "m", "a", "0", "1")
	e.eventually(t, "?format=zabbix", "- test_cluster.m.0.delay 2\n- test_cluster.kmonitor.errors 0\n", 10*time.Second)
	for q, want := range map[string]string{
		"?format=zabbix&detail=1":     "detail",
		"?format=zabbix_lld&detail=1": "detail",
		"?detail=yes":                 "detail",
	} {
		code, body := e.get(t, q)
		if code != 400 || !strings.Contains(body, want) || strings.Count(body, "\n") != 1 {
			t.Errorf("%s: %d %q, want 400 saying %q", q, code, body, want)
		}
	}
	for q, want := range map[string]string{
		"?detail=0":     `{"test_cluster":{"m":{"0":2}}}` + "\n",
		"?detail=false": `{"test_cluster":{"m":{"0":2}}}` + "\n",
	} {
		if code, body := e.get(t, q); code != 200 || body != want {
			t.Errorf("%s: %d %q, want 200 %q", q, code, body, want)
		}
	}
	if code, body := e.get(t, "?detail=1&format=json"); code != 200 || !strings.Contains(body, `"log_end":3`) {
		t.Errorf("?detail=1&format=json: %d %q", code, body)
	}
}

// keys names the zabbix form's keys: asked with another format, the answer
// is a 400 saying why, as detail outside JSON and cluster with prometheus
// are, never an answer that silently ignores it (JSON or discovery data
// where item keys were asked for).
func TestKeysOutsideZabbixIsABadRequest(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 3)
	setOffset(t, e.conn, "m", "a", "0", "1")
	e.eventually(t, "?format=zabbix&keys=item", "- kmonitor.delay[test_cluster,m,a,0] 2\n- kmonitor.errors[test_cluster] 0\n", 10*time.Second)
	for _, q := range []string{"?keys=item", "?format=json&keys=item", "?format=zabbix_lld&keys=item",
		"?format=prometheus&keys=dotted", "?detail=1&keys=item"} {
		code, body := e.get(t, q)
		if code != 400 || !strings.Contains(body, "keys applies to format=zabbix only") || strings.Count(body, "\n") != 1 {
			t.Errorf("%s: %d %.80q, want 400 saying keys applies to format=zabbix only", q, code, body)
		}
	}
	if code, body := e.get(t, "?format=zabbix&keys=dotted"); code != 200 || body != "- test_cluster.m.0.delay 2\n- test_cluster.kmonitor.errors 0\n" {
		t.Errorf("?format=zabbix&keys=dotted: %d %q", code, body)
	}
}

// Every ?detail=1 entry carries every field README lists, known or not
// (null when unknown, lag_seconds_at_least false then): a client reading
// "error" or "lag_seconds" of an entry finds the field, whatever the state
// of the partition.
func TestDetailListsEveryField(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 3)
	setOffset(t, e.conn, "m", "a", "0", "1")    // known: lag 2
	setOffset(t, e.conn, "m", "a", "1", "oops") // unknown: bad znode
	e.eventually(t, "", `{"test_cluster":{"m":{"0":2,"1":null}}}`+"\n", 10*time.Second)
	_, body := e.get(t, "?detail=1")
	var v map[string]map[string]map[string]map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	fields := []string{"topic", "partition", "lag", "committed", "log_end", "lag_seconds", "lag_seconds_at_least", "error"}
	for part, want := range map[string]map[string]string{
		"0": {"error": "null", "lag": "2", "lag_seconds_at_least": "", "lag_seconds": ""},
		"1": {"lag": "null", "lag_seconds": "null", "lag_seconds_at_least": "false", "error": ""},
	} {
		d, ok := v["test_cluster"]["m"][part]
		if !ok {
			t.Errorf("partition %s missing from %s", part, body)
			continue
		}
		for _, f := range fields {
			got, ok := d[f]
			if !ok {
				t.Errorf("partition %s: no %q field in %s", part, f, body)
				continue
			}
			if w := want[f]; w != "" && string(got) != w {
				t.Errorf("partition %s: %q is %s, want %s", part, f, got, w)
			}
		}
	}
}

// A query string that does not parse (a ';' between parameters, a broken
// %-escape) is a 400 saying why: dropping the pairs it cannot read would
// answer JSON to a zabbix_sender pipe, or every cluster to a request for
// one.
func TestUnparsableQueryIsABadRequest(t *testing.T) {
	e := start(t)
	for _, q := range []string{"?format=zabbix;keys=item", "?cluster=%zz", "?format=zabbix&cluster=test%"} {
		code, body := e.get(t, q)
		if code != 400 || !strings.Contains(body, "query") || strings.Count(body, "\n") != 1 {
			t.Errorf("%s: %d %q, want 400 saying the query does not parse", q, code, body)
		}
	}
}

// A cluster's name is written into every zabbix_sender line and the
// 400 answers' one-line reasons: a name holding a line feed or another
// control character would split them. Such a name is a start-up error
// naming the file, the field and the value.
func TestConfigClusterNameWithControlCharacter(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	doc := "base:\n clusters: [\"a\\nb\"]\n\"a\\nb\":\n chroot: /mq/a\n zk_hosts: [127.0.0.1:2181]\n"
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	want := f + `: base.clusters[0]: must be a name without control characters, got "a\nb"`
	if _, err := kmonitor.LoadConfig(f); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("cluster named with a line feed: %v\nlacks %q", err, want)
	}
}

// One registration under <chroot>/brokers/ids that does not parse (a tool
// that wrote there, a half-written node) is reported; the brokers whose
// registrations do parse are still used, and every lag is known.
func TestMalformedBrokerRegistrationIsNotFatal(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	var log logBuffer
	e := startWith(t, k, func(c *kmonitor.Config) {
		// Before kmonitor starts: it never sees the brokers without it.
		conn := zktest.Connect(t, c.Clusters["test_cluster"].ZKHosts[0])
		if _, err := conn.Create(zklayout.BrokerIDs(chroot)+"/99", []byte("not json"), 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}, &log)
	produce(t, e.kafka, "a", 0, 3)
	setOffset(t, e.conn, "m", "a", "0", "1")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":2}}}`+"\n", 10*time.Second)
	if log.count("broker registration skipped") == 0 {
		t.Errorf("the malformed broker registration was not reported")
	}
}

// nonLoopbackIP is an address of this host other than loopback, to reach
// a listener on every interface as another host would.
// kmonitor's port listens on every interface by default, for zabbix and
// Prometheus; the Go profiles it also serves (command line, goroutine
// stacks, CPU profiles on demand) are for this host only, as every other
// binary's admin endpoints are: another host asking for them gets a 403.
func TestProfilesOnlyForLoopbackClients(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	e := startWith(t, k, func(c *kmonitor.Config) { c.HTTPServer.ListenHost = "" }, io.Discard)
	local := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(e.mon.Addr().(*net.TCPAddr).Port))
	// Another host's request, made up: the test must not depend on this
	// host having an address other than loopback.
	remote := func(p string) int {
		req := httptest.NewRequest(http.MethodGet, p, nil)
		req.RemoteAddr = "192.0.2.7:40000"
		rec := httptest.NewRecorder()
		e.mon.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	status := func(url string) int {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=2"} {
		if code := remote(p); code != http.StatusForbidden {
			t.Errorf("%s from another address: %d, want 403", p, code)
		}
		if code := status(local + p); code != http.StatusOK {
			t.Errorf("%s from loopback: %d, want 200", p, code)
		}
	}
	for _, p := range []string{"/delay", "/metrics", "/health"} {
		if code := remote(p); code == http.StatusForbidden || code == http.StatusNotFound {
			t.Errorf("%s from another address: %d, want it served", p, code)
		}
	}
}

// A parameter given twice is a 400 saying so: only the first was used, so
// ?cluster=test_cluster&cluster=nope answered as if the unknown name were
// not there (alone it is a 400), and ?format=json&format=zabbix answered
// JSON to a request that also asked for zabbix lines.
func TestRepeatedParameterIsABadRequest(t *testing.T) {
	e := start(t)
	for _, q := range []string{
		"?cluster=test_cluster&cluster=nope",
		"?format=json&format=zabbix",
		"?format=zabbix&keys=item&keys=weird",
		"?detail=0&detail=yes",
	} {
		code, body := e.get(t, q)
		if code != 400 || !strings.Contains(body, "more than once") || strings.Count(body, "\n") != 1 {
			t.Errorf("%s: %d %q, want 400 saying a parameter is given more than once", q, code, body)
		}
	}
}

// A parameter /delay does not know (a typo: formt=zabbix, details=1,
// clusters=NAME) is a 400 naming it and the known ones, as a misplaced
// one is: answering JSON of every cluster as if it were not there would
// feed JSON to zabbix_sender, or every cluster to a request for one.
func TestUnknownParameterIsABadRequest(t *testing.T) {
	e := start(t)
	for _, q := range []string{"?formt=zabbix", "?details=1", "?clusters=test_cluster", "?format=zabbix&key=item", "?format", "?_=1764570000000&format=zabbix"} {
		code, body := e.get(t, q)
		if q == "?format" || strings.HasPrefix(q, "?_=") {
			// A bare known name is the empty value, JSON: not unknown;
			// a dashboard's cache-buster says nothing about the answer.
			if code != 200 {
				t.Errorf("%s: %d %q, want 200", q, code, body)
			}
			continue
		}
		if code != 400 || !strings.Contains(body, "unknown parameter") || strings.Count(body, "\n") != 1 {
			t.Errorf("%s: %d %q, want 400 saying the parameter is unknown", q, code, body)
		}
	}
}

// With no broker registration to read (every broker of a ZooKeeper-mode
// cluster down, or none registered yet), every lag turns unknown and the
// reason is logged when it starts, not once per poll for as long as it
// lasts: ten times a second here, once a second at the default interval.
func TestNoBrokerRegisteredIsLoggedOnce(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	const empty = "/mq/no_brokers"
	var log logBuffer
	e := startWith(t, k, func(c *kmonitor.Config) {
		cl := c.Clusters["test_cluster"]
		cl.Chroot = empty
		c.Clusters["test_cluster"] = cl
	}, &log)
	dir := zklayout.Offsets(empty, "m", "a")
	if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Create(dir+"/0", []byte("0"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	// Unknown once "not known yet" turns into the reason: 20 polls later
	// the warning must still have been logged once.
	e.eventuallyContains(t, "?detail=1", 10*time.Second, `"error":"log-end offset unknown: discover brokers: `)
	if log.count("no kafka client") == 0 {
		t.Fatalf("no warning while no broker is registered")
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if n := log.count("no kafka client"); n > 1 {
			t.Fatalf("the same reason logged %d times in %v of 100 ms polls", n, 2*time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A ZooKeeper host name that does not resolve (a typo, a DNS outage) makes
// every attempt to create a client fail at once; kmonitor tries again every
// half second, and says so when the reason starts or changes, not as an
// error twice a second for as long as it lasts.
func TestZooKeeperClientErrorLoggedOnce(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	var log logBuffer
	startWith(t, k, func(c *kmonitor.Config) {
		cl := c.Clusters["test_cluster"]
		cl.ZKHosts = []string{"zookeeper.invalid:2181"}
		c.Clusters["test_cluster"] = cl
	}, &log)
	if !waitFor(10*time.Second, func() bool { return log.count("zookeeper client") > 0 }) {
		t.Fatal("no error logged while the ZooKeeper host does not resolve")
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if n := log.count("zookeeper client"); n > 1 {
			t.Fatalf("the same error logged %d times in 2 s", n)
		}
	}
}

// TestZooKeeperServerWhoseNameNoLongerResolves: zk_hosts lists a server
// whose name was removed from DNS (retired) beside one that answers. The
// ZooKeeper client gave up on the first name that did not resolve, at
// every try: the cluster was never read, although a server answered. It
// is left out, with a warning naming it, and the other one is used.
func TestZooKeeperServerWhoseNameNoLongerResolves(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	var log logBuffer
	e := startWith(t, k, func(c *kmonitor.Config) {
		cl := c.Clusters["test_cluster"]
		cl.ZKHosts = append([]string{"retired.invalid:2181"}, cl.ZKHosts...)
		c.Clusters["test_cluster"] = cl
	}, &log)
	produce(t, e.kafka, "a", 0, 10)
	setOffset(t, e.conn, "m1", "a", "0", "7")
	e.eventually(t, "", `{"test_cluster":{"m1":{"0":3}}}`+"\n", 15*time.Second)
	if l := log.String(); !strings.Contains(l, "retired.invalid") || log.count("zookeeper server left out: its name does not resolve; the other servers are used") == 0 {
		t.Errorf("the server left out is not named in a warning:\n%s", log.String())
	}
}

// TestConfigChrootZooKeeperRefuses: a chroot with a character ZooKeeper
// refuses in a path (a tab, as a YAML "\t" writes it) passed -check and the
// start; every listing under it was then refused, retried every 500 ms
// and logged at debug only: the cluster never read, and nothing named the
// field. It is a start-up error naming file, field and value.
func TestConfigChrootZooKeeperRefuses(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	for _, chroot := range []string{`"/mq/a\tb"`, `"/mq/\u0085"`, `"/mq/\uFFF5"`} {
		os.WriteFile(f, []byte("base:\n clusters: [c1]\nc1:\n chroot: "+chroot+"\n zk_hosts: [h:1]\n"), 0o644)
		_, err := kmonitor.LoadConfig(f)
		if err == nil || !strings.Contains(err.Error(), f+": c1.chroot: ") {
			t.Errorf("chroot %s: %v, want an error naming %s and c1.chroot", chroot, err, f)
		}
	}
}
