package ktransfer_test

import (
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// heldDeadLetter is a process whose one record's dead-letter write the
// broker holds (startHeldDeadLetter).
type heldDeadLetter struct {
	tr    *ktransfer.Transfer
	stop  func() error
	admin string
	logs  *runtest.Log
	let   func() // the broker appends the held write
}

// startHeldDeadLetter runs a process of module m on t (partition 0) whose
// backend refuses every record for good (400), with dead_letter_topic dlq
// and shutdown_timeout_ms shutdownMs; it writes record "h" to partition 0
// and waits until the broker holds its dead-letter write.
func startHeldDeadLetter(t *testing.T, e *env, zkTimeoutMs, shutdownMs int) *heldDeadLetter {
	t.Helper()
	hung, let := hangDeadLetters(t, e)
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dlq"
	cfg := e.config(t, zkTimeoutMs, m)
	cfg.ShutdownTimeoutMs = shutdownMs
	cfg.AdminAddr = "127.0.0.1:0"
	h := &heldDeadLetter{logs: &runtest.Log{}, let: let}
	tr, err := ktransfer.New(cfg, slog.New(slog.NewTextHandler(h.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	h.tr = tr
	h.stop = runtest.Start(t, tr.Run, 20*time.Second)
	h.admin = "http://" + tr.AdminAddr().String()
	waitFor(t, "partition 0 claimed", 30*time.Second, func() bool { return len(tr.Status()[0].Partitions) == 1 })
	writeKeys(t, e, 0, []string{"h"})
	waitFor(t, "the dead-letter write held by the broker", 30*time.Second, func() bool { return hung.Load() >= 1 })
	return h
}

// logged reports whether a line of logs holds every one of parts.
func logged(logs *runtest.Log, parts ...string) bool {
	for line := range strings.SplitSeq(logs.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// abandonedThenWritten checks, once the partition was given up (deposed or
// dropped), that its held dead-letter write is abandoned within 3 s
// (shutdown_timeout_ms is 10000), its record left uncommitted; and that
// when the broker appends the held write after all, it is counted as a
// dead letter written, with a warning, and the record not as given up.
func (h *heldDeadLetter) abandonedThenWritten(t *testing.T, e *env) {
	t.Helper()
	waitFor(t, "the held dead-letter write abandoned (shutdown_timeout_ms 10000)", 3*time.Second, func() bool {
		return logged(h.logs, "dead-letter write stopped", "offset=0")
	})
	h.let()
	waitFor(t, "the held dead letter appended and counted as written", 30*time.Second, func() bool {
		return kafkatest.Records(t, e.kafka, e.kc, "dlq") == 1 && metricValue(t, h.admin, `ktransfer_dead_lettered_total{module="m"}`) == "1"
	})
	if got := metricValue(t, h.admin, `ktransfer_failed_total{module="m"}`); got != "0" {
		t.Errorf("ktransfer_failed_total %s for a record left to the next owner, want 0", got)
	}
	if !logged(h.logs, "level=WARN", "written after all", "offset=0") {
		t.Error("no warning for the dead letter written after its write was abandoned")
	}
}

// TestDeposedPartitionAbandonsHeldDeadLetterWrite: the broker holds the
// dead-letter write of a record its backend refused when another owner
// takes the partition over (its owner node replaced). Nothing of a
// deposed partition is committed: the write is abandoned at once, not at
// shutdown_timeout_ms (10 s here), and the partition given up; the dead
// letter the broker appends later is counted as written, the record not as
// given up (the new owner has it).
func TestDeposedPartitionAbandonsHeldDeadLetterWrite(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	h := startHeldDeadLetter(t, e, 0, 10000)
	takeOverPartition0(t, e)
	waitFor(t, "the deposed partition given up", 3*time.Second, func() bool { return len(h.tr.Status()[0].Partitions) == 0 })
	h.abandonedThenWritten(t, e)
}

// TestDroppedPartitionAbandonsHeldDeadLetterWrite: as
// TestDeposedPartitionAbandonsHeldDeadLetterWrite, but the partition is
// dropped because ZooKeeper stops answering (frozen past 2/3 of the
// session timeout). ZooKeeper stays frozen until the held dead letter is
// appended, so that the process does not claim the partition again
// meanwhile.
func TestDroppedPartitionAbandonsHeldDeadLetterWrite(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}, {Name: "dlq", Partitions: 1}})
	z := zktest.Start(t)
	e := &env{kafka: k, zkAdr: z.Addr, conn: envConn(t, z.Addr), kc: kafkaconf.Default()}
	h := startHeldDeadLetter(t, e, 4500, 10000)
	if err := syscall.Kill(z.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(z.Pid(), syscall.SIGCONT) })
	waitFor(t, "the partition dropped with ZooKeeper frozen", 10*time.Second, func() bool { return len(h.tr.Status()[0].Partitions) == 0 })
	h.abandonedThenWritten(t, e)
}

// TestStopEndsHeldDeadLetterWrite: the process stops while the broker
// holds a dead-letter write. The stop abandons the write at
// shutdown_timeout_ms, its record uncommitted: Run returns within
// shutdown_timeout_ms and 2 s, without error and without cutting a worker
// short. Without the abandon, the worker stayed in the write until the
// stop gave up on the module's workers, and the Kafka client's close
// failed the write.
func TestStopEndsHeldDeadLetterWrite(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	const shutdownMs = 1000
	h := startHeldDeadLetter(t, e, 0, shutdownMs)
	start := time.Now()
	err := h.stop()
	took := time.Since(start)
	t.Logf("stop with a dead-letter write held: %v (shutdown_timeout_ms %d)", took.Round(time.Millisecond), shutdownMs)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if limit := shutdownMs*time.Millisecond + 2*time.Second; took > limit {
		t.Errorf("Run returned %v after the stop, want at most %v", took, limit)
	}
	if logged(h.logs, "pushes still in progress at shutdown") {
		t.Error("the stop cut a worker short: its dead-letter write outlived shutdown_timeout_ms")
	}
	if !logged(h.logs, "dead-letter write stopped", "offset=0") {
		t.Error("the held dead-letter write was not stopped by the stop")
	}
	if got := e.storedOffset(t, "m", "t", 0); got == "1" {
		t.Errorf("offset %s stored: the record whose dead-letter write was abandoned was committed", got)
	}
}

// TestDeadLetterNotWrittenAfterRelease: a dead-letter write that starts
// after its partition was released (the release comes between the
// decision to write and the write) must not be sent. Here another dead
// letter of the topic is held by the broker, so that the client sends the
// late one behind it without looking at its context: the record would get
// a dead letter although the next owner has it. Before, nothing but the
// lock's availability was checked, and the write was sent.
func TestDeadLetterNotWrittenAfterRelease(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	m := module("m", "t", b.URL)
	m.WorkerNum = 2
	m.DeadLetterTopic = "dlq"
	cfg := e.config(t, 0, m)
	cfg.ShutdownTimeoutMs = 10000
	cfg.AdminAddr = "127.0.0.1:0"
	var logs runtest.Log
	tr, err := ktransfer.New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	admin := "http://" + tr.AdminAddr().String()
	waitFor(t, "both partitions claimed", 30*time.Second, func() bool { return len(tr.Status()[0].Partitions) == 2 })
	// A first dead letter written: the client then sends a partition's
	// next batch while one is in flight.
	writeKeys(t, e, 1, []string{"a"})
	waitFor(t, "the first dead letter written", 30*time.Second, func() bool {
		return metricValue(t, admin, `ktransfer_dead_lettered_total{module="m"}`) == "1"
	})
	hung, let := hangDeadLetters(t, e)
	writeKeys(t, e, 1, []string{"b"})
	waitFor(t, "partition 1's dead-letter write held by the broker", 30*time.Second, func() bool { return hung.Load() >= 1 })

	held := ktransfer.HoldDeadLetterWrite(t, 0)
	writeKeys(t, e, 0, []string{"c"})
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("partition 0's dead-letter write never came")
	}
	takeOverPartition0(t, e)
	waitFor(t, "partition 0's dead-letter write stopped by the release", 30*time.Second, func() bool {
		return logged(&logs, "dead-letter write stopped", "partition=0")
	})

	let()
	// Written behind a late one of c, if any: once d is there, so is c.
	writeKeys(t, e, 1, []string{"d"})
	var keys []string
	waitFor(t, "the dead letter of d written", 30*time.Second, func() bool {
		keys = keys[:0]
		for _, r := range kafkatest.ReadAll(t, e.kafka, e.kc, "dlq") {
			keys = append(keys, string(r.Key))
		}
		return len(keys) > 0 && keys[len(keys)-1] == "d"
	})
	if strings.Join(keys, ",") != "a,b,d" {
		t.Errorf("dead letters %v, want a,b,d: c's was written after its partition was released", keys)
	}
}
