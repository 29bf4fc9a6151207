package kproxy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestSpoolDrainRefusedTopicMemoryWithinBudget: a topic Kafka keeps
// refusing (writing denied) with far more records in the spool than the
// drain's memory for parked records (parkBudget). Each retry reads some
// back from the spool (fillParked) and Kafka refuses them again: the
// parked records in memory stay within parkBudget (a record past it at
// most: one is read back even when the budget is full), the rest waits in
// the spool only, retry after retry. Once Kafka takes the topic again,
// every record is in Kafka once, in order.
func TestSpoolDrainRefusedTopicMemoryWithinBudget(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	var refusing atomic.Bool
	var refusals atomic.Int64
	refusing.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !refusing.Load() {
			return nil, nil, false
		}
		refusals.Add(1)
		return deniedProduce(req.(*kmsg.ProduceRequest)), nil, true
	})
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolAfterMs = 200 })
	const budget, recs, batch = 1 << 20, 6000, 500 // 6000 records of 8 KiB: 47 MiB
	s.parkBudget = budget
	pad := strings.Repeat("v", 8<<10)
	for i := 0; i < recs; i += batch {
		rs := make([]spool.Record, batch)
		for j := range rs {
			rs[j] = spool.Record{Topic: "a", Key: []byte("k"), Value: []byte(fmt.Sprintf("%05d%s", i+j, pad))}
		}
		if _, err := s.sp.Append(rs); err != nil {
			t.Fatal(err)
		}
	}
	recBytes := parkedCost(spool.Entry{Record: spool.Record{Key: []byte("k"), Value: []byte("00000" + pad)}})
	s.start()
	defer s.close(context.Background())

	// Refused until the first chunk and the retries after 1 s and 3 s
	// were (on a loaded machine they come later: waited for, up to 20 s).
	peak := 0
	for deadline := time.Now().Add(20 * time.Second); refusals.Load() < 3 && time.Now().Before(deadline); {
		s.dmu.Lock()
		peak = max(peak, s.parkedBytes)
		s.dmu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	s.dmu.Lock()
	peak = max(peak, s.parkedBytes)
	s.dmu.Unlock()
	refusing.Store(false)
	t.Logf("parked bytes in memory while refused: peak %d KiB (budget %d KiB, a record %d B), %d produce requests refused",
		peak>>10, budget>>10, recBytes, refusals.Load())
	if limit := budget + recBytes; peak > limit {
		t.Errorf("parked records in memory peaked at %d bytes, past the budget and a record (%d bytes)", peak, limit)
	}
	if peak == 0 || refusals.Load() < 3 {
		t.Fatalf("peak %d bytes, %d produce requests refused: the drain did not retry the refused topic", peak, refusals.Load())
	}
	if p := s.sp.Pending("a"); p != recs {
		t.Fatalf("pending %d records of a while Kafka refused them all, want %d", p, recs)
	}

	deadline := time.Now().Add(60 * time.Second)
	for s.sp.Stats().Records != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not drained 60 s after Kafka took a again: %d records left", s.sp.Stats().Records)
		}
		s.dmu.Lock()
		peak = max(peak, s.parkedBytes)
		s.dmu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	if limit := budget + recBytes; peak > limit {
		t.Errorf("parked records in memory peaked at %d bytes while draining, past the budget and a record (%d bytes)", peak, limit)
	}
	got := kafkatest.ReadAll(t, c, kafkaconf.Default(), "a")
	if len(got) != recs {
		t.Fatalf("%d records of a in Kafka, want %d once each", len(got), recs)
	}
	for i, r := range got {
		if want := fmt.Sprintf("%05d", i); string(r.Value[:5]) != want {
			t.Fatalf("record %d of a in Kafka is %s, want %s: out of order or duplicated", i, r.Value[:5], want)
		}
	}
}

// deniedProduce answers pr with TOPIC_AUTHORIZATION_FAILED (writing
// denied) for every partition in it, writing nothing.
func deniedProduce(pr *kmsg.ProduceRequest) *kmsg.ProduceResponse {
	return kafkatest.ProduceError(pr, kerr.TopicAuthorizationFailed.Code)
}

// TestSpoolDrainParkedShareReadBack: topic r, which Kafka keeps refusing
// (writing denied), holds parkBudget with its records; topic s, parked
// behind it (refused for a while) with a backlog of many times its share
// left in the spool, is then taken again. r is trimmed to its share
// (parkBudget over the parked topics) at its next refusal, and s is read
// back up to its share per chunk: its backlog drains within seconds (it
// used to be read back a record per chunk, r keeping the budget full),
// every record in Kafka once, in key order.
func TestSpoolDrainParkedShareReadBack(t *testing.T) { testParkedShareReadBack(t, false) }

// TestSpoolDrainParkedShareRefusedFirst: as
// TestSpoolDrainParkedShareReadBack, but r is refused again (its long
// pause) before s is parked: r's share was then the whole budget, and it
// is not refused again while s drains. r is trimmed to its share when s
// is read back (fillParked), not at r's next refusal, up to 30 s later,
// until which s was read back a record per chunk.
func TestSpoolDrainParkedShareRefusedFirst(t *testing.T) { testParkedShareReadBack(t, true) }

// testParkedShareReadBack runs TestSpoolDrainParkedShareReadBack; with
// refusedFirst, r's long pause starts before s is parked.
func testParkedShareReadBack(t *testing.T, refusedFirst bool) {
	t.Helper()
	const r, sTopic = "r", "s"
	c := kafkatest.StartBrokers(t, 2, []kafkatest.Topic{{Name: r, Partitions: 1}, {Name: sTopic, Partitions: 1}})
	for topic, node := range map[string]int32{r: 1, sTopic: 0} { // a produce request holds one of them
		if err := c.MoveTopicPartition(topic, 0, node); err != nil {
			t.Fatal(err)
		}
	}
	var sRefusing atomic.Bool
	var rRefused, sRefused, sTaken atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if c.CurrentNode() == 1 {
			rRefused.Add(1)
		} else if sRefusing.Load() {
			sRefused.Add(1)
		} else {
			sTaken.Add(1)
			return nil, nil, false
		}
		return deniedProduce(req.(*kmsg.ProduceRequest)), nil, true
	})
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolAfterMs = 200 })
	const budget, recBytes, keys = 1 << 20, 512, 4
	const nR, nS = 2 * budget / recBytes, 16 * budget / 2 / recBytes // s: 16 shares
	s.parkBudget = budget
	pad := strings.Repeat("v", recBytes)
	appendRecs := func(topic string, n int) {
		t.Helper()
		rs := make([]spool.Record, n)
		for i := range rs {
			key := topic + strconv.Itoa(i%keys)
			rs[i] = spool.Record{Topic: topic, Key: []byte(key), Value: []byte(fmt.Sprintf("%s#%05d#%s", key, i, pad[:recBytes-len(key)-8]))}
		}
		if _, err := s.sp.Append(rs); err != nil {
			t.Fatal(err)
		}
	}
	// waitFor polls cond (s.dmu held) for up to 10 s.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			s.dmu.Lock()
			ok := cond()
			s.dmu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10 s (r refused %d times, s %d)", what, rRefused.Load(), sRefused.Load())
			}
		}
	}
	appendRecs(r, nR)
	s.start()
	defer s.close(context.Background())
	recCost := parkedCost(spool.Entry{Record: spool.Record{Value: make([]byte, recBytes)}})
	waitFor("r parked, holding the budget", func() bool { return s.parked[r] != nil && s.parkedBytes > budget-recCost })

	// r refused for long: its next pause is 20 s (30 s after it), no retry
	// of it while s drains (its records out in a chunk would leave the
	// budget to s meanwhile).
	pauseR := func() {
		t.Helper()
		s.dmu.Lock()
		s.pause[r] = 20 * time.Second
		s.dmu.Unlock()
		waitFor("r refused again", func() bool { return s.pause[r] == 30*time.Second && s.parked[r].timer })
	}
	if refusedFirst {
		pauseR()
	}
	sRefusing.Store(true)
	appendRecs(sTopic, nS)
	if refusedFirst { // appended directly: wake the idle drain as push does
		s.dmu.Lock()
		s.onlyParked = false
		s.wakeLocked()
		s.dmu.Unlock()
	}
	waitFor("s parked, left in the spool", func() bool { p := s.parked[sTopic]; return p != nil && p.disk && !p.aside })
	if !refusedFirst {
		pauseR()
	}
	s.dmu.Lock()
	t.Logf("r holds %d bytes, share now %d", s.parked[r].bytes, s.shareLocked())
	s.dmu.Unlock()
	sRefusing.Store(false)
	healed := time.Now()

	// s's pause (4 s at most here), then its read back, a share (about
	// budget/2/recBytes records) per chunk. Read back a record per chunk
	// (r keeping the budget), s would take a produce request per record:
	// that is checked while it drains, whatever the machine's speed; the
	// time bound stops a drain that does not progress.
	const bound = 60 * time.Second
	for s.sp.Pending(sTopic) != 0 {
		if drained, n := nS-s.sp.Pending(sTopic), sTaken.Load(); drained >= 256 && n*16 > int64(drained) {
			t.Fatalf("%d of s's %d records drained in %d produce requests, %v after Kafka took s again (r, refused, holding parked memory of %d bytes: s read back about a record per chunk)",
				drained, nS, n, time.Since(healed).Round(time.Millisecond), budget)
		}
		if time.Since(healed) > bound {
			t.Fatalf("%d of s's %d records drained %v after Kafka took s again (r, refused, holding parked memory of %d bytes)",
				nS-s.sp.Pending(sTopic), nS, time.Since(healed).Round(time.Millisecond), budget)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("s's %d records drained %v after Kafka took s again, in %d produce requests; r refused %d times, s %d",
		nS, time.Since(healed).Round(time.Millisecond), sTaken.Load(), rRefused.Load(), sRefused.Load())
	// A share is about budget/2/recBytes records: s drains in some
	// nS*recBytes/(budget/2) chunks, not nS (whatever the machine's speed).
	if n := sTaken.Load(); n > nS/16 {
		t.Errorf("s's %d records took %d produce requests, more than %d: read back about a record per chunk", nS, n, nS/16)
	}
	got := kafkatest.ReadAll(t, c, kafkaconf.Default(), sTopic)
	if len(got) != nS {
		t.Fatalf("%d records of s in Kafka, want %d once each", len(got), nS)
	}
	last := map[string]int{}
	for _, rec := range got {
		key, rest, _ := strings.Cut(string(rec.Value), "#")
		i, _ := strconv.Atoi(rest[:5])
		if prev, ok := last[key]; ok && i <= prev {
			t.Fatalf("s key %s: record %d after %d in Kafka: out of order or duplicated", key, i, prev)
		}
		last[key] = i
	}
}

// TestSpoolDrainReadBackWithFullBudget: another parked topic fills
// parkBudget (b, retried, its limit to be asked again before it is fed:
// not trimmed to its share, its records about to go into a chunk), and
// topic a, left in the spool, is retried: a is read
// back a record at a time, so that it progresses, and each refusal of it
// leaves that record in the spool again, so that memory does not grow
// round after round. Once Kafka takes a record, the next one is read.
func TestSpoolDrainReadBackWithFullBudget(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}, {Name: "b", Partitions: 1}})
	s := testSpooler(t, c, nil)
	defer s.close(context.Background())
	const recLen, nb, na = 8 << 10, 8, 20
	recBytes := parkedCost(spool.Entry{Record: spool.Record{Value: make([]byte, recLen)}})
	s.parkBudget = nb * recBytes
	var rs []spool.Record
	for i := range nb + na {
		topic := "a"
		if i < nb {
			topic = "b"
		}
		rs = append(rs, spool.Record{Topic: topic, Value: []byte(fmt.Sprintf("%s%02d%s", topic, i, strings.Repeat("v", recLen-3)))})
	}
	if _, err := s.sp.Append(rs); err != nil {
		t.Fatal(err)
	}
	es, err := s.sp.Read(context.Background(), nb+na)
	if err != nil || len(es) != nb+na {
		t.Fatalf("read %d entries, err %v; want %d", len(es), err, nb+na)
	}
	s.dmu.Lock()
	pb := &parkedTopic{topic: "b", retrying: true, limit: true} // left for a later round (feedLocked)
	for _, e := range es[:nb] {
		s.parkLocked(pb, e)
	}
	pa := &parkedTopic{topic: "a", retrying: true, disk: true, diskFrom: es[nb].Seq}
	s.parked["a"], s.parked["b"] = pa, pb
	s.readTo = es[len(es)-1].Seq + 1
	s.dmu.Unlock()

	for round := range 2 * na {
		if err := s.fillParked(); err != nil {
			t.Fatal(err)
		}
		s.dmu.Lock()
		if s.parkedBytes > s.parkBudget+recBytes {
			s.dmu.Unlock()
			t.Fatalf("round %d: %d parked bytes after reading a back, past the budget (%d) and a record", round, s.parkedBytes, s.parkBudget)
		}
		fed, _, _ := s.feedLocked(nil)
		s.dmu.Unlock()
		want := es[nb+round/2].Seq // refused at even rounds, taken at odd ones
		if len(fed) != 1 || fed[0].Seq != want {
			t.Fatalf("round %d: fed %d entries (first %v), want a's entry %d alone", round, len(fed), fed, want)
		}
		if round%2 == 0 {
			s.refused(fed[0], kerr.TopicAuthorizationFailed)
		} else {
			s.sp.Ack(fed[0].Seq)
		}
		s.dmu.Lock()
		if s.parkedBytes > s.parkBudget {
			s.dmu.Unlock()
			t.Fatalf("round %d: %d parked bytes after a's refusal, past the budget (%d)", round, s.parkedBytes, s.parkBudget)
		}
		if len(pa.entries) != 0 || !pa.disk {
			s.dmu.Unlock()
			t.Fatalf("round %d: a holds %d entries in memory (disk %v), want none: b fills the budget", round, len(pa.entries), pa.disk)
		}
		pa.retrying = true // its pause is over
		s.dmu.Unlock()
	}
	if p := s.sp.Pending("a"); p != 0 {
		t.Fatalf("%d records of a pending after every one was taken, want 0", p)
	}
}

// TestSpoolDrainReadBackErrorPausesTopic: a parked topic left in the
// spool cannot be read back (its segment cannot be opened: an I/O error).
// Only that topic waits, a pause as for a refusal, counted in
// kproxy_spool_read_errors_total; the drain goes on; once the segment can
// be read, the topic's records are read back after the pause.
func TestSpoolDrainReadBackErrorPausesTopic(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	var dir string
	s := testSpooler(t, c, func(cfg *Config) { dir = cfg.SpoolDir })
	defer s.close(context.Background())
	if _, err := s.sp.Append([]spool.Record{{Topic: "a", Value: []byte("a0")}, {Topic: "a", Value: []byte("a1")}}); err != nil {
		t.Fatal(err)
	}
	es, err := s.sp.Read(context.Background(), 2)
	if err != nil || len(es) != 2 {
		t.Fatalf("read %d entries, err %v; want 2", len(es), err)
	}
	s.dmu.Lock()
	p := &parkedTopic{topic: "a", retrying: true, disk: true, diskFrom: es[0].Seq}
	s.parked["a"] = p
	s.readTo = es[1].Seq + 1
	s.dmu.Unlock()
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments %v, err %v; want one", segs, err)
	}
	if err := os.Rename(segs[0], segs[0]+".away"); err != nil {
		t.Fatal(err)
	}
	if err := s.fillParked(); err != nil {
		t.Fatalf("fillParked with a's segment unreadable: %v, want the topic paused, the drain going on", err)
	}
	s.dmu.Lock()
	retrying, timer, held := p.retrying, p.timer, len(p.entries)
	s.dmu.Unlock()
	if retrying || !timer || held != 0 {
		t.Fatalf("after the failed read back: retrying %v, pause %v, %d entries; want paused, none", retrying, timer, held)
	}
	if n := counterValue(s.m.readErrors); n != 1 {
		t.Fatalf("kproxy_spool_read_errors_total %v, want 1", n)
	}
	if err := os.Rename(segs[0]+".away", segs[0]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.dmu.Lock()
		retrying = p.retrying
		s.dmu.Unlock()
		if retrying {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a not retried 5 s after its read back failed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.fillParked(); err != nil {
		t.Fatal(err)
	}
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if len(p.entries) != 2 || p.diskFrom != es[1].Seq+1 {
		t.Fatalf("a read back: %d entries, diskFrom %d; want 2, %d", len(p.entries), p.diskFrom, es[1].Seq+1)
	}
}

// TestSpoolDrainChunkBytes: a chunk stops once its keys, values and
// headers reach drainChunkBytes, the parked records fed first (feedLocked)
// as those read after them (chunkFit), not only at drainChunk records.
func TestSpoolDrainChunkBytes(t *testing.T) {
	const recBytes = 8 << 10
	entries := func(n int) []spool.Entry {
		es := make([]spool.Entry, n)
		for i := range es {
			es[i] = spool.Entry{Seq: uint64(i), Record: spool.Record{Topic: "a", Value: make([]byte, recBytes)}}
		}
		return es
	}
	perChunk := drainChunkBytes / recBytes
	s := &spooler{parked: map[string]*parkedTopic{}, parkBudget: maxParkedBytes}
	p := &parkedTopic{topic: "a", retrying: true}
	for _, e := range entries(perChunk * 3 / 2) {
		s.parkLocked(p, e)
	}
	s.parked["a"] = p
	fed, fedBytes, _ := s.feedLocked(nil)
	if len(fed) != perChunk || fedBytes != drainChunkBytes {
		t.Fatalf("fed %d records, %d bytes; want %d, %d: a chunk's bytes", len(fed), fedBytes, perChunk, drainChunkBytes)
	}
	cost := parkedCost(entries(1)[0]) // a chunk counts recBytes, parked memory more
	if left := len(p.entries); left != perChunk/2 || s.parkedBytes != left*cost {
		t.Fatalf("%d records, %d bytes left parked; want %d, %d", left, s.parkedBytes, perChunk/2, perChunk/2*cost)
	}
	cases := []struct {
		n, maxBytes, records, want int
	}{
		{drainChunk, drainChunkBytes, 2 * perChunk, perChunk},
		{drainChunk, drainChunkBytes - 1, 2 * perChunk, perChunk}, // the record reaching it is in
		{drainChunk, drainChunkBytes, perChunk / 2, perChunk / 2},
		{10, drainChunkBytes, perChunk, 10},
		{drainChunk, 0, perChunk, 0},
		{drainChunk, 1, perChunk, 1},
	}
	for _, c := range cases {
		if got := chunkFit(entries(c.records), c.n, c.maxBytes); got != c.want {
			t.Errorf("chunkFit(%d records of %d bytes, %d, %d) = %d, want %d", c.records, recBytes, c.n, c.maxBytes, got, c.want)
		}
	}
}

// TestSpoolDrainParkedTinyRecords: a topic Kafka refuses with many
// keyless records of 1 byte, records of another topic behind them so the
// drain reads on. parkBudget used to count keys, values and headers only:
// each parked entry costs far more (the Entry itself, the copies'
// allocations), so the memory held by parked records was many times
// parkBudget (and without limit for empty values).
func TestSpoolDrainParkedTinyRecords(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}, {Name: "b", Partitions: 1}})
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return deniedProduce(req.(*kmsg.ProduceRequest)), nil, true
	})
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolAfterMs = 200 })
	const budget, n = 64 << 10, 60000
	s.parkBudget = budget
	rs := make([]spool.Record, n)
	for i := range rs {
		rs[i] = spool.Record{Topic: "a", Value: []byte{'x'}}
	}
	if _, err := s.sp.Append(rs); err != nil {
		t.Fatal(err)
	}
	if _, err := s.sp.Append([]spool.Record{{Topic: "b", Value: []byte("y")}}); err != nil {
		t.Fatal(err)
	}
	s.start()
	defer s.close(context.Background())
	var held, counted int
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		s.dmu.Lock()
		if p := s.parked["a"]; p != nil {
			held = max(held, len(p.entries)*int(unsafe.Sizeof(spool.Entry{})))
			counted = max(counted, s.parkedBytes)
		}
		s.dmu.Unlock()
	}
	t.Logf("parked entries of a: %d bytes of Entry structs alone, counted %d, budget %d", held, counted, budget)
	if held > 4*budget {
		t.Errorf("parked records of a hold %d bytes in Entry structs alone (counted %d), %dx parkBudget (%d)", held, counted, held/budget, budget)
	}
}
