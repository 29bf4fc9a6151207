package ktransfer_test

import (
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/tcpproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// fleetCutSeed drives the schedule of TestFleetReassignsThroughZooKeeperConnectionCuts:
// the moments of the cuts and their lengths. The number of events is fixed.
const fleetCutSeed = 20261202

// TestFleetReassignsThroughZooKeeperConnectionCuts attacks the fleet's
// promises (README, "Fleet"; DESIGN, "Fleet" and "Fencing") when
// reassignment rounds are cut short by ZooKeeper read errors. Three
// processes share module m over 8 partitions while keyed records are
// produced all along. Process a reaches ZooKeeper through a proxy that
// cuts its connection again and again (held for up to 300 ms first, far
// below the session timeout: the session lives, the requests in flight
// fail with a connection error, so a round of a's stops in the middle of
// its reads). Meanwhile process b stops and starts again, four times: every
// time, the fleet's rounds move partitions. Checked over the whole history
// of the sink (every push, its process and epoch):
//  1. every record produced is pushed at least once;
//  2. per key, the first copies arrive in order;
//  3. never two processes pushing one partition at a time: in the order
//     pushes arrive, a partition's epoch never goes back, and each epoch
//     is one process's; the stored offsets never move back;
//  4. a partition's records pushed again are at most window_size per
//     move of the partition;
//  5. once the cuts stop, every partition has one owner, a live process
//     holding it, the shares balanced, every record produced since is
//     pushed, and every window is empty.
//
// Before, a round of a's that failed only to read an owner node counted as
// done: that partition, a's to claim (or holding a's node from a claim
// whose answer was lost), stayed unpushed until another change or the
// periodic check. About 1 run in 30 then waited past the 20 s bound.
func TestFleetReassignsThroughZooKeeperConnectionCuts(t *testing.T) {
	// Only watches and a's own retries move partitions: the periodic
	// recomputation, which would mend a change a missed, is a minute away.
	t.Cleanup(ktransfer.SetPartitionPoll(time.Minute)) // restored after the fleet stopped
	rng := rand.New(rand.NewPCG(fleetCutSeed, fleetCutSeed))
	t.Logf("seed %d", fleetCutSeed)
	const partitions = 8
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: partitions})
	px, err := tcpproxy.Start(e.zkAdr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	sinks := map[string]*backend{"a": newBackend(t, nil), "b": newBackend(t, nil), "c": newBackend(t, nil)}
	m := func(name string) ktransfer.Module { return module("m", "t", sinks[name].URL) }
	var aLog, bLog, cLog runtest.Log
	a := e.startThrough(t, px.Addr(), cutLog(&aLog), m("a"))
	c := e.startThrough(t, e.zkAdr, cutLog(&cLog), m("c"))
	b := e.startThrough(t, e.zkAdr, cutLog(&bLog), m("b"))
	t.Cleanup(func() {
		if t.Failed() {
			logClaims(t, mergePushes(sinks))
			t.Logf("a's log:\n%s\nb's:\n%s\nc's:\n%s", aLog.String(), bLog.String(), cLog.String())
		}
	})
	waitFor(t, "the 8 partitions shared by the three processes", 20*time.Second, func() bool {
		return settled(t, e, []*running{a, b, c}, partitions)
	})
	offsets := e.watchOffsets(t, "m", "t", partitions)
	traffic := e.startKeyedTraffic(t, 400, "t") // 400 keys: every partition has some (40 leave 7 empty)

	// cutA cuts a's connection twice in the rounds that follow a change of
	// the fleet: a random 0-400 ms after the change or the last cut,
	// frozen for a random 0-300 ms first (what a sends meanwhile fails at
	// the cut). Before the next, a has ZooKeeper's answer again: its
	// session is never near its grace.
	cuts := 0
	cutA := func() {
		for range 2 {
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
			px.Freeze()
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			cuts += px.Cut()
			px.Thaw()
			at := time.Now()
			waitFor(t, "a answered by ZooKeeper after a cut", 10*time.Second, func() bool {
				return ktransfer.LastAnswer(a.tr).After(at)
			})
		}
	}
	var slowest time.Duration
	settle := func(what string, live ...*running) {
		t.Helper()
		start := time.Now()
		waitFor(t, what, 20*time.Second, func() bool { return settled(t, e, live, partitions) })
		slowest = max(slowest, time.Since(start))
		time.Sleep(time.Duration(200+rng.IntN(400)) * time.Millisecond) // the new owners push
	}
	for range 4 {
		stopped := make(chan error, 1)
		go func() { stopped <- b.stop() }()
		cutA()
		if err := <-stopped; err != nil {
			t.Fatalf("stop b: %v", err)
		}
		settle("a and c to hold the 8 partitions after b stopped", a, c)
		b = e.startThrough(t, e.zkAdr, cutLog(&bLog), m("b"))
		cutA()
		settle("the three processes to share the 8 partitions after b started", a, b, c)
	}
	produced := traffic.finish()

	// 5. Settled: one live owner per partition, as the processes see it
	// and as ZooKeeper says, the shares balanced; everything pushed.
	live := []*running{a, b, c}
	settle("every partition held by one live process, balanced, after the cuts", live...)
	e.produce(t, "t", [][2]string{{"k0", "after-0"}, {"k1", "after-1"}, {"k2", "after-2"}, {"k3", "after-3"}})
	history := func() []fleetPush { return mergePushes(sinks) }
	waitFor(t, "every record pushed", 30*time.Second, func() bool {
		return distinctBodies(history()) == produced+4
	})
	waitFor(t, "every window empty", 10*time.Second, func() bool {
		for _, r := range live {
			if r.tr.Status()[0].WindowUsed != 0 {
				return false
			}
		}
		return true
	})
	if back := offsets.stop(); back != "" {
		t.Errorf("a stored offset moved back: %s", back)
	}

	h := history()
	checkFirstCopiesInOrder(t, h)
	moves := checkFencedPushes(t, h)
	repeated := checkRepeatsWithinWindow(t, h, module("m", "t").WindowSize)
	failed := strings.Count(aLog.String(), "reassignment failed")
	t.Logf("%d records, %d pushes (%d repeated), %d partition moves, %d connections of a cut, %d of a's rounds cut short (%d more read owner nodes in part), %d owner nodes a left to delete later, %d claims of a lost, slowest settling %v",
		produced+4, len(h), repeated, moves, cuts, failed, strings.Count(aLog.String(), "owner nodes cannot be read"),
		strings.Count(aLog.String(), "owner node not deleted"), strings.Count(aLog.String(), "partition lost"), slowest.Round(time.Millisecond))
	if cuts == 0 || failed == 0 {
		t.Errorf("%d connections cut, %d rounds failed: no round of a was cut short, the test proves nothing", cuts, failed)
	}
}

// logClaims logs, per partition, the claims that pushed it in the order
// their pushes arrived (process:epoch).
func logClaims(t *testing.T, h []fleetPush) {
	t.Helper()
	claims := map[string][]string{}
	for _, p := range h {
		c := p.process + ":" + strconv.FormatInt(p.epoch, 10)
		if l := claims[p.partition]; len(l) == 0 || l[len(l)-1] != c {
			claims[p.partition] = append(l, c)
		}
	}
	for _, part := range slices.Sorted(maps.Keys(claims)) {
		t.Logf("partition %s pushed by %v", part, claims[part])
	}
}

// startThrough runs a Transfer of modules that reaches ZooKeeper at zkAddr
// (a proxy in front of e's), logging to log.
func (e *env) startThrough(t *testing.T, zkAddr string, log *slog.Logger, modules ...ktransfer.Module) *running {
	t.Helper()
	cfg := e.config(t, 0, modules...)
	cfg.ZKHosts = []string{zkAddr}
	tr, err := ktransfer.New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &running{tr: tr, stop: runtest.Start(t, tr.Run, 20*time.Second)}
}

// cutLog logs to l, and to stderr too when KTRANSFER_TEST_LOG is set.
func cutLog(l *runtest.Log) *slog.Logger {
	var w io.Writer = l
	if os.Getenv("KTRANSFER_TEST_LOG") != "" {
		w = io.MultiWriter(l, os.Stderr)
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// settled reports whether each of the n partitions is held by exactly one
// of the live processes, the owner node naming it, and the shares
// balanced (counts differ by at most one).
func settled(t *testing.T, e *env, live []*running, n int) bool {
	owners := e.owners(t, "m", "t")
	held := map[string]string{}
	count := map[string]int{}
	for _, r := range live {
		for _, p := range r.tr.Status()[0].Partitions {
			key := strconv.Itoa(int(p.Partition))
			if _, twice := held[key]; twice {
				return false
			}
			held[key] = r.tr.ID()
			count[r.tr.ID()]++
		}
	}
	if len(held) != n || len(owners) != n {
		return false
	}
	for p, id := range held {
		if owners[p] != id {
			return false
		}
	}
	least, most := n, 0
	for _, r := range live {
		least, most = min(least, count[r.tr.ID()]), max(most, count[r.tr.ID()])
	}
	return most-least <= 1
}

// fleetPush is a push as the sink of one process received it.
type fleetPush struct {
	push
	process string
}

// mergePushes is every sink's pushes, tagged with their process, in the
// order they arrived.
func mergePushes(sinks map[string]*backend) []fleetPush {
	var out []fleetPush
	for name, b := range sinks {
		for _, p := range b.got() {
			out = append(out, fleetPush{push: p, process: name})
		}
	}
	slices.SortStableFunc(out, func(x, y fleetPush) int { return x.at.Compare(y.at) })
	return out
}

func distinctBodies(h []fleetPush) int {
	seen := map[string]bool{}
	for _, p := range h {
		seen[p.body] = true
	}
	return len(seen)
}

// checkFirstCopiesInOrder: per key, no record is first pushed after a
// later record of the key was.
func checkFirstCopiesInOrder(t *testing.T, h []fleetPush) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]int{}
	for _, p := range h {
		if seen[p.body] {
			continue // pushed again
		}
		seen[p.body] = true
		v, err := strconv.Atoi(p.body)
		if err != nil {
			continue // produced after the cuts, in its own order
		}
		if prev, ok := last[p.key]; ok && v < prev {
			t.Errorf("key %s: record %d first pushed (by %s, partition %s, epoch %d) after %d", p.key, v, p.process, p.partition, p.epoch, prev)
			return
		}
		last[p.key] = max(last[p.key], v)
	}
}

// checkFencedPushes: in the order pushes arrived, a partition's epoch
// never goes back (a process pushed a partition another had claimed
// since), and an epoch is one process's. It returns how many times
// partitions moved (the epochs seen beyond each partition's first).
func checkFencedPushes(t *testing.T, h []fleetPush) (moves int) {
	t.Helper()
	newest := map[string]fleetPush{}
	by := map[int64]string{}
	for _, p := range h {
		if p.epoch <= 0 {
			t.Errorf("push of partition %s offset %s by %s without an epoch", p.partition, p.offset, p.process)
			continue
		}
		if other, ok := by[p.epoch]; ok && other != p.process {
			t.Errorf("epoch %d pushed by %s and by %s", p.epoch, other, p.process)
		}
		by[p.epoch] = p.process
		n, ok := newest[p.partition]
		switch {
		case !ok:
		case p.epoch < n.epoch:
			t.Errorf("partition %s: push of offset %s with epoch %d (%s) arrived %v after one with epoch %d (%s): two processes pushed it at once",
				p.partition, p.offset, p.epoch, p.process, p.at.Sub(n.at), n.epoch, n.process)
			continue
		case p.epoch > n.epoch:
			moves++
		}
		newest[p.partition] = p
	}
	return moves
}

// checkRepeatsWithinWindow: a partition's records pushed more than once
// are at most window per move of the partition (the records pushed but
// not committed when it moved). It returns how many pushes repeated one.
func checkRepeatsWithinWindow(t *testing.T, h []fleetPush, window int) (repeated int) {
	t.Helper()
	copies := map[string]int{}
	repeats := map[string]int{}
	epochs := map[string]map[int64]bool{}
	for _, p := range h {
		if copies[p.body]++; copies[p.body] > 1 {
			repeats[p.partition]++
			repeated++
		}
		if epochs[p.partition] == nil {
			epochs[p.partition] = map[int64]bool{}
		}
		epochs[p.partition][p.epoch] = true
	}
	for part, n := range repeats {
		if bound := (len(epochs[part]) - 1) * window; n > bound {
			t.Errorf("partition %s: %d records pushed again over %d claims, more than window_size %d per move", part, n, len(epochs[part]), window)
		}
	}
	return repeated
}

// offsetWatch polls a module's stored offsets and notes the first that
// moved back.
type offsetWatch struct {
	done chan struct{}
	wg   sync.WaitGroup
	back string
}

func (e *env) watchOffsets(t *testing.T, module, topic string, partitions int) *offsetWatch {
	t.Helper()
	w := &offsetWatch{done: make(chan struct{})}
	dir := zklayout.Offsets(chroot, module, topic)
	w.wg.Go(func() {
		last := make([]int64, partitions)
		for {
			select {
			case <-w.done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			for p := range partitions {
				data, _, err := e.conn.Get(dir + "/" + strconv.Itoa(p))
				if err != nil {
					continue
				}
				v, err := zklayout.ParseOffset(data)
				if err != nil {
					continue
				}
				if v < last[p] && w.back == "" {
					w.back = "partition " + strconv.Itoa(p) + ": " + strconv.FormatInt(last[p], 10) + " then " + strconv.FormatInt(v, 10)
				}
				last[p] = max(last[p], v)
			}
		}
	})
	t.Cleanup(func() { w.stop() })
	return w
}

// stop ends the polling and returns the first offset that moved back, ""
// when none did; idempotent.
func (w *offsetWatch) stop() string {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.wg.Wait()
	return w.back
}
