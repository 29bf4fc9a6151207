package ktransfer_test

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// newClusterEnv is an env on a 3-broker cluster.
func newClusterEnv(t *testing.T, topics ...kafkatest.Topic) *env {
	t.Helper()
	k := kafkatest.StartBrokers(t, 3, topics)
	z := zktest.Start(t)
	return &env{kafka: k, zkAdr: z.Addr, conn: envConn(t, z.Addr), kc: kafkaconf.Default()}
}

// jitteryBackend answers 200 after 0–300 µs, so that keys overtake each
// other in the workers.
func jitteryBackend(t *testing.T) *backend {
	return newBackend(t, func(int, push, http.ResponseWriter) {
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	})
}

// committedAtEnd waits until module's stored offsets of topic equal the
// partitions' log-end offsets: everything was pushed and committed, and
// the commit point passed every record, marker and aborted range.
func (e *env) committedAtEnd(t *testing.T, module, topic string) {
	t.Helper()
	var got map[int32]string
	deadline := time.Now().Add(20 * time.Second)
	for {
		// Read again each time: a transaction's markers can reach the log
		// after its producer was answered (an abort is finished in the
		// background), and the committed offsets must pass them too.
		ends := kafkatest.EndOffsets(t, e.kafka, e.kc, topic)
		got = map[int32]string{}
		ok := true
		for p, end := range ends {
			got[p] = e.storedOffset(t, module, topic, int(p))
			if end > 0 && got[p] != strconv.FormatInt(end, 10) {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stored offsets %v, log-end offsets %v", got, ends)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// produceUnderFaults writes records 0..n-1 (key k<i%40>, value i) in
// batches of 100 while ktransfer reads, calling between(batch) before each
// batch.
func produceUnderFaults(t *testing.T, e *env, n int, between func(batch int)) {
	t.Helper()
	for from := 0; from < n; from += 100 {
		between(from / 100)
		produceN(t, e, from, min(from+100, n))
	}
}

// TestLeaderMovesLoseNothing: every partition's leader moves every 150 ms
// and single partitions are moved to another broker while records are
// produced and pushed. Nothing is lost, per key no record is first
// delivered before an older one, and the committed offsets end at the
// log-end offsets.
func TestLeaderMovesLoseNothing(t *testing.T) {
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 6})
	b := jitteryBackend(t)
	e.start(t, module("m", "t", b.URL))
	shuffles := kafkatest.NewFaults(t, e.kafka).ShuffleEvery(150 * time.Millisecond)
	const n = 4000
	moves := 0
	produceUnderFaults(t, e, n, func(batch int) {
		p := int32(batch % 6)
		to := (e.kafka.LeaderFor("t", p) + 1) % 3
		if err := e.kafka.MoveTopicPartition("t", p, to); err != nil {
			t.Fatalf("move t/%d to broker %d: %v", p, to, err)
		}
		moves++
		time.Sleep(20 * time.Millisecond) // spread the records over the moves
	})
	waitFor(t, "every record pushed", 60*time.Second, func() bool { return distinct(b) == n })
	shuffled := shuffles()
	deliveredAll(t, b, n)
	e.committedAtEnd(t, "m", "t")
	t.Logf("%d records, %d pushes (%d repeated), %d leader shuffles, %d partition moves",
		n, len(b.got()), len(b.got())-n, shuffled, moves)
	if shuffled == 0 {
		t.Fatal("no leader shuffle happened while records flowed")
	}
}

// TestFetchConnectionsClosed: the brokers close the connection of fetch
// requests in bursts while records flow. Nothing is lost, per key order is
// kept, the committed offsets end at the log-end offsets.
func TestFetchConnectionsClosed(t *testing.T) {
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 6})
	b := jitteryBackend(t)
	e.start(t, module("m", "t", b.URL))
	f := kafkatest.NewFaults(t, e.kafka)
	const n = 3000
	// kgo backs off after each failed fetch (250 ms, doubling): bursts of
	// three closes, three times, keep the test short.
	produceUnderFaults(t, e, n, func(batch int) {
		if batch%10 == 5 {
			f.CloseConn(int16(kmsg.Fetch), 3)
		}
		time.Sleep(20 * time.Millisecond)
	})
	waitFor(t, "every record pushed", 60*time.Second, func() bool { return distinct(b) == n })
	deliveredAll(t, b, n)
	e.committedAtEnd(t, "m", "t")
	t.Logf("%d records, %d pushes (%d repeated), %d fetch connections closed", n, len(b.got()), len(b.got())-n, f.Injected())
	if f.Injected() == 0 {
		t.Fatal("no fetch connection was closed")
	}
}

func distinct(b *backend) int {
	seen := map[string]bool{}
	for _, p := range b.got() {
		seen[p.body] = true
	}
	return len(seen)
}

// TestAbortedTransactionsNeverPushed: records of aborted transactions, in
// the middle of the log and at its end, are never pushed; records written
// outside transactions and in a committed one are; the commit point
// passes the aborted ranges and the transaction markers, so the stored
// offsets reach the log-end offsets (kmonitor shows no lag).
func TestAbortedTransactionsNeverPushed(t *testing.T) {
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	plain := kafkatest.Client(t, e.kafka, e.kc)
	txn := kafkatest.Client(t, e.kafka, e.kc, kgo.TransactionalID("ktransfer-test"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	records := func(prefix string, from, to int) []*kgo.Record {
		var rs []*kgo.Record
		for i := from; i < to; i++ {
			rs = append(rs, &kgo.Record{Topic: "t", Key: []byte("k" + strconv.Itoa(i%7)), Value: []byte(prefix + strconv.Itoa(i))})
		}
		return rs
	}
	write := func(cl *kgo.Client, rs []*kgo.Record) {
		t.Helper()
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	transaction := func(rs []*kgo.Record, end kgo.TransactionEndTry) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		write(txn, rs)
		if err := txn.EndTransaction(ctx, end); err != nil {
			t.Fatalf("end transaction: %v", err)
		}
	}
	write(plain, records("c", 0, 20))
	transaction(records("aborted", 0, 20), kgo.TryAbort)
	write(plain, records("c", 20, 40))
	transaction(records("t", 0, 20), kgo.TryCommit)
	write(plain, records("c", 40, 60))
	transaction(records("aborted", 20, 40), kgo.TryAbort) // at the end of the log
	e.committedAtEnd(t, "m", "t")
	want := map[string]bool{}
	for i := range 60 {
		want["c"+strconv.Itoa(i)] = true
	}
	for i := range 20 {
		want["t"+strconv.Itoa(i)] = true
	}
	got := map[string]bool{}
	for _, p := range b.got() {
		if strings.HasPrefix(p.body, "aborted") {
			t.Errorf("pushed %s, a record of an aborted transaction", p.body)
		}
		got[p.body] = true
	}
	for v := range want {
		if !got[v] {
			t.Errorf("%s was not pushed", v)
		}
	}
}

// TestOffsetBelowLogStart: retention removed records before the stored
// offset was reached. offset_out_of_range: oldest starts at the log start
// and pushes what is left; newest pushes only what arrives afterwards.
func TestOffsetBelowLogStart(t *testing.T) {
	for _, policy := range []string{"oldest", "newest"} {
		t.Run(policy, func(t *testing.T) {
			e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
			var recs [][2]string
			for i := range 20 {
				recs = append(recs, [2]string{"k", strconv.Itoa(i)})
			}
			e.produce(t, "t", recs)
			adm := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc))
			var trim kadm.Offsets
			trim.Add(kadm.Offset{Topic: "t", Partition: 0, At: 12, LeaderEpoch: -1})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if res, err := adm.DeleteRecords(ctx, trim); err != nil || res.Error() != nil {
				t.Fatalf("delete records before 12: %v %v", err, res.Error())
			}
			dir := zklayout.Offsets(chroot, "m", "t")
			if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
				t.Fatal(err)
			}
			if _, err := e.conn.Create(dir+"/0", []byte("5"), 0, zk.WorldACL(zk.PermAll)); err != nil {
				t.Fatal(err)
			}
			b := newBackend(t, nil)
			m := module("m", "t", b.URL)
			m.OffsetOutOfRange = policy
			e.start(t, m)
			want := "12 13 14 15 16 17 18 19"
			if policy == "newest" {
				// The offset the policy chose is stored before any push.
				waitFor(t, "the newest offset stored", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "20" })
				e.produce(t, "t", [][2]string{{"k", "20"}})
				want = "20"
			}
			waitFor(t, "the pushes after the log start", 10*time.Second, func() bool { return len(b.got()) >= len(strings.Fields(want)) })
			e.committedAtEnd(t, "m", "t")
			var bodies []string
			for _, p := range b.got() {
				bodies = append(bodies, p.body)
			}
			if strings.Join(bodies, " ") != want {
				t.Errorf("pushed %v, want %s", bodies, want)
			}
		})
	}
}

// TestOffsetOutOfRangeStopFails: with offset_out_of_range: stop, a stored
// offset Kafka does not have stops the module with an error naming it.
func TestOffsetOutOfRangeStopFails(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", [][2]string{{"k", "0"}, {"k", "1"}, {"k", "2"}})
	dir := zklayout.Offsets(chroot, "m", "t")
	if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Create(dir+"/0", []byte("1000"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	m.OffsetOutOfRange = "stop"
	tr, err := ktransfer.New(e.config(t, 0, m), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = tr.Run(ctx)
	if ctx.Err() != nil {
		t.Fatal("Run went on with a stored offset out of range and offset_out_of_range: stop")
	}
	if err == nil || !strings.Contains(err.Error(), "offset 1000 out of range [0, 3]") {
		t.Errorf("Run returned %v; want the offset out of range", err)
	}
	if len(b.got()) != 0 || e.storedOffset(t, "m", "t", 0) != "1000" {
		t.Errorf("%d pushes, stored offset %s; want none and 1000 kept", len(b.got()), e.storedOffset(t, "m", "t", 0))
	}
}

// TestReleaseFreesTheReader: the window is full of a partition's records
// whose pushes hang. When a second process joins and that partition moves
// to it, the first process's reader serves its other partition at once.
func TestReleaseFreesTheReader(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	hang := make(chan struct{})
	var hangOnce sync.Once
	unhang := func() { hangOnce.Do(func() { close(hang) }) }
	var hung atomic.Int32
	b := newBackend(t, func(_ int, p push, _ http.ResponseWriter) {
		if p.partition == "1" {
			hung.Add(1)
			<-hang
		}
	})
	t.Cleanup(unhang)
	manual := kafkatest.Client(t, e.kafka, e.kc, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	write := func(partition int32, from, to int) {
		t.Helper()
		var rs []*kgo.Record
		for i := from; i < to; i++ {
			rs = append(rs, &kgo.Record{Topic: "t", Partition: partition, Key: []byte("k" + strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := manual.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	write(1, 0, 20)
	m := module("m", "t", b.URL)
	// idle_worker: the workers stuck in partition 1's pushes hold no key
	// of partition 0 (with hash, a key of partition 0 could wait behind one).
	m.WorkerNum, m.WindowSize, m.Dispatch = 10, 5, "idle_worker"
	a := e.start(t, m)
	waitFor(t, "the window full of partition 1's hung records", 10*time.Second, func() bool {
		return a.tr.Status()[0].WindowUsed == 5 && hung.Load() == 5
	})
	write(0, 100, 150)
	time.Sleep(200 * time.Millisecond)
	if n := len(b.got()) - int(hung.Load()); n != 0 {
		t.Fatalf("%d records of partition 0 pushed with the window full", n)
	}
	// Assignment is sticky and fills in partition order: the first process
	// keeps partition 0, the second takes partition 1.
	second := e.start(t, m)
	t.Cleanup(unhang) // before the processes stop
	waitFor(t, "partition 0's records, pushed by the first process", 20*time.Second, func() bool {
		n := 0
		for _, p := range b.got() {
			if p.partition == "0" {
				n++
			}
		}
		return n >= 50
	})
	if st := a.tr.Status()[0]; len(st.Partitions) != 1 || st.Partitions[0].Partition != 0 {
		t.Errorf("first process holds %+v, want partition 0 only", st.Partitions)
	}
	waitFor(t, "partition 0 committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "50" })
	// Idle again: the released partition's slots were given back.
	waitFor(t, "the first process's window empty", 10*time.Second, func() bool { return a.tr.Status()[0].WindowUsed == 0 })
	waitFor(t, "the second process to hold partition 1", 10*time.Second, func() bool {
		ps := second.tr.Status()[0].Partitions
		return len(ps) == 1 && ps[0].Partition == 1
	})
}
