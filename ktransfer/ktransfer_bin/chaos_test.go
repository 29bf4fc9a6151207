package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/tcpproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zkserver"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

const (
	chaosTopic      = "chaos"
	chaosChroot     = "/mq/chaos"
	chaosPartitions = 4
	chaosMaxParts   = 8 // partitions added at most up to this
	chaosKeys       = 40
	chaosRate       = 400 // records per second
	chaosWorkers    = 8
	chaosWindow     = 50
	chaosSessionMs  = 2000
	chaosZKTickMs   = 200  // sessions of 2 s are within 2–20 ticks; expiry is checked every tick
	chaosReadMs     = 2000 // protocol.read_timeout_ms: a hung push ends
	chaosFleet      = 3    // processes at the start; one more joins
	chaosFaultsS    = 45   // seconds of faults by default (CHAOS_SECONDS)
)

var chaosModules = []string{"m1", "m2"}

// TestFleetChaos runs a ktransfer fleet under a random schedule of faults
// and checks the whole history afterwards.
//
// Setup: one ZooKeeper (200 ms ticks, 2 s sessions), a 3-broker kfake
// cluster with a 4-partition topic (the brokers registered under
// <chroot>/brokers/ids, so the configuration is the 2015 form), two modules
// on the topic (multicast) pushing to one sink, and three ktransfer_bin
// processes (a fourth joins during the run) started with the same
// ktransfer.yaml except zk_hosts: each reaches ZooKeeper through its own
// TCP proxy, so that one process's ZooKeeper link can be frozen or cut. No
// admin_addr: every process asks for the default port and the test reads
// the real one from the process's ids/ registration. A producer writes 40
// keys at 400 records/s, acks=all, throughout.
//
// Faults, from a seeded schedule, one process fault at a time, with a sink
// fault and a Kafka fault possibly overlapping it: kill -9 a process
// (restarted later), SIGTERM one (restarted later), SIGSTOP one past the
// session timeout then SIGCONT, freeze one's ZooKeeper proxy past the
// session timeout then thaw, cut one's ZooKeeper connections, restart
// ZooKeeper (same port and data), a fourth process joins; the sink answers
// 500 for a while, or holds requests for less or more than the read
// timeout; partitions are added to the topic; partition leaders move.
//
// Then the faults stop, every process runs, the sink is healthy, and every
// produced record must reach both modules within 60 s (a CI run beside a
// busy loop delivered the last ones just after 30 s); then every process
// gets SIGTERM, after which the committed offsets must be the log-end
// offsets. Checked over the
// whole history: (1) every record Kafka acknowledged delivered (2xx) to
// each module; (2) per module, partition and key, records first delivered
// in offset order; (3) committed offsets in ZooKeeper never move
// backwards (polled every 50 ms); (4) every push carries X-Ktransfer-Epoch,
// and a push with an epoch below one seen before is refused (409, counted
// per fault: a figure); (5) every module's window_used is 0 on each
// process's /status once all is delivered; (6) SIGTERM stops every process
// with exit code 0 in bounded time, and every process started is reaped.
// Printed: the seed, the faults with the time from the signal to the first
// push of each moved partition by its next owner (takeover after kill -9
// against the session timeout + 1 s, handover after SIGTERM against 0.5 s),
// the records delivered again while each fault was active (against
// window_size per process whose partitions moved), and the stale pushes
// refused per fault.
//
// One run takes about 50 s (45 s of faults). Replay a schedule with its seed, run a longer
// soak with more seconds of faults (the delivery wait and the checks are
// the same):
//
//	CHAOS_SEED=12345 go test -run TestFleetChaos -v ./ktransfer/ktransfer_bin
//	CHAOS_SECONDS=600 go test -run TestFleetChaos -v -timeout 30m ./ktransfer/ktransfer_bin
//
// CHAOS_HISTORY=FILE writes the whole history (events and pushes) to FILE,
// and the processes' shared log to FILE.ktransfer.log.
func TestFleetChaos(t *testing.T) {
	seed := envUint(t, "CHAOS_SEED", uint64(time.Now().UnixNano()))
	faultTime := time.Duration(envUint(t, "CHAOS_SECONDS", chaosFaultsS)) * time.Second
	t.Logf("chaos seed %d, %v of faults (replay: CHAOS_SEED=%d go test -run TestFleetChaos -v ./ktransfer/ktransfer_bin)",
		seed, faultTime, seed)
	c := newChaos(t, seed)
	defer func() {
		if t.Failed() {
			t.Logf("chaos seed %d failed; replay: CHAOS_SEED=%d go test -run TestFleetChaos -v ./ktransfer/ktransfer_bin", seed, seed)
		}
	}()

	for range chaosFleet {
		p, err := c.fleet.add()
		if err == nil {
			_, err = c.fleet.start(p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	c.waitSteady("the first processes to register and own every partition", 30*time.Second)
	c.prod = startProducer(c.producerClient(), c.h, chaosKeys, chaosRate)
	c.waitDelivered("the first records", 15*time.Second, func() bool { return len(c.sink.snapshot()) >= 500 })

	// The faults.
	c.h.logf("faults start")
	c.runFaults(faultTime)
	c.h.logf("faults over")

	// Settle: every process running, the sink healthy, the producer done.
	c.sink.stopHolding()
	for _, p := range c.fleet.all() {
		p.proxy.Thaw()
		if r := p.current(); r == nil || r.exited() {
			if _, err := c.fleet.start(p); err != nil {
				t.Error(err)
			}
		}
	}
	c.prod.finish(t)
	recs := c.prod.records()
	c.h.logf("producer done: %d records", len(recs))
	deliveredBy := time.Now().Add(60 * time.Second)
	for {
		missing := c.sink.missing(recs)
		if len(missing) == 0 {
			c.h.logf("every record delivered to every module")
			break
		}
		if time.Now().After(deliveredBy) {
			c.h.violate(violation{what: fmt.Sprintf("records still not delivered 60 s after the faults stopped: %v; owners %v",
				missing, c.zw.ownersNow()), partition: -1})
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	// (5) The window is empty on every live process.
	c.checkWindows()
	// (6) SIGTERM stops every process with exit code 0; all are reaped.
	c.fleet.stopAll()
	c.fleet.checkReaped()
	// Stopped cleanly with everything delivered: every offset committed.
	c.checkCommitted()
	c.zw.close()

	ktLog, err := os.ReadFile(filepath.Join(c.dir, "log", "ktransfer.log"))
	if err != nil {
		t.Errorf("read the processes' log: %v", err)
	}
	c.h.excuseBackwards(ktLog)
	pushes := c.sink.snapshot()
	v := check(c.h, pushes, recs, c.zw, chaosModules)
	if file := os.Getenv("CHAOS_HISTORY"); file != "" {
		if err := c.h.write(file, pushes); err != nil {
			t.Errorf("write the history: %v", err)
		}
		if log, err := os.ReadFile(filepath.Join(c.dir, "log", "ktransfer.log")); err == nil {
			os.WriteFile(file+".ktransfer.log", log, 0o644)
		}
	}
	c.prod.mu.Lock()
	failed, lastErr := c.prod.failed, c.prod.lastErr
	c.prod.mu.Unlock()
	if lastErr != nil {
		t.Logf("last produce error: %v", lastErr)
	}
	sessionTimeout, negotiated := c.zw.sessionTimeout(chaosSession)
	if !negotiated {
		t.Logf("the negotiated session timeout was not seen; the figures use the one asked for")
	}
	t.Logf("chaos seed %d summary:\n%s", seed, summary(v, c.h, chaosModules, len(recs), failed, chaosWindow, sessionTimeout))

	c.h.mu.Lock()
	violations := slices.Clone(c.h.violations)
	c.h.mu.Unlock()
	slices.SortStableFunc(violations, func(a, b violation) int { return int(a.at - b.at) })
	for i, vi := range violations {
		if i == 20 {
			t.Errorf("chaos seed %d: %d more violations", seed, len(violations)-i)
			break
		}
		t.Error(explain(vi, c.h, pushes, seed))
	}
}

// chaos is the test's world.
type chaos struct {
	t     *testing.T
	seed  uint64
	dir   string
	h     *history
	zk    *zkserver.Server
	kafka *kfake.Cluster
	sink  *sink
	zw    *zkWatch
	fleet *fleet
	prod  *producer
	adm   *kadm.Client
	parts int // partitions of the topic now

	prodCl *kgo.Client
}

func newChaos(t *testing.T, seed uint64) *chaos {
	t.Helper()
	dir := t.TempDir()
	c := &chaos{t: t, seed: seed, dir: dir, h: newHistory(), parts: chaosPartitions}
	var err error
	c.zk, err = zkserver.Start(zkserver.Config{Dir: filepath.Join(dir, "zookeeper"), TickMs: chaosZKTickMs})
	if err != nil {
		t.Fatalf("start zookeeper: %v", err)
	}
	t.Cleanup(func() { c.zk.Stop() })
	c.kafka = kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: chaosTopic, Partitions: chaosPartitions}})
	c.adm = kadm.NewClient(kafkatest.Client(t, c.kafka, kafkaconf.Default()))

	// The brokers as ZooKeeper-mode Kafka registers them (persistent
	// nodes here: they outlive any session of the test's).
	conn := zktest.Connect(t, c.zk.Addr)
	idsDir := zklayout.BrokerIDs(chaosChroot)
	if err := zklayout.CreateAll(conn, idsDir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	for i, addr := range c.kafka.ListenAddrs() {
		host, port, _ := strings.Cut(addr, ":")
		p, _ := strconv.Atoi(port)
		data, _ := json.Marshal(zklayout.NewBroker(host, p))
		if _, err := conn.Create(path.Join(idsDir, strconv.Itoa(i)), data, 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()

	c.sink = startSink(t, c.h, chaosModules)
	modDir := filepath.Join(dir, "modules")
	os.MkdirAll(modDir, 0o755)
	for _, m := range chaosModules {
		conf := fmt.Sprintf(`topic: %s
protocol:
 name: http
 uri: /%s?key={#KEY}&transid={#TRANSID}
 read_timeout_ms: %d
 write_timeout_ms: 1000
 conn_timeout_ms: 1000
worker_num: %d
window_size: %d
max_retry_times: -1
fail_retry_interval_ms: 50
backend_servers:
 - %s
`, chaosTopic, m, chaosReadMs, chaosWorkers, chaosWindow, c.sink.addr())
		if err := os.WriteFile(filepath.Join(modDir, m+".yaml"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.zw = startZKWatch(t, c.h, c.zk.Addr, chaosModules, chaosSessionMs)
	c.fleet = &fleet{t: t, h: c.h, zw: c.zw, dir: dir, bin: bintest.Build(t, "."), zkAddr: c.zk.Addr, modDir: modDir}
	t.Cleanup(c.fleet.killAll)
	return c
}

func (c *chaos) producerClient() *kgo.Client {
	c.prodCl = kafkatest.Client(c.t, c.kafka, kafkaconf.Default(),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.MetadataMaxAge(2*time.Second))
	return c.prodCl
}

// waitSteady waits until every process runs, is registered, and every
// partition of every module is owned by a live one.
func (c *chaos) waitSteady(what string, limit time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok := true
		live := map[int]bool{}
		for _, p := range c.fleet.all() {
			r := p.current()
			if r != nil && r.exited() {
				c.t.Fatalf("chaos seed %d: a process exited while waiting for %s\n%s", c.seed, what, c.fleet.describe())
			}
			if r == nil {
				ok = false
				continue
			}
			if _, reg := c.zw.registration(r.pid); !reg {
				ok = false
			}
			live[r.pid] = true
		}
		owners := c.zw.ownersNow()
		for _, m := range chaosModules {
			for p := range int32(c.parts) {
				if !live[owners[mpKey{m, p}]] {
					ok = false
				}
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("chaos seed %d: timed out waiting for %s; owners %v\n%s", c.seed, what, owners, c.fleet.describe())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *chaos) waitDelivered(what string, limit time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("chaos seed %d: timed out waiting for %s\n%s", c.seed, what, c.fleet.describe())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runFaults runs three lanes of faults for d (a fault started before the
// end finishes, and every kind runs at least once): process and ZooKeeper
// faults one at a time, sink faults one at a time, Kafka faults. Each lane draws from its own generator
// seeded from the seed, so a lane's schedule replays with the seed.
func (c *chaos) runFaults(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { c.fleetLane(ctx, rand.New(rand.NewPCG(c.seed, 1))) })
	wg.Go(func() { c.sinkLane(ctx, rand.New(rand.NewPCG(c.seed, 2))) })
	wg.Go(func() { c.kafkaLane(ctx, rand.New(rand.NewPCG(c.seed, 3)), d) })
	wg.Wait()
}

// between is a random duration in [lo, hi).
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// pause waits d unless ctx ends first; it reports whether d passed.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// fleetLane: each process and ZooKeeper fault once, in a random order
// (all of them, even when they take longer than the time given), then
// random ones until the time is up.
func (c *chaos) fleetLane(ctx context.Context, rng *rand.Rand) {
	kinds := []string{"kill9", "sigterm", "sigstop", "zkfreeze", "zkcut", "zkrestart", "join"}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	repeat := []string{"kill9", "sigterm", "sigstop", "zkfreeze", "zkcut", "zkrestart"}
	for i := 0; ; i++ {
		gap := between(rng, 500*time.Millisecond, 1500*time.Millisecond)
		if i < len(kinds) { // every kind runs once, even past the end
			time.Sleep(gap)
		} else if !pause(ctx, gap) {
			return
		}
		kind := repeat[rng.IntN(len(repeat))]
		if i < len(kinds) {
			kind = kinds[i]
		}
		c.processFault(kind, rng)
	}
}

// chaosSession is the session timeout the processes ask for.
const chaosSession = chaosSessionMs * time.Millisecond

// processFault runs one process or ZooKeeper fault to its end, settling
// included.
func (c *chaos) processFault(kind string, rng *rand.Rand) {
	fl := c.fleet
	if kind == "zkrestart" {
		f := c.h.begin(kind, "zookeeper")
		f.affected = len(fl.running())
		c.zk.Stop()
		down := between(rng, 0, time.Second)
		time.Sleep(down)
		start := time.Now()
		err := c.zk.Restart()
		if err != nil {
			c.h.violate(violation{what: fmt.Sprintf("restart zookeeper: %v", err), partition: -1})
		}
		time.Sleep(2 * time.Second)
		c.h.finish(f, "down %.1fs", (down + time.Since(start)).Seconds())
		return
	}
	if kind == "join" {
		p, err := fl.add()
		if err != nil {
			c.h.violate(violation{what: err.Error(), partition: -1})
			return
		}
		f := c.h.begin(kind, p.name)
		f.affected = len(fl.running())
		r, err := fl.start(p)
		if err != nil {
			c.h.violate(violation{what: err.Error(), partition: -1})
			c.h.finish(f, "failed")
			return
		}
		registered := fl.waitRegistered(r, 15*time.Second)
		time.Sleep(2 * time.Second)
		c.h.finish(f, "registered after %s", secs(registered))
		return
	}
	running := fl.running()
	if len(running) == 0 {
		c.h.logf("no process runs: no %s fault", kind)
		return
	}
	p := running[rng.IntN(len(running))]
	r := p.current()
	f := c.h.begin(kind, p.name)
	f.victimPid = r.pid
	c.zw.pollsAfter()
	f.moved = c.zw.ownedBy(r.pid)
	f.signalled = c.h.since()
	switch kind {
	case "kill9":
		fl.signal(r, syscall.SIGKILL)
		<-r.done
		down := between(rng, chaosSession+500*time.Millisecond, chaosSession+2*time.Second)
		time.Sleep(down)
		if nr, err := fl.start(p); err != nil {
			c.h.violate(violation{what: err.Error(), partition: -1})
		} else {
			fl.waitRegistered(nr, 15*time.Second)
		}
		time.Sleep(time.Second)
		c.h.finish(f, "restarted after %.1fs", down.Seconds())
	case "sigterm":
		fl.signal(r, syscall.SIGTERM)
		took, ok := fl.waitExit(r, 20*time.Second)
		switch {
		case !ok:
			c.h.violate(violation{what: fmt.Sprintf("%s (pid %d) still running 20 s after SIGTERM; killed", p.name, r.pid), partition: -1})
			fl.signal(r, syscall.SIGKILL)
			<-r.done
		case r.state.ExitCode() != 0:
			c.h.violate(violation{what: fmt.Sprintf("%s (pid %d) exited %v after SIGTERM; stderr:\n%s", p.name, r.pid, r.state, r.stderrTail()), partition: -1})
		}
		time.Sleep(between(rng, 500*time.Millisecond, 1500*time.Millisecond))
		if nr, err := fl.start(p); err != nil {
			c.h.violate(violation{what: err.Error(), partition: -1})
		} else {
			fl.waitRegistered(nr, 15*time.Second)
		}
		time.Sleep(time.Second)
		c.h.finish(f, "exit %d after %s", r.state.ExitCode(), secs(took))
	case "sigstop":
		stopped := between(rng, chaosSession+500*time.Millisecond, chaosSession+2*time.Second)
		fl.signal(r, syscall.SIGSTOP)
		time.Sleep(stopped)
		fl.signal(r, syscall.SIGCONT)
		c.h.mu.Lock()
		f.resumed = c.h.since()
		c.h.mu.Unlock()
		time.Sleep(2 * time.Second)
		c.h.finish(f, "stopped %.1fs", stopped.Seconds())
	case "zkfreeze":
		frozen := between(rng, chaosSession+500*time.Millisecond, chaosSession+2*time.Second)
		p.proxy.Freeze()
		time.Sleep(frozen)
		p.proxy.Thaw()
		time.Sleep(2 * time.Second)
		c.h.finish(f, "frozen %.1fs", frozen.Seconds())
	case "zkcut":
		cuts := 1 + rng.IntN(3)
		n := 0
		for i := range cuts {
			if i > 0 {
				time.Sleep(between(rng, 200*time.Millisecond, 1500*time.Millisecond)) // the client reconnects within about 1 s
			}
			n += p.proxy.Cut()
		}
		time.Sleep(time.Second)
		c.h.finish(f, "%d cuts, %d connections", cuts, n)
	default:
		panic("unknown fault " + kind)
	}
}

// sinkLane: 500 bursts and hangs, shorter and longer than the read
// timeout, in turn from a random start (each at least once).
func (c *chaos) sinkLane(ctx context.Context, rng *rand.Rand) {
	kinds := []string{"5xx", "hang<rt", "hang>rt"}
	first := rng.IntN(len(kinds))
	for i := first; ; i++ {
		gap := between(rng, 2*time.Second, 5*time.Second)
		if i < first+len(kinds) { // every kind runs once, even past the end
			time.Sleep(gap)
		} else if !pause(ctx, gap) {
			return
		}
		kind := kinds[i%len(kinds)]
		f := c.h.begin(kind, "sink")
		lasts := between(rng, time.Second, 3*time.Second)
		switch kind {
		case "5xx":
			c.sink.fail500(lasts)
			time.Sleep(lasts)
			c.h.finish(f, "500 for %.1fs", lasts.Seconds())
		default:
			hold := between(rng, 500*time.Millisecond, chaosReadMs*time.Millisecond-500*time.Millisecond)
			if kind == "hang>rt" {
				hold = between(rng, chaosReadMs*time.Millisecond+500*time.Millisecond, 2*chaosReadMs*time.Millisecond)
			}
			c.sink.hang(lasts, hold)
			time.Sleep(lasts + hold) // until the last held request is answered
			c.h.finish(f, "held %.1fs for %.1fs", hold.Seconds(), lasts.Seconds())
		}
	}
}

// kafkaLane: partition leaders move every few seconds; partitions are
// added twice (up to chaosMaxParts), in the first two thirds of the run.
func (c *chaos) kafkaLane(ctx context.Context, rng *rand.Rand, d time.Duration) {
	addAt := []time.Duration{between(rng, 0, d/3), between(rng, d/3, 2*d/3)}
	start := time.Now()
	for {
		if !pause(ctx, between(rng, 3*time.Second, 7*time.Second)) {
			return
		}
		if len(addAt) > 0 && time.Since(start) >= addAt[0] && c.parts+2 <= chaosMaxParts {
			addAt = addAt[1:]
			f := c.h.begin("addparts", "kafka")
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := c.adm.CreatePartitions(cctx, 2, chaosTopic)
			cancel()
			if err == nil {
				err = resp.Error()
			}
			if err != nil {
				c.h.violate(violation{what: fmt.Sprintf("add 2 partitions to %s: %v", chaosTopic, err), partition: -1})
				c.h.finish(f, "failed")
				continue
			}
			c.parts += 2
			c.prodCl.ForceMetadataRefresh()
			time.Sleep(time.Second)
			c.h.finish(f, "now %d partitions", c.parts)
			continue
		}
		f := c.h.begin("shuffle", "kafka")
		c.kafka.ShufflePartitionLeaders()
		time.Sleep(time.Second)
		c.h.finish(f, "")
	}
}

// checkCommitted: after a clean stop with every record delivered, each
// module's committed offsets are the log-end offsets. They are read from
// ZooKeeper now, on a session of the check's own: the watcher's view can
// be older (its session lost to a ZooKeeper restart and not yet renewed).
// Where the watcher last saw another value, that is logged.
func (c *chaos) checkCommitted() {
	ends := kafkatest.EndOffsets(c.t, c.kafka, kafkaconf.Default(), chaosTopic)
	c.zw.pollsAfter()
	conn := zktest.Connect(c.t, c.zk.Addr)
	defer conn.Close()
	for _, m := range chaosModules {
		dir := zklayout.Offsets(chaosChroot, m, chaosTopic)
		for p, end := range ends {
			var got int64 // 0 when never stored
			data, _, err := conn.Get(path.Join(dir, strconv.Itoa(int(p))))
			if err == nil {
				got, err = zklayout.ParseOffset(data)
			}
			if err != nil && !errors.Is(err, zk.ErrNoNode) {
				c.h.violate(violation{module: m, partition: p, what: fmt.Sprintf("%s p%d: offset node: %v", m, p, err)})
				continue
			}
			c.zw.mu.Lock()
			seen := c.zw.offsets[mpKey{m, p}]
			polls := c.zw.polls
			c.zw.mu.Unlock()
			if seen.value != got {
				c.h.logf("%s p%d: the watcher last saw offset %d (at %s, %d polls), ZooKeeper has %d", m, p, seen.value, secs(seen.at), polls, got)
			}
			if got != end {
				c.h.violate(violation{module: m, partition: p, what: fmt.Sprintf(
					"%s p%d: committed offset %d after a clean stop with every record delivered; the log ends at %d", m, p, got, end)})
			}
		}
	}
}

// checkWindows asks every live process's /status, at the admin address
// it published in ids/, until each module's window_used is 0 (15 s: a
// slot leaked stays for good, a loaded host may take seconds to commit).
func (c *chaos) checkWindows() {
	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for _, p := range c.fleet.all() {
		r := p.current()
		if r == nil || r.exited() {
			continue
		}
		reg, ok := c.zw.registration(r.pid)
		if !ok || reg.Admin == "" {
			c.h.violate(violation{what: fmt.Sprintf("%s (pid %d) publishes no admin address in its ids/ registration: %+v",
				p.name, r.pid, reg), partition: -1})
			continue
		}
		var last string
		for {
			used, err := windowsUsed(client, reg.Admin)
			if err == nil && !slices.ContainsFunc(used, func(u moduleWindow) bool { return u.WindowUsed != 0 }) {
				c.h.logf("%s: every window empty: %v", p.name, used)
				break
			}
			last = fmt.Sprintf("%v %v", used, err)
			if time.Now().After(deadline) {
				c.h.violate(violation{what: fmt.Sprintf("%s (pid %d, admin %s): a window is not empty with everything delivered: %s",
					p.name, r.pid, reg.Admin, last), partition: -1})
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// moduleWindow is the part of a module's /status the test reads.
type moduleWindow struct {
	Name       string `json:"name"`
	WindowUsed int    `json:"window_used"`
}

func windowsUsed(client *http.Client, admin string) ([]moduleWindow, error) {
	resp, err := client.Get("http://" + admin + "/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/status: %s", resp.Status)
	}
	var status struct {
		Modules []moduleWindow `json:"modules"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil {
		return nil, fmt.Errorf("/status: %w", err)
	}
	out := status.Modules
	if len(out) != len(chaosModules) {
		return out, fmt.Errorf("/status lists %d modules, want %d", len(out), len(chaosModules))
	}
	return out, nil
}

// fleet is the ktransfer processes: slots p1…p4, each with its own
// configuration file and ZooKeeper proxy, restarted in place.
type fleet struct {
	t              *testing.T
	h              *history
	zw             *zkWatch
	dir, bin       string
	zkAddr, modDir string

	mu    sync.Mutex
	procs []*proc
	runs  []*run // every process started
}

// proc is a slot of the fleet.
type proc struct {
	name  string
	conf  string
	proxy *tcpproxy.Proxy

	mu  sync.Mutex
	cur *run
}

func (p *proc) current() *run {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// run is one process.
type run struct {
	p       *proc
	cmd     *exec.Cmd
	pid     int
	stderr  *os.File
	started time.Duration
	done    chan struct{} // closed once reaped

	mu       sync.Mutex
	expected string // the signal the test sent, "" if none
	state    *os.ProcessState
	exitedAt time.Duration
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// stderrTail is the end of the process's standard error.
func (r *run) stderrTail() string {
	data, _ := os.ReadFile(r.stderr.Name())
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(data)
}

// add creates the next slot: its proxy and its ktransfer.yaml, which is
// the same for every process but for zk_hosts (its proxy).
func (f *fleet) add() (*proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := fmt.Sprintf("p%d", len(f.procs)+1)
	px, err := tcpproxy.Start(f.zkAddr)
	if err != nil {
		return nil, fmt.Errorf("zookeeper proxy for %s: %w", name, err)
	}
	f.t.Cleanup(func() { px.Close() })
	conf := filepath.Join(f.dir, "ktransfer-"+name+".yaml")
	yaml := fmt.Sprintf(`log_dir: %s
log_level: 4
zk_chroot: %s
zk_timeout_ms: %d
zk_hosts:
 - %s
module_conf_dir: %s
module_enabled:
%s`, filepath.Join(f.dir, "log"), chaosChroot, chaosSessionMs, px.Addr(), f.modDir, " - "+strings.Join(chaosModules, "\n - ")+"\n")
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		return nil, err
	}
	p := &proc{name: name, conf: conf, proxy: px}
	f.procs = append(f.procs, p)
	return p, nil
}

func (f *fleet) all() []*proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.procs)
}

// running is the slots whose process runs.
func (f *fleet) running() []*proc {
	var out []*proc
	for _, p := range f.all() {
		if r := p.current(); r != nil && !r.exited() {
			out = append(out, p)
		}
	}
	return out
}

// start runs a new process in slot p.
func (f *fleet) start(p *proc) (*run, error) {
	f.mu.Lock()
	n := len(f.runs) + 1
	f.mu.Unlock()
	errf, err := os.Create(filepath.Join(f.dir, fmt.Sprintf("stderr-%s-%d", p.name, n)))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(f.bin, "-f", p.conf)
	cmd.Stderr = errf
	// The process dies with the test, even when the test is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		errf.Close()
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	r := &run{p: p, cmd: cmd, pid: cmd.Process.Pid, stderr: errf, started: f.h.since(), done: make(chan struct{})}
	f.mu.Lock()
	f.runs = append(f.runs, r)
	f.mu.Unlock()
	p.mu.Lock()
	p.cur = r
	p.mu.Unlock()
	f.h.logf("%s started: pid %d", p.name, r.pid)
	go func() {
		_ = cmd.Wait() // the state says how it ended
		errf.Close()
		at := f.h.since()
		r.mu.Lock()
		r.state, r.exitedAt = cmd.ProcessState, at
		expected := r.expected
		r.mu.Unlock()
		close(r.done)
		f.h.logf("%s (pid %d) exited: %v", p.name, r.pid, cmd.ProcessState)
		if expected == "" {
			f.h.violate(violation{at: at, partition: -1, what: fmt.Sprintf("%s (pid %d) exited by itself: %v; stderr:\n%s",
				p.name, r.pid, cmd.ProcessState, r.stderrTail())})
		}
	}()
	return r, nil
}

// signal sends sig to the process, noting that an exit is expected after
// SIGKILL and SIGTERM.
func (f *fleet) signal(r *run, sig syscall.Signal) {
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		r.mu.Lock()
		r.expected = sig.String()
		r.mu.Unlock()
	}
	f.h.logf("%s (pid %d): %v", r.p.name, r.pid, sig)
	if err := r.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		f.h.violate(violation{what: fmt.Sprintf("signal %v to %s (pid %d): %v", sig, r.p.name, r.pid, err), partition: -1})
	}
}

// waitExit waits for the process to exit, at most limit.
func (f *fleet) waitExit(r *run, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	select {
	case <-r.done:
		return time.Since(start), true
	case <-time.After(limit):
		return limit, false
	}
}

// waitRegistered waits until the process's ids/ registration is seen,
// and returns how long that took (a violation if not within limit).
func (f *fleet) waitRegistered(r *run, limit time.Duration) time.Duration {
	start := time.Now()
	for {
		if _, ok := f.zw.registration(r.pid); ok {
			return time.Since(start)
		}
		if r.exited() || time.Since(start) > limit {
			f.h.violate(violation{what: fmt.Sprintf("%s (pid %d) not registered in ids/ within %v (exited: %v); stderr:\n%s",
				r.p.name, r.pid, limit, r.exited(), r.stderrTail()), partition: -1})
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopAll sends SIGTERM to every live process at once and expects each to
// exit 0 within 20 s.
func (f *fleet) stopAll() {
	var wg sync.WaitGroup
	for _, p := range f.running() {
		r := p.current()
		wg.Go(func() {
			f.signal(r, syscall.SIGTERM)
			took, ok := f.waitExit(r, 20*time.Second)
			switch {
			case !ok:
				f.h.violate(violation{what: fmt.Sprintf("%s (pid %d) still running 20 s after the final SIGTERM; killed", p.name, r.pid), partition: -1})
				f.signal(r, syscall.SIGKILL)
				<-r.done
			case r.state.ExitCode() != 0:
				f.h.violate(violation{what: fmt.Sprintf("%s (pid %d) exited %v after the final SIGTERM; stderr:\n%s",
					p.name, r.pid, r.state, r.stderrTail()), partition: -1})
			default:
				f.h.logf("%s (pid %d) stopped in %s", p.name, r.pid, secs(took))
			}
		})
	}
	wg.Wait()
}

// checkReaped: every process the test started has been waited for and is
// gone.
func (f *fleet) checkReaped() {
	f.mu.Lock()
	runs := slices.Clone(f.runs)
	f.mu.Unlock()
	for _, r := range runs {
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			f.h.violate(violation{what: fmt.Sprintf("%s (pid %d) not reaped", r.p.name, r.pid), partition: -1})
			continue
		}
		if err := syscall.Kill(r.pid, 0); !errors.Is(err, syscall.ESRCH) {
			f.h.violate(violation{what: fmt.Sprintf("%s (pid %d) reaped but its pid still answers: %v", r.p.name, r.pid, err), partition: -1})
		}
	}
}

// killAll kills whatever still runs (a test that failed early) and waits
// for it: nothing outlives the test.
func (f *fleet) killAll() {
	f.mu.Lock()
	runs := slices.Clone(f.runs)
	f.mu.Unlock()
	for _, r := range runs {
		if !r.exited() {
			r.mu.Lock()
			r.expected = "cleanup"
			r.mu.Unlock()
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	}
}

// describe is every process's state and the end of its standard error,
// for a failure at start.
func (f *fleet) describe() string {
	var b bytes.Buffer
	for _, p := range f.all() {
		r := p.current()
		if r == nil {
			continue
		}
		state := "running"
		if r.exited() {
			state = r.state.String()
		}
		_, reg := f.zw.registration(r.pid)
		fmt.Fprintf(&b, "%s pid %d: %s, registered %v; stderr: %s\n", p.name, r.pid, state, reg, strings.TrimSpace(r.stderrTail()))
	}
	return b.String()
}

// envUint reads a positive integer from the environment, or def.
func envUint(t *testing.T, name string, def uint64) uint64 {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return v
}
