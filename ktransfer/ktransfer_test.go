package ktransfer_test

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

const chroot = "/mq/test_cluster"

// envZKTimeoutMs is the ZooKeeper session timeout of the env's processes
// and of the tests' own clients unless a test asks for another: 10 s (the
// most a server of zktest.Start grants), not ktransfer's default 3 s. A
// process gives its session up after 2/3 of it without an answer, and a
// stall of 2-3 s of a loaded machine (packages' tests run side by side)
// would stop its partitions and start a rebalance the test is not about.
// A test of what a session's loss or expiry does asks for its own timeout
// (startWith, cfg.ZKTimeoutMs).
const envZKTimeoutMs = 10000

// envConn opens the test's own ZooKeeper session to addr, of
// envZKTimeoutMs: the test's reads and its own nodes (a fake owner or
// broker) outlast a stall of the machine.
func envConn(t *testing.T, addr string) *zk.Conn {
	t.Helper()
	return zktest.ConnectSession(t, addr, envZKTimeoutMs*time.Millisecond)
}

type env struct {
	kafka  *kfake.Cluster
	zkAdr  string
	conn   *zk.Conn
	kc     kafkaconf.Config // how clients reach kafka
	zkAuth zklayout.Auth    // ktransfer's zk_auth

	sessionsEnded bool // recreateTopic: FetchWithoutSessions installed
}

func newEnv(t *testing.T, topics ...kafkatest.Topic) *env {
	t.Helper()
	k := kafkatest.Start(t, topics)
	z := zktest.Start(t)
	return &env{kafka: k, zkAdr: z.Addr, conn: envConn(t, z.Addr), kc: kafkaconf.Default()}
}

// module returns a module of topic pushing to backends, with test-friendly
// defaults.
func module(name, topic string, backends ...string) ktransfer.Module {
	m := ktransfer.DefaultModule()
	m.Name, m.File, m.Topic = name, "modules/"+name+".yaml", topic
	m.Protocol.URI = "/push/{#TOPIC}?key={#KEY}&transid={#TRANSID}"
	m.Protocol.WriteTimeoutMs, m.Protocol.ConnTimeoutMs = 2000, 2000
	m.WorkerNum, m.WindowSize = 8, 100
	m.FailRetryIntervalMs, m.MaxRetryIntervalMs = 10, 100
	for _, b := range backends {
		m.BackendServers = append(m.BackendServers, strings.TrimPrefix(b, "http://"))
	}
	return m
}

// running is a Transfer running in the background.
type running struct {
	tr   *ktransfer.Transfer
	stop func() error
}

func (e *env) start(t *testing.T, modules ...ktransfer.Module) *running {
	t.Helper()
	return e.startWith(t, 0, modules...)
}

// startWith runs a Transfer with the ZooKeeper session timeout given (0:
// envZKTimeoutMs).
func (e *env) startWith(t *testing.T, zkTimeoutMs int, modules ...ktransfer.Module) *running {
	t.Helper()
	tr, err := ktransfer.New(e.config(t, zkTimeoutMs, modules...), testLog(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	stop := runtest.Start(t, tr.Run, 20*time.Second)
	return &running{tr: tr, stop: stop}
}

// testLog is a log for a Transfer of test t: its last logTailLines lines
// are printed when t fails, so that a failure in CI tells its story. With
// KTRANSFER_TEST_LOG set, every line goes to stderr as it is written.
func testLog(t testing.TB) *slog.Logger {
	if os.Getenv("KTRANSFER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	tail := &logTail{}
	t.Cleanup(func() { // after the Transfer's stop: registered before it
		if t.Failed() {
			t.Logf("the last lines of the Transfer's log:\n%s", tail)
		}
	})
	return slog.New(slog.NewTextHandler(tail, nil))
}

// logTailLines bounds what a failing test prints of a Transfer's log.
const logTailLines = 300

// logTail keeps the last logTailLines lines written to it (the text
// handler writes a line at a time).
type logTail struct {
	mu    sync.Mutex
	lines []string
	first int // where the oldest line is, once lines is full
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) < logTailLines {
		l.lines = append(l.lines, string(p))
	} else {
		l.lines[l.first] = string(p)
		l.first = (l.first + 1) % logTailLines
	}
	return len(p), nil
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[l.first:], "") + strings.Join(l.lines[:l.first], "")
}

// config is a ktransfer configuration reaching e, with the ZooKeeper
// session timeout given (0: envZKTimeoutMs, not ktransfer's default).
func (e *env) config(t *testing.T, zkTimeoutMs int, modules ...ktransfer.Module) ktransfer.Config {
	t.Helper()
	cfg := ktransfer.DefaultConfig()
	cfg.ZKTimeoutMs = envZKTimeoutMs
	if zkTimeoutMs > 0 {
		cfg.ZKTimeoutMs = zkTimeoutMs
	}
	cfg.ZKChroot, cfg.ZKHosts, cfg.BrokerHosts = chroot, strings.Split(e.zkAdr, ","), e.kafka.ListenAddrs()
	cfg.AdminAddr, cfg.ShutdownTimeoutMs = "", 3000
	cfg.Kafka, cfg.ZKAuth = e.kc, e.zkAuth
	for _, m := range modules {
		cfg.ModuleEnabled = append(cfg.ModuleEnabled, m.Name)
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Modules = modules
	return cfg
}

// produce writes records (key, value) with kgo's default partitioner
// (a key's records go to one partition, in order), acknowledged by every
// replica; an empty key is a record without a key.
func (e *env) produce(t *testing.T, topic string, recs [][2]string) {
	t.Helper()
	cl := kafkatest.Client(t, e.kafka, e.kc)
	rs := make([]*kgo.Record, 0, len(recs))
	for _, r := range recs {
		rec := &kgo.Record{Topic: topic, Value: []byte(r[1])}
		if r[0] != "" {
			rec.Key = []byte(r[0])
		}
		rs = append(rs, rec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records to %s: %v", len(rs), topic, err)
	}
}

func mp(t *testing.T, v any) string {
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// push is one request a backend received.
type push struct {
	path, host, key, topic, partition, offset, body string
	epoch                                           int64 // X-Ktransfer-Epoch; -1 when absent
	at                                              time.Time
	query                                           string      // the raw query
	header                                          http.Header // every request header
}

// backend records pushes; respond decides each answer.
type backend struct {
	*httptest.Server
	mu      sync.Mutex
	pushes  []push
	respond func(n int, p push, w http.ResponseWriter) // n: 0-based count of pushes so far
}

func newBackend(t *testing.T, respond func(n int, p push, w http.ResponseWriter)) *backend {
	b := &backend{respond: respond}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p := push{path: r.URL.Path, host: r.Host, key: r.URL.Query().Get("key"), topic: r.Header.Get("X-Kafka-Topic"),
			partition: r.Header.Get("X-Kafka-Partition"), offset: r.Header.Get("X-Kafka-Offset"), body: string(body), epoch: -1, at: time.Now(),
			query: r.URL.RawQuery, header: r.Header.Clone()}
		if e, err := strconv.ParseInt(r.Header.Get("X-Ktransfer-Epoch"), 10, 64); err == nil {
			p.epoch = e
		}
		b.mu.Lock()
		n := len(b.pushes)
		b.pushes = append(b.pushes, p)
		b.mu.Unlock()
		if b.respond != nil {
			b.respond(n, p, w)
		}
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) got() []push {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]push(nil), b.pushes...)
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// storedOffset reads a module's offset znode.
func (e *env) storedOffset(t *testing.T, module, topic string, partition int) string {
	t.Helper()
	data, _, err := e.conn.Get(zklayout.Offsets(chroot, module, topic) + "/" + strconv.Itoa(partition))
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(data)
}

func TestOrderPerKeyUnderConcurrency(t *testing.T) {
	for _, dispatch := range []string{"hash", "idle_worker"} {
		t.Run(dispatch, func(t *testing.T) { testOrderPerKey(t, dispatch) })
	}
}

func testOrderPerKey(t *testing.T, dispatch string) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 4})
	var recs [][2]string
	for i := range 3000 {
		recs = append(recs, [2]string{"k" + strconv.Itoa(i%97), strconv.Itoa(i)})
	}
	e.produce(t, "t", recs)
	b := newBackend(t, func(int, push, http.ResponseWriter) {
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond) // let keys overtake each other
	})
	m := module("m", "t", b.URL)
	m.Dispatch = dispatch
	e.start(t, m)
	waitFor(t, "3000 pushes", 30*time.Second, func() bool { return len(b.got()) >= 3000 })
	last := map[string]int{}
	for _, p := range b.got() {
		v, _ := strconv.Atoi(p.body)
		if prev, ok := last[p.key]; ok && v <= prev {
			t.Fatalf("key %s: record %d pushed after %d", p.key, v, prev)
		}
		last[p.key] = v
	}
	if len(b.got()) != 3000 {
		t.Errorf("%d pushes, want exactly 3000", len(b.got()))
	}
	// Offsets are stored in the classic layout: decimal ASCII of the next
	// offset to push, and together they cover every record.
	waitFor(t, "offsets committed", 10*time.Second, func() bool {
		sum := 0
		for p := range 4 {
			v, err := strconv.Atoi(e.storedOffset(t, "m", "t", p))
			if err != nil {
				return false
			}
			sum += v
		}
		return sum == 3000
	})
}

func TestMulticastAndMethodFilter(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	all := newBackend(t, nil)
	logins := newBackend(t, nil)
	e.produce(t, "t", [][2]string{
		{"u1", mp(t, map[string]any{"method": "Login", "n": 1})},
		{"u2", mp(t, map[string]any{"method": "Logout", "n": 2})},
		{"u1", "\xa5plain"},                   // a string, not a map
		{"u3", mp(t, map[string]any{"n": 4})}, // no method
		{"u1", mp(t, map[string]any{"method": "Login", "n": 5})},
	})
	filtered := module("logins", "t", logins.URL)
	filtered.Methods = []string{"Login"}
	e.start(t, module("everything", "t", all.URL), filtered)
	waitFor(t, "every record at the unfiltered backend", 10*time.Second, func() bool { return len(all.got()) == 5 })
	waitFor(t, "the two logins", 10*time.Second, func() bool { return len(logins.got()) == 2 })
	time.Sleep(200 * time.Millisecond)
	if n := len(logins.got()); n != 2 {
		t.Errorf("filtered module pushed %d records, want the 2 logins", n)
	}
	// Skipped records are done: the filtered module's offsets cover all 5.
	waitFor(t, "filtered module's offsets to cover every record", 10*time.Second, func() bool {
		a, _ := strconv.Atoi(e.storedOffset(t, "logins", "t", 0))
		b, _ := strconv.Atoi(e.storedOffset(t, "logins", "t", 1))
		return a+b == 5
	})
}

func TestPlaceholdersAndHeaders(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "orders", Partitions: 1})
	b := newBackend(t, nil)
	m := module("m", "orders", b.URL)
	m.Protocol.URI = "/api/{#TOPIC}/{#PARTITION}/{#METHOD}?key={#KEY}&transid={#TRANSID}&format=msgpack"
	m.Protocol.Headers = []map[string]string{{"Host": "www.example.cn"}, {"X-Team": "pay"}}
	value := mp(t, map[string]any{"method": "Pay", "amount": 3})
	e.produce(t, "orders", [][2]string{{"user 7/&", value}})
	e.start(t, m)
	waitFor(t, "the push", 10*time.Second, func() bool { return len(b.got()) == 1 })
	p := b.got()[0]
	if p.path != "/api/orders/0/Pay" || p.key != "user 7/&" || p.host != "www.example.cn" ||
		p.topic != "orders" || p.partition != "0" || p.offset != "0" || p.body != value {
		t.Errorf("push %+v", p)
	}
}

func TestRetryThenSuccessOnNextBackend(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	var failing atomic.Int32
	bad := newBackend(t, func(_ int, _ push, w http.ResponseWriter) {
		failing.Add(1)
		w.WriteHeader(503)
	})
	good := newBackend(t, nil)
	m := module("m", "t", bad.URL, good.URL)
	m.WorkerNum = 1
	e.produce(t, "t", [][2]string{{"k", "a"}, {"k", "b"}, {"k", "c"}, {"k", "d"}})
	e.start(t, m)
	waitFor(t, "all four at the good backend", 10*time.Second, func() bool { return len(good.got()) == 4 })
	var bodies []string
	for _, p := range good.got() {
		bodies = append(bodies, p.body)
	}
	if strings.Join(bodies, "") != "abcd" || failing.Load() == 0 {
		t.Errorf("good backend got %v, bad one failed %d times", bodies, failing.Load())
	}
}

func TestExhaustionPermanentAndDeadLetter(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		switch p.body {
		case "down":
			w.WriteHeader(500)
		case "bad":
			w.WriteHeader(400)
		case "gone":
			w.WriteHeader(404)
		case "moved":
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(302)
		}
	})
	m := module("m", "t", b.URL)
	m.MaxRetryTimes = 2
	m.DeadLetterTopic = "dlq"
	e.produce(t, "t", [][2]string{{"a", "down"}, {"b", "bad"}, {"c", "fine"}, {"d", "gone"}, {"e", "moved"}})
	e.start(t, m)
	waitFor(t, "offsets past every record", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "5" })
	counts := map[string]int{}
	for _, p := range b.got() {
		counts[p.body]++
	}
	if counts["down"] != 3 || counts["bad"] != 1 || counts["fine"] != 1 || counts["gone"] != 1 || counts["moved"] != 3 {
		t.Errorf("attempts per record %v; want down and moved: 1+2 retries, bad and gone: 1 (permanent, with a dead-letter topic), fine: 1", counts)
	}
	// The given-up records are in the dead-letter topic, with the reasons.
	// Different keys: the given-up records may come in any order.
	want := map[string]string{"down": "retries exhausted: status 500", "bad": "status 400", "gone": "status 404",
		"moved": "retries exhausted: status 302"}
	dead := kafkatest.ReadAll(t, e.kafka, e.kc, "dlq")
	for _, rec := range dead {
		headers := map[string]string{}
		for _, h := range rec.Headers {
			headers[h.Key] = string(h.Value)
		}
		reason, ok := want[string(rec.Value)]
		if !ok || headers["ktransfer-reason"] != reason || headers["ktransfer-topic"] != "t" || headers["ktransfer-module"] != "m" ||
			headers["ktransfer-partition"] != "0" || headers["ktransfer-offset"] == "" || string(rec.Key) == "" {
			t.Errorf("dead letter %q key %q %v; want one of %v", rec.Value, rec.Key, headers, want)
		}
		delete(want, string(rec.Value))
	}
	if len(dead) != 4 || len(want) != 0 {
		t.Errorf("%d dead letters; missing: %v", len(dead), want)
	}
}

// firstRetryGap pushes one record of topic t to a backend that answers
// its first push with first and later ones 200, and returns the time
// between the first push and its retry (fail_retry_interval_ms is 10 ms).
func firstRetryGap(t *testing.T, e *env, first func(w http.ResponseWriter)) time.Duration {
	t.Helper()
	var times []time.Time
	var mu sync.Mutex
	b := newBackend(t, func(n int, _ push, w http.ResponseWriter) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		if n == 0 {
			first(w)
		}
	})
	e.produce(t, "t", [][2]string{{"k", "x"}})
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the second attempt", 10*time.Second, func() bool { return len(b.got()) == 2 })
	mu.Lock()
	defer mu.Unlock()
	return times[1].Sub(times[0])
}

func TestRetryAfterIsHonoured(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	if gap := firstRetryGap(t, e, func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(429)
	}); gap < 900*time.Millisecond {
		t.Errorf("retried %v after a 429 with Retry-After: 1", gap)
	}
}

func TestWindowFullPausesReading(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	release := make(chan struct{})
	var releaseOnce sync.Once
	var inFlight, peak atomic.Int32
	b := newBackend(t, func(int, push, http.ResponseWriter) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		inFlight.Add(-1)
	})
	// Registered after the backend: cleanups run last-in first-out, so the
	// blocked handlers are released before the backend waits for them.
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	var recs [][2]string
	for i := range 200 {
		recs = append(recs, [2]string{"k" + strconv.Itoa(i), "v"})
	}
	e.produce(t, "t", recs)
	m := module("m", "t", b.URL)
	m.WorkerNum, m.WindowSize = 50, 7
	r := e.start(t, m)
	// Seven records dispatched (pushing, or queued behind a busy key), and
	// reading paused: no more arrive while none is acknowledged.
	waitFor(t, "the window to fill", 10*time.Second, func() bool { return r.tr.Status()[0].WindowUsed == 7 })
	time.Sleep(300 * time.Millisecond)
	if st := r.tr.Status()[0]; st.WindowUsed != 7 || peak.Load() > 7 || len(b.got()) > 7 {
		t.Errorf("window used %d, pushes in flight peaked at %d, %d pushes; window_size is 7", st.WindowUsed, peak.Load(), len(b.got()))
	}
	releaseOnce.Do(func() { close(release) })
	waitFor(t, "all 200 pushed", 20*time.Second, func() bool { return len(b.got()) >= 200 })
}

func TestRestartResumesFromStoredOffset(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	b := newBackend(t, nil)
	var recs [][2]string
	for i := range 50 {
		recs = append(recs, [2]string{"k", strconv.Itoa(i)})
	}
	e.produce(t, "t", recs)
	r := e.start(t, module("m", "t", b.URL))
	waitFor(t, "50 pushes", 10*time.Second, func() bool { return len(b.got()) == 50 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if got := e.storedOffset(t, "m", "t", 0); got != "50" {
		t.Fatalf("stored offset after a clean stop: %q, want 50", got)
	}
	var more [][2]string
	for i := 50; i < 80; i++ {
		more = append(more, [2]string{"k", strconv.Itoa(i)})
	}
	e.produce(t, "t", more)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "80 pushes", 10*time.Second, func() bool { return len(b.got()) >= 80 })
	time.Sleep(200 * time.Millisecond)
	for i, p := range b.got() {
		if p.body != strconv.Itoa(i) {
			t.Fatalf("push %d is record %s: a record was lost or repeated across a clean restart", i, p.body)
		}
	}
}

func TestOffsetOutOfRangePolicy(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	b := newBackend(t, nil)
	e.produce(t, "t", [][2]string{{"k", "0"}, {"k", "1"}, {"k", "2"}})
	dir := zklayout.Offsets(chroot, "m", "t")
	if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Create(dir+"/0", []byte("1000"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	m := module("m", "t", b.URL)
	m.OffsetOutOfRange = "stop"
	r := e.start(t, m)
	done := make(chan error, 1)
	go func() { done <- r.stop() }()
	// With "stop", the module refuses to guess.
	m.OffsetOutOfRange = "oldest"
	if err := <-done; err != nil && !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("stop: %v", err)
	}
	e.start(t, m)
	waitFor(t, "the records from the oldest offset", 10*time.Second, func() bool { return len(b.got()) == 3 })
}

// TestModulesDoNotSlowEachOther: one module's backend hangs; another
// module on the same topic still pushes everything.
func TestModulesDoNotSlowEachOther(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	hang := make(chan struct{})
	stuck := newBackend(t, func(int, push, http.ResponseWriter) { <-hang })
	t.Cleanup(func() { close(hang) })
	fine := newBackend(t, nil)
	var recs [][2]string
	for i := range 500 {
		recs = append(recs, [2]string{"k" + strconv.Itoa(i%50), strconv.Itoa(i)})
	}
	e.produce(t, "t", recs)
	slow := module("slow", "t", stuck.URL)
	slow.WindowSize = 10
	slow.Protocol.ReadTimeoutMs = 0
	e.start(t, slow, module("fast", "t", fine.URL))
	waitFor(t, "every record at the healthy module's backend", 10*time.Second, func() bool { return len(fine.got()) == 500 })
}
