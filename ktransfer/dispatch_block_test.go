package ktransfer_test

import (
	"context"
	"hash/fnv"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// writeTo writes records from..to-1 (key and value k<i>) to one partition.
func writeTo(t *testing.T, e *env, partition int32, from, to int) {
	t.Helper()
	var keys []string
	for i := from; i < to; i++ {
		keys = append(keys, "k"+strconv.Itoa(i))
	}
	writeKeys(t, e, partition, keys)
}

// TestHashQueueFullDoesNotBlockRelease: dispatch: hash with a
// waiting_queue_size below window_size (both 2015 keys). Partition 0's
// backend fails (retried forever), so worker 0's queue fills and the
// module's single poll goroutine blocked (before the fix) in sched.put for
// a partition-0 record. A second process joins and partition 1 must move to
// it; the release of partition 1 waits for reader.unassign, which waited
// for the blocked poll goroutine: partition 1 was never handed over while
// partition 0's backend is down. (With sarama each partition had its own
// read goroutine, and release cancelled partition 1's alone.)
func TestHashQueueFullDoesNotBlockRelease(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	var down atomic.Bool
	down.Store(true)
	var p0Attempts atomic.Int32
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if p.partition == "0" && down.Load() {
			p0Attempts.Add(1)
			w.WriteHeader(500)
		}
	})
	writeTo(t, e, 0, 0, 10)
	m := module("m", "t", b.URL)
	m.Dispatch, m.WorkerNum, m.WaitingQueueSize, m.WindowSize = "hash", 1, 1, 10
	a := e.start(t, m)
	waitFor(t, "partition 0's first record retried", 10*time.Second, func() bool { return p0Attempts.Load() >= 3 })
	time.Sleep(300 * time.Millisecond) // the reader reaches the full queue
	if st := a.tr.Status()[0]; len(st.Partitions) != 2 {
		t.Fatalf("first process holds %+v, want both partitions", st.Partitions)
	}
	second := e.start(t, m)
	t.Cleanup(func() { down.Store(false) }) // runs before the processes stop
	writeTo(t, e, 1, 100, 110)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		n := 0
		for _, p := range b.got() {
			if p.partition == "1" {
				n++
			}
		}
		if n >= 10 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("partition 1 not handed over in 20 s while partition 0's backend fails: first process holds %+v, second %+v",
		a.tr.Status()[0].Partitions, second.tr.Status()[0].Partitions)
}

// writeKeys writes one record per key (value = key) to one partition.
func writeKeys(t *testing.T, e *env, partition int32, keys []string) {
	t.Helper()
	cl := kafkatest.Client(t, e.kafka, e.kc, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var rs []*kgo.Record
	for _, k := range keys {
		rs = append(rs, &kgo.Record{Topic: "t", Partition: partition, Key: []byte(k), Value: []byte(k)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestHashQueueFullDoesNotStopOtherPartitions: dispatch: hash, 4 workers,
// waiting_queue_size 2. One key of partition 0 fails at its backend
// (retried forever): its worker's queue fills and (before the fix) the
// module's single poll goroutine blocked in sched.put. Partition 1's
// records, whose keys go to the three other (idle) workers, were then never
// dispatched, with the window nearly empty. (With sarama, partition 1 had
// its own read goroutine and was pushed.) The queues now never block put.
func TestHashQueueFullDoesNotStopOtherPartitions(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	const workers = 4
	worker := func(k string) uint32 { h := fnv.New32a(); h.Write([]byte(k)); return h.Sum32() % workers }
	var down atomic.Bool
	down.Store(true)
	var badAttempts atomic.Int32
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if p.key == "bad" && down.Load() {
			badAttempts.Add(1)
			w.WriteHeader(500)
		}
	})
	t.Cleanup(func() { down.Store(false) }) // before the process stops
	bad := make([]string, 10)
	for i := range bad {
		bad[i] = "bad"
	}
	writeKeys(t, e, 0, bad)
	m := module("m", "t", b.URL)
	m.Dispatch, m.WorkerNum, m.WaitingQueueSize, m.WindowSize = "hash", workers, 2, 100
	e.start(t, m)
	waitFor(t, "the bad key retried", 10*time.Second, func() bool { return badAttempts.Load() >= 3 })
	var others []string
	for i := 0; len(others) < 20; i++ {
		if k := "k" + strconv.Itoa(i); worker(k) != worker("bad") {
			others = append(others, k)
		}
	}
	writeKeys(t, e, 1, others)
	deadline := time.Now().Add(15 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		n = 0
		for _, p := range b.got() {
			if p.partition == "1" {
				n++
			}
		}
		if n == len(others) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%d of partition 1's %d records pushed in 15 s (their workers idle, window 100) while one key of partition 0 fails", n, len(others))
}
