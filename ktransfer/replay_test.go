package ktransfer_test

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestReplayDeadLetters: 100 records a backend refused (400) are
// dead-lettered; once the backend accepts, a replay pushes each again once,
// with its original key, body, headers (its target), topic, partition and
// offset, one key's in order, and reports it. -since takes only the dead
// letters written from then on; other modules' dead letters in the same
// topic are left alone. The replay stores no offset and claims nothing in
// ZooKeeper.
func TestReplayDeadLetters(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2}, kafkatest.Topic{Name: "dlq", Partitions: 2})
	var accepting atomic.Bool
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) {
		if !accepting.Load() {
			w.WriteHeader(400)
		}
	})
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dlq"
	m.Protocol.TargetHeader = "target"
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, targeted("t", "k"+strconv.Itoa(i%7), "v"+strconv.Itoa(i), b.URL+"/hook?i="+strconv.Itoa(i)))
	}
	e.produceRecords(t, recs...)
	r := e.start(t, m)
	waitFor(t, "100 dead letters", 15*time.Second, func() bool { return kafkatest.Records(t, e.kafka, e.kc, "dlq") == 100 })
	// Another module's dead letter in the same topic.
	e.produceRecords(t, &kgo.Record{Topic: "dlq", Key: []byte("x"), Value: []byte("not m's"), Headers: []kgo.RecordHeader{
		{Key: "ktransfer-module", Value: []byte("other")}, {Key: "ktransfer-topic", Value: []byte("t")},
		{Key: "ktransfer-partition", Value: []byte("0")}, {Key: "ktransfer-offset", Value: []byte("0")}}})
	waitFor(t, "offsets past every record", 10*time.Second, func() bool { return offsetsSum(t, e, "m", "t", 2) == 100 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	firstPhase := len(b.got())
	mid := time.Now()
	time.Sleep(20 * time.Millisecond) // the records after are stamped later
	var more []*kgo.Record
	for i := 100; i < 110; i++ {
		more = append(more, targeted("t", "k"+strconv.Itoa(i%7), "v"+strconv.Itoa(i), b.URL+"/hook?i="+strconv.Itoa(i)))
	}
	e.produceRecords(t, more...)
	r = e.start(t, m)
	waitFor(t, "110 dead letters", 15*time.Second, func() bool { return kafkatest.Records(t, e.kafka, e.kc, "dlq") == 111 })
	waitFor(t, "offsets past every record", 10*time.Second, func() bool { return offsetsSum(t, e, "m", "t", 2) == 110 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	stored := []string{e.storedOffset(t, "m", "t", 0), e.storedOffset(t, "m", "t", 1)}
	refusals := len(b.got())
	accepting.Store(true)
	cfg := e.config(t, 0, m)

	rep, err := ktransfer.Replay(context.Background(), cfg, "m", mid, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed != 10 || rep.GivenUp != 0 || rep.Skipped != 0 || rep.Others != 0 {
		t.Errorf("-since the second batch: %v; want the 10 written after it", rep)
	}
	got := b.got()[refusals:]
	for _, p := range got {
		i, _ := strconv.Atoi(strings.TrimPrefix(p.body, "v"))
		if i < 100 {
			t.Errorf("-since replayed record %d, written before", i)
		}
	}

	rep, err = ktransfer.Replay(context.Background(), cfg, "m", time.Time{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed != 110 || rep.GivenUp != 0 || rep.Skipped != 0 || rep.Others != 1 || rep.Took <= 0 {
		t.Errorf("replay of everything: %v; want 110 replayed and 1 other module's", rep)
	}
	t.Logf("%d refusals in the first phase; replay: %v", firstPhase, rep)
	got = b.got()[refusals+10:]
	if len(got) != 110 {
		t.Fatalf("%d pushes, want 110", len(got))
	}
	seen := map[string]bool{}
	last := map[string]int{}
	for _, p := range got {
		i, _ := strconv.Atoi(strings.TrimPrefix(p.body, "v"))
		key := "k" + strconv.Itoa(i%7)
		if seen[p.body] || p.query != "i="+strconv.Itoa(i) || p.path != "/hook" || p.topic != "t" || p.epoch != -1 ||
			p.header.Get("X-Ktransfer-Replay") != "1" {
			t.Errorf("replayed push %+v: want once, at its target /hook?i=%d, from topic t, without an epoch, marked as a replay", p, i)
		}
		seen[p.body] = true
		if prev, ok := last[key]; ok && i <= prev {
			t.Errorf("key %s: record %d replayed after %d", key, i, prev)
		}
		last[key] = i
	}
	// The pushes carry the original partition and offset.
	orig := map[string]string{}
	for _, p := range b.got()[:refusals] {
		orig[p.body] = p.partition + "/" + p.offset
	}
	for _, p := range got {
		if o := orig[p.body]; o != p.partition+"/"+p.offset {
			t.Errorf("%s replayed as %s/%s, refused as %s", p.body, p.partition, p.offset, o)
		}
	}
	if now := []string{e.storedOffset(t, "m", "t", 0), e.storedOffset(t, "m", "t", 1)}; now[0] != stored[0] || now[1] != stored[1] {
		t.Errorf("the replay changed the stored offsets: %v → %v", stored, now)
	}
	// The module ran here before: the directories exist, empty.
	if owners, _, err := e.conn.Children(zklayout.Owners(chroot, "m", "t")); err != nil || len(owners) > 0 {
		t.Errorf("owner nodes after the replay: %v %v", owners, err)
	}
	if ids, _, err := e.conn.Children(zklayout.ConsumerIDs(chroot, "m")); err != nil || len(ids) > 0 {
		t.Errorf("registrations after the replay: %v %v", ids, err)
	}
}

// TestReplayRefusals: a module that is not enabled, one without a
// dead-letter topic, and Kafka not answering are errors that say so.
func TestReplayRefusals(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	plain := module("plain", "t", "127.0.0.1:1")
	withDLQ := module("m", "t", "127.0.0.1:1")
	withDLQ.DeadLetterTopic = "dlq"
	cfg := e.config(t, 0, plain, withDLQ)
	for _, c := range []struct {
		module string
		want   string
	}{
		{"nope", `-replay-dead-letters nope: no such module in module_enabled ["plain" "m"]`},
		{"plain", "-replay-dead-letters plain: modules/plain.yaml sets no dead_letter_topic"},
	} {
		if _, err := ktransfer.Replay(context.Background(), cfg, c.module, time.Time{}, testLog(t)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want %q", c.module, err, c.want)
		}
	}
	cfg.BrokerHosts = []string{"127.0.0.1:1"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := ktransfer.Replay(ctx, cfg, "m", time.Time{}, testLog(t)); err == nil || !strings.Contains(err.Error(), "kafka [127.0.0.1:1]: list start offsets of dlq") {
		t.Errorf("Kafka not answering: %v", err)
	}
}

// deadLetterOf is a dead letter of module of the record at topic/0/offset,
// with the headers module.deadLetter writes.
func deadLetterOf(module, topic string, offset int, value string) *kgo.Record {
	return &kgo.Record{Topic: "dlq", Key: []byte(value), Value: []byte(value), Headers: []kgo.RecordHeader{
		{Key: "ktransfer-module", Value: []byte(module)}, {Key: "ktransfer-reason", Value: []byte("status 400")},
		{Key: "ktransfer-topic", Value: []byte(topic)}, {Key: "ktransfer-partition", Value: []byte("0")},
		{Key: "ktransfer-offset", Value: []byte(strconv.Itoa(offset))}}}
}

// inTransaction begins a transaction of a new transactional producer and
// writes rec in it; the caller ends it.
func (e *env) inTransaction(t *testing.T, id string, rec *kgo.Record) *kgo.Client {
	t.Helper()
	cl := kafkatest.Client(t, e.kafka, e.kc, kgo.TransactionalID(id))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatalf("produce in transaction %s: %v", id, err)
	}
	return cl
}

// endTransaction commits or aborts cl's transaction.
func endTransaction(t *testing.T, cl *kgo.Client, commit kgo.TransactionEndTry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.EndTransaction(ctx, commit); err != nil {
		t.Fatalf("end transaction: %v", err)
	}
}

// dlqModule starts a Kafka with topic t and dead-letter topic dlq (one
// partition each) and a backend answering with respond (nil: 200), and
// returns module m of t pushing to it with dead_letter_topic dlq.
func dlqModule(t *testing.T, respond func(n int, p push, w http.ResponseWriter)) (*env, *backend, ktransfer.Module) {
	t.Helper()
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	b := newBackend(t, respond)
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dlq"
	return e, b, m
}

// replayWithin runs Replay, failing the test when it has not returned
// within limit.
func replayWithin(t *testing.T, cfg ktransfer.Config, limit time.Duration) ktransfer.ReplayReport {
	t.Helper()
	return replayLogging(t, cfg, limit, testLog(t))
}

// replayLogging is replayWithin logging to log.
func replayLogging(t *testing.T, cfg ktransfer.Config, limit time.Duration, log *slog.Logger) ktransfer.ReplayReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	rep, err := ktransfer.Replay(ctx, cfg, "m", time.Time{}, log)
	if err != nil {
		t.Fatalf("replay after %v: %v (%v)", time.Since(start).Round(time.Millisecond), err, rep)
	}
	return rep
}

// TestReplayPastAnAbortedTransaction: the dead-letter topic holds m's dead
// letter at offset 0, then transaction A's record at 1 and transaction B's
// at 2; A aborts while B stays open, so the topic's end for a committed
// reader is 2 and the record at end-1 is never delivered. B commits 2 s
// into the replay: the replay ends with the one dead letter, without
// waiting for offset 1.
func TestReplayPastAnAbortedTransaction(t *testing.T) {
	e, b, m := dlqModule(t, nil)
	e.produceRecords(t, deadLetterOf("m", "t", 0, "committed"))
	a := e.inTransaction(t, "a", deadLetterOf("m", "t", 1, "aborted"))
	bt := e.inTransaction(t, "b", deadLetterOf("m", "t", 2, "after the end"))
	endTransaction(t, a, kgo.TryAbort)
	go func() {
		time.Sleep(2 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		bt.EndTransaction(ctx, kgo.TryCommit) // checked by the report: its record is past the end either way
	}()
	rep := replayWithin(t, e.config(t, 0, m), 20*time.Second)
	if rep.Replayed != 1 || rep.GivenUp != 0 || rep.Skipped != 0 || rep.Others != 0 {
		t.Errorf("replay: %v; want the 1 committed dead letter", rep)
	}
	if got := b.got(); len(got) != 1 || got[0].body != "committed" {
		t.Errorf("pushes %+v; want only the committed dead letter", got)
	}
}

// TestReplayEndsOnAnAbortMarker: the last offset before the end is the
// abort marker of a transaction whose record is not delivered.
func TestReplayEndsOnAnAbortMarker(t *testing.T) {
	e, _, m := dlqModule(t, nil)
	e.produceRecords(t, deadLetterOf("m", "t", 0, "committed"))
	endTransaction(t, e.inTransaction(t, "a", deadLetterOf("m", "t", 1, "aborted")), kgo.TryAbort)
	if end := kafkatest.EndOffsets(t, e.kafka, e.kc, "dlq")[0]; end != 3 {
		t.Fatalf("end offset %d, want 3 (record, aborted record, abort marker)", end)
	}
	rep := replayWithin(t, e.config(t, 0, m), 20*time.Second)
	if rep.Replayed != 1 || rep.GivenUp != 0 || rep.Skipped != 0 {
		t.Errorf("replay: %v; want the 1 committed dead letter", rep)
	}
}

// TestReplayBoundedBehindAnOpenTransaction: as above, but B stays open for
// the whole replay: nothing at or past the end can be read, and the
// replay ends once the partition has been quiet for the bound.
func TestReplayBoundedBehindAnOpenTransaction(t *testing.T) {
	defer ktransfer.SetReplayQuiet(time.Second)()
	e, _, m := dlqModule(t, nil)
	e.produceRecords(t, deadLetterOf("m", "t", 0, "committed"))
	a := e.inTransaction(t, "a", deadLetterOf("m", "t", 1, "aborted"))
	bt := e.inTransaction(t, "b", deadLetterOf("m", "t", 2, "open"))
	endTransaction(t, a, kgo.TryAbort)
	var logs runtest.Log
	rep := replayLogging(t, e.config(t, 0, m), 20*time.Second, slog.New(slog.NewTextHandler(&logs, nil)))
	// Past the end: B's record at 2 and A's abort marker at 3.
	if rep.Replayed != 1 || rep.GivenUp != 0 || rep.Skipped != 0 || rep.PastEnd != 2 {
		t.Errorf("replay: %v; want the 1 committed dead letter, 2 offsets past the end", rep)
	}
	if !strings.Contains(logs.String(), "records past the end") || !strings.Contains(rep.String(), ", past the end 2, ") {
		t.Errorf("no warning of the records past the end; report %q, logs:\n%s", rep, logs.String())
	}
	endTransaction(t, bt, kgo.TryCommit)
}

// replayOfThree writes three dead letters of m below the end, sets up
// faults on the broker, and runs a replay within limit.
func replayOfThree(t *testing.T, limit time.Duration, faults func(*kafkatest.Faults)) (ktransfer.ReplayReport, error) {
	t.Helper()
	e, b, m := dlqModule(t, nil)
	e.produceRecords(t, deadLetterOf("m", "t", 0, "a"), deadLetterOf("m", "t", 1, "b"), deadLetterOf("m", "t", 2, "c"))
	faults(kafkatest.NewFaults(t, e.kafka))
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	rep, err := ktransfer.Replay(ctx, e.config(t, 0, m), "m", time.Time{}, testLog(t))
	t.Logf("replay after %v: %v, err %v; the backend got %d pushes", time.Since(start).Round(time.Millisecond), rep, err, len(b.got()))
	return rep, err
}

// TestReplayWaitsForASlowBroker: committed dead letters below the end
// that the broker delivers late (a fetch answered after the quiet bound,
// fetches failing and retried inside the client, where the replay never
// sees them) are waited for: the replay ends with all three, not early
// as if the rest were aborted.
func TestReplayWaitsForASlowBroker(t *testing.T) {
	defer ktransfer.SetReplayQuiet(time.Second)()
	for _, c := range []struct {
		name   string
		faults func(*kafkatest.Faults)
	}{
		{"one fetch held 3 s", func(f *kafkatest.Faults) { f.Sleep(int16(kmsg.Fetch), 1, 3*time.Second) }},
		{"8 fetches failing", func(f *kafkatest.Faults) { f.CloseConn(int16(kmsg.Fetch), 8) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep, err := replayOfThree(t, 20*time.Second, c.faults)
			if err != nil || rep.Replayed != 3 || len(rep.Unfinished) != 0 {
				t.Errorf("replay: %v, err %v; want the 3 committed dead letters", rep, err)
			}
		})
	}
}

// TestReplayWaitsForASlowBrokerDefaultBound: as above with the default
// quiet bound (10 s) and one fetch held for 12 s.
func TestReplayWaitsForASlowBrokerDefaultBound(t *testing.T) {
	rep, err := replayOfThree(t, 30*time.Second, func(f *kafkatest.Faults) { f.Sleep(int16(kmsg.Fetch), 1, 12*time.Second) })
	if err != nil || rep.Replayed != 3 {
		t.Errorf("replay: %v, err %v; want the 3 committed dead letters", rep, err)
	}
}

// TestReplayGivesUpOnAnAbsentBroker: every fetch fails for longer than
// the replay waits: it ends with an error naming the partition, its
// position and end, and reports it unfinished; never done with records
// missing.
func TestReplayGivesUpOnAnAbsentBroker(t *testing.T) {
	defer ktransfer.SetReplayQuiet(500 * time.Millisecond)()
	defer ktransfer.SetReplayStall(3 * time.Second)()
	rep, err := replayOfThree(t, 20*time.Second, func(f *kafkatest.Faults) { f.CloseConn(int16(kmsg.Fetch), 1_000_000) })
	if err == nil || !strings.Contains(err.Error(), "partition 0: dead letters from offset 0 below the end 3 not read for ") {
		t.Errorf("replay error %v; want one naming partition 0, its position 0 and end 3", err)
	}
	want := []ktransfer.UnfinishedPartition{{Partition: 0, Position: 0, End: 3}}
	if rep.Replayed != 0 || !slices.Equal(rep.Unfinished, want) || !strings.Contains(rep.String(), "; partition 0 unfinished at 0 of 3") {
		t.Errorf("report %v; want partition 0 unfinished at 0 of 3", rep)
	}
}

// TestReplaySkipsDeadLettersWithoutModule: a record in the dead-letter
// topic without a ktransfer-module header is not another module's dead
// letter: it is skipped as one without its origin headers.
func TestReplaySkipsDeadLettersWithoutModule(t *testing.T) {
	e, _, m := dlqModule(t, nil)
	noModule := deadLetterOf("m", "t", 1, "no module")
	noModule.Headers = noModule.Headers[1:]
	e.produceRecords(t, deadLetterOf("m", "t", 0, "mine"), noModule, &kgo.Record{Topic: "dlq", Value: []byte("bare")},
		deadLetterOf("other", "t", 2, "other's"))
	rep := replayWithin(t, e.config(t, 0, m), 20*time.Second)
	if rep.Replayed != 1 || rep.Skipped != 2 || rep.Others != 1 {
		t.Errorf("replay: %v; want 1 replayed, 2 skipped (no ktransfer-module), 1 other module's", rep)
	}
}

// TestReplayWarnsOfDeadLettersWithoutOriginalHeaders: dead letters written
// before they kept the record's own headers have the ktransfer-* headers
// only. With target_header such a dead letter goes to the module's uri:
// the replay pushes it there, warns and counts it.
func TestReplayWarnsOfDeadLettersWithoutOriginalHeaders(t *testing.T) {
	e, b, m := dlqModule(t, nil)
	m.Protocol.TargetHeader = "target"
	withTarget := deadLetterOf("m", "t", 0, "with target")
	withTarget.Headers = append(withTarget.Headers, kgo.RecordHeader{Key: "target", Value: []byte(b.URL + "/hook")})
	e.produceRecords(t, withTarget, deadLetterOf("m", "t", 1, "old"))
	var logs runtest.Log
	rep := replayLogging(t, e.config(t, 0, m), 20*time.Second, slog.New(slog.NewTextHandler(&logs, nil)))
	if rep.Replayed != 2 || rep.WithoutHeaders != 1 || rep.Skipped != 0 {
		t.Errorf("replay: %v; want 2 replayed, 1 without original headers", rep)
	}
	if s := rep.String(); !strings.Contains(s, ", without original headers 1, ") {
		t.Errorf("report %q does not count the dead letter without original headers", s)
	}
	paths := map[string]string{}
	for _, p := range b.got() {
		paths[p.body] = p.path
	}
	if paths["with target"] != "/hook" || paths["old"] != "/push/t" {
		t.Errorf("pushed to %v; want the target for the one with headers, the module's uri for the old one", paths)
	}
	if text := logs.String(); strings.Count(text, "level=WARN msg=\"dead letter without the record's own headers") != 1 || !strings.Contains(text, "offset=1") {
		t.Errorf("want one warning naming offset 1:\n%s", text)
	}
}

// TestReplayBackendDown: a replay while the module's backend is still
// down ends, every dead letter given up again after max_retry_times, as
// without breakers: its open breaker is a failed attempt (waiting for its
// trials, the replay never ended).
func TestReplayBackendDown(t *testing.T) {
	for _, failures := range []int{0, 1} {
		t.Run("breaker_failures="+strconv.Itoa(failures), func(t *testing.T) {
			e, b, m := dlqModule(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(500) })
			m.MaxRetryTimes = 1
			m.BreakerFailures, m.BreakerCooldownMs = failures, 20000
			var recs []*kgo.Record
			for i := range 20 {
				recs = append(recs, &kgo.Record{Topic: "dlq", Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v"), Headers: []kgo.RecordHeader{
					{Key: "ktransfer-module", Value: []byte("m")}, {Key: "ktransfer-topic", Value: []byte("t")},
					{Key: "ktransfer-partition", Value: []byte("0")}, {Key: "ktransfer-offset", Value: []byte(strconv.Itoa(i))}}})
			}
			e.produceRecords(t, recs...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			rep, err := ktransfer.Replay(ctx, e.config(t, 0, m), "m", time.Time{}, testLog(t))
			t.Logf("replay returned after %v: %v, err %v; the backend got %d pushes",
				time.Since(start).Round(time.Millisecond), rep, err, len(b.got()))
			if err != nil || rep.GivenUp != 20 || rep.Replayed != 0 {
				t.Errorf("replay with the backend down: %v, %v; want 20 given up, no error", rep, err)
			}
			if failures > 0 && len(b.got()) > m.WorkerNum+1 {
				t.Errorf("the backend got %d pushes with its breaker open", len(b.got()))
			}
		})
	}
}
