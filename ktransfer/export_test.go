package ktransfer

import (
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	dto "github.com/prometheus/client_model/go"
)

// CPUTime is the process's CPU time so far (user and system).
var CPUTime = cpuTime

// SetReplayQuiet sets how long a replay waits for a partition that
// delivers nothing more below its end; the returned func restores it.
func SetReplayQuiet(d time.Duration) (restore func()) {
	old := replayQuiet
	replayQuiet = d
	return func() { replayQuiet = old }
}

// SetReplayStall sets how long a replay waits for committed dead letters
// a partition does not deliver; the returned func restores it.
func SetReplayStall(d time.Duration) (restore func()) {
	old := replayStall
	replayStall = d
	return func() { replayStall = old }
}

// SetPartitionPoll sets how often a module checks its topic's partitions
// and recomputes its assignment whatever happened; the returned func
// restores it. Set it before starting processes, restore it after they
// stopped.
func SetPartitionPoll(d time.Duration) (restore func()) {
	old := partitionPoll
	partitionPoll = d
	return func() { partitionPoll = old }
}

// SetKafkaCutoffLeast sets the least kafka_cutoff_ms a configuration may
// set (twice the partition poll); the returned func restores it. A test
// that shortens the poll to cut a process off sooner sets it too.
func SetKafkaCutoffLeast(d time.Duration) (restore func()) {
	old := kafkaCutoffLeast
	kafkaCutoffLeast = d
	return func() { kafkaCutoffLeast = old }
}

// ConfigHash is the configuration's hash shown in /status.
func ConfigHash(c Config) string { return c.hash }

// SetID names tr's instance in ids/ and owners/ in place of the one New
// made; call it before Run. A test of the assignment chooses the order of
// the fleet's ids with it.
func SetID(tr *Transfer, id string) { tr.id = id }

// LastAnswer is when the latest heartbeat ZooKeeper answered was sent:
// the partitions stop 2/3 of the session timeout after it.
func LastAnswer(tr *Transfer) time.Time { return tr.base.Add(time.Duration(tr.lastAnswer.Load())) }

// ReloadOK is ktransfer_config_last_reload_ok.
func ReloadOK(tr *Transfer) float64 {
	var m dto.Metric
	_ = tr.metrics.reloadOK.Write(&m)
	return m.GetGauge().GetValue()
}

// HoldTopicGone has the first reader that finds its topic deleted and
// created again wait, before it handles that, until one of the partitions
// it reads is being released (for 20 s at most), as when a release starts
// during the look-up of the topic's id. With unassigned, it waits until
// that partition's unassign was applied too (as the poll loop applies it
// before its next poll) while its hand-over waits for a push in progress.
// waiting is set once the reader waits; ended receives, when the hold
// ends, whether a release ended it (false: 20 s passed without one).
func HoldTopicGone(t *testing.T, unassigned bool) (waiting *atomic.Bool, ended <-chan bool) {
	waiting = new(atomic.Bool)
	endedc := make(chan bool, 1)
	var hold func(*reader)
	hold = func(r *reader) {
		if !beforeTopicGone.CompareAndSwap(&hold, nil) {
			return // another reader's, or a later find: not held
		}
		waiting.Store(true)
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if unassigned {
				r.apply()
			}
			if releaseUnderWay(r, unassigned) {
				endedc <- true
				return
			}
		}
		endedc <- false
	}
	beforeTopicGone.Store(&hold)
	t.Cleanup(func() { beforeTopicGone.Store(nil) })
	return waiting, endedc
}

// releaseUnderWay reports whether one of r's partitions is being
// released: still read, or, with unassigned, no longer read while a push
// of it is in progress.
func releaseUnderWay(r *reader, unassigned bool) bool {
	if !unassigned {
		for _, p := range r.parts {
			if p.ctx.Err() != nil {
				return true
			}
		}
		return false
	}
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	for _, p := range r.m.parts {
		if p.ctx.Err() != nil && r.parts[p.id] != p && p.pushing.Load() > 0 {
			return true
		}
	}
	return false
}

// DisturbWatch disturbs tr's arms of its watches on dirs (a module's
// ids/ or owners/ folder) until release is called (at the latest when
// the test ends): with fail, every arm fails as with the ZooKeeper
// connection down at that moment (the watcher tries again a second
// later); without, the next arm of each waits until release and then goes
// ahead, late. tries counts a folder's arms disturbed so far.
func DisturbWatch(t *testing.T, tr *Transfer, fail bool, dirs ...string) (tries func(dir string) int, release func()) {
	var mu sync.Mutex
	n := map[string]int{}
	released := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(released) }) }
	f := func(instance, dir string) error {
		select {
		case <-released:
			return nil
		default:
		}
		if instance != tr.id || !slices.Contains(dirs, dir) {
			return nil
		}
		mu.Lock()
		n[dir]++
		first := n[dir] == 1
		mu.Unlock()
		switch {
		case fail:
			return zk.ErrConnectionClosed
		case first:
			<-released
		}
		return nil
	}
	watchFault.Store(&f)
	t.Cleanup(func() {
		release()
		watchFault.Store(nil)
	})
	return func(dir string) int {
		mu.Lock()
		defer mu.Unlock()
		return n[dir]
	}, release
}

// HoldDeadLetterWrite holds the next write of a dead letter of a record of
// partition id (the first attempt or a resend) until the release of that
// partition abandons its dead-letter writes (30 s at most), as when the
// release comes between the decision to write and the write. held is
// closed once a write is held.
func HoldDeadLetterWrite(t *testing.T, id int32) (held <-chan struct{}) {
	t.Helper()
	c := make(chan struct{})
	var hold func(*partition)
	hold = func(p *partition) {
		if p.id != id || !beforeDeadLetterWrite.CompareAndSwap(&hold, nil) {
			return
		}
		close(c)
		select {
		case <-p.abandoned:
		case <-time.After(30 * time.Second):
		}
	}
	beforeDeadLetterWrite.Store(&hold)
	t.Cleanup(func() { beforeDeadLetterWrite.Store(nil) })
	return c
}

// BeforeFirstDeadLetterWrite runs do once, before the first write of a
// dead letter of a partition's record: after the module looked the
// dead-letter topic up, before the Kafka client does.
func BeforeFirstDeadLetterWrite(t *testing.T, do func()) {
	t.Helper()
	var once func(*partition)
	once = func(*partition) {
		if beforeDeadLetterWrite.CompareAndSwap(&once, nil) {
			do()
		}
	}
	beforeDeadLetterWrite.Store(&once)
	t.Cleanup(func() { beforeDeadLetterWrite.Store(nil) })
}

// DeadLetterClientTopics are the dead-letter topics tr has a client for.
func DeadLetterClientTopics(tr *Transfer) []string {
	tr.deadLetterMaxMu.Lock()
	defer tr.deadLetterMaxMu.Unlock()
	return slices.Sorted(maps.Keys(tr.deadLetterClients))
}

// LockDeadLetterTopic takes topic's dead-letter lock alone, as a write
// alone (or a client retired) held by the broker does; unlock gives it back.
func LockDeadLetterTopic(tr *Transfer, topic string) (unlock func()) {
	l := tr.deadLetterSoloLock(topic)
	l.Lock()
	return l.Unlock
}

// ShareDeadLetterTopic takes topic's dead-letter lock shared, as a write
// of the topic held by the broker does; unlock gives it back.
func ShareDeadLetterTopic(tr *Transfer, topic string) (unlock func()) {
	l := tr.deadLetterSoloLock(topic)
	l.RLock()
	return l.RUnlock
}

// WaitingForDeadLetterLock reports whether a goroutine waits in
// lockUnless for a dead-letter topic's lock.
func WaitingForDeadLetterLock() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), ".(*Transfer).lockUnless(")
}

// Releasing is how many partitions of tr's modules are being released.
func Releasing(tr *Transfer) int {
	n := 0
	for _, m := range tr.liveModules() {
		m.mu.Lock()
		n += len(m.releasing)
		m.mu.Unlock()
	}
	return n
}

// HoldClientReplace holds the ZooKeeper client replacements (the session
// watcher's, after two session timeouts without an answer) at their start
// until release is called (at the latest when the test ends); started is
// closed when the first began.
func HoldClientReplace(t *testing.T) (started <-chan struct{}, release func()) {
	began := make(chan struct{})
	released := make(chan struct{})
	var once, first sync.Once
	release = func() { once.Do(func() { close(released) }) }
	f := func() {
		first.Do(func() { close(began) })
		<-released
	}
	replaceFault.Store(&f)
	t.Cleanup(func() {
		release()
		replaceFault.Store(nil)
	})
	return began, release
}

// ZKConn is the ZooKeeper client in use.
func ZKConn(tr *Transfer) *zk.Conn { return tr.conn() }

// SessionTimeout is the session timeout the server granted.
func SessionTimeout(tr *Transfer) time.Duration { return tr.sessionTimeout() }

// SessionUp says whether the process holds a ZooKeeper session (what its
// reassignments go by).
func SessionUp(tr *Transfer) bool {
	_, up := tr.session()
	return up
}
