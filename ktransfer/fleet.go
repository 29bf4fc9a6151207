package ktransfer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// Version is reported in the ids/ registration.
const Version = "0.1.0"

// debounce gathers the ZooKeeper events of one change (an instance
// joining fires ids/ and then owners/) into one reassignment.
const debounce = 100 * time.Millisecond

// partitionPoll is how often the topic is checked for new partitions, and
// the assignment recomputed whatever happened. A variable for the tests
// that must tell a watch from this check.
var partitionPoll = 10 * time.Second

// kafkaCutoffLeast is the least kafka_cutoff_ms: a process with no
// partition asks the brokers only every partitionPoll (its topic's
// partitions), and an ask may take kafkaTimeout to be answered; a fetch
// cancelled as its last partition was released is never answered. A
// shorter wait without an answer is no cut-off.
var kafkaCutoffLeast = partitionPoll + kafkaTimeout

// claimed is a partition this process holds: its read loop and its owner node.
type claimed struct {
	part      *partition
	cancel    context.CancelFunc
	done      chan struct{} // closed when the read loop returned
	releasing atomic.Bool   // a release started: the others return at once
	// lost: its owner node was found deleted, or another claim's, while
	// it was handed over (guardOwners): the next owner may be pushing
	// its keys, and its pushes in progress are abandoned at once.
	lost atomic.Bool
}

// instanceID names this process in ids/ and owners/: host, pid, start
// time and a random tail, unique and readable in zkCli.
func instanceID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%d-%04x", host, os.Getpid(), time.Now().UnixMilli(), rand.IntN(0x10000))
}

// coordinate keeps this process's share of the module's partitions until
// ctx ends: it registers under ids/, follows ids/ and owners/ with
// watches, computes the assignment, releases what is no longer its own and
// claims what is. Partition failures go to errc.
func (m *module) coordinate(ctx context.Context, errc chan<- error) {
	idsDir := zklayout.ConsumerIDs(m.t.cfg.ZKChroot, m.cfg.Name)
	ownersDir := zklayout.Owners(m.t.cfg.ZKChroot, m.cfg.Name, m.cfg.Topic)
	go m.watchDir(ctx, idsDir)
	// owners/ is watched, and its claims guarded, by run: until the
	// hand-overs of the module's stop have ended too.
	var follower sync.WaitGroup
	defer follower.Wait()
	follower.Go(func() { m.followPartitions(ctx) })
	poll := time.NewTicker(partitionPoll)
	defer poll.Stop()
	// Not once ctx ended: a module started as the process stops (a
	// reload's, as Run's stop began) registers and claims nothing.
	var missingSince, missingSaid time.Time // the module's topic not known to the brokers
	for ctx.Err() == nil {
		err := m.reconcile(ctx, idsDir, ownersDir, errc)
		switch {
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			// A typo, or a topic not created yet: said at once and then
			// every minute, as an error; looked up every second.
			if missingSince.IsZero() {
				missingSince = time.Now()
				m.topicMissing(missingSince)
			}
			if time.Since(missingSaid) >= time.Minute {
				m.log.Error("topic does not exist: the module waits for it, looked up every second; the other modules run",
					"file", m.cfg.File, "for", time.Since(missingSince).Round(time.Second))
				missingSaid = time.Now()
			}
		case errors.Is(err, errKafkaInDoubt):
			if other := withoutInDoubt(err); other != nil {
				m.log.Warn("reassignment failed; will retry", "err", other)
			}
		case err != nil:
			m.log.Warn("reassignment failed; will retry", "err", err)
		case !missingSince.IsZero() && m.topicSeen.Load():
			// Not a reconcile that found no session (nil as well).
			m.log.Info("topic found: the module starts", "after", time.Since(missingSince).Round(time.Second))
			missingSince, missingSaid = time.Time{}, time.Time{}
		}
		if err != nil {
			sleep(ctx, time.Second)
			m.wake()
		}
		// Reassigned again at the moment no broker has answered for
		// kafka_cutoff_ms, if none answers before: the module steps
		// aside then, not at the next poll.
		var cutoff <-chan time.Time
		var timer *time.Timer
		if d := m.t.untilCutOff(); d > 0 {
			timer = time.NewTimer(d + time.Millisecond)
			cutoff = timer.C
		}
		select {
		case <-ctx.Done():
		case <-m.changed:
			sleep(ctx, debounce)
		case <-poll.C: // reassign now and then, whatever happened
		case <-cutoff:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// errKafkaInDoubt: a reassignment left a partition given to this process
// unclaimed, the brokers not answering for half kafka_cutoff_ms; retried
// a second later, not logged.
var errKafkaInDoubt = errors.New("kafka in doubt: partitions left unclaimed")

// withoutInDoubt is err without errKafkaInDoubt (nil when nothing else).
func withoutInDoubt(err error) error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return nil
	}
	var rest []error
	for _, e := range j.Unwrap() {
		if e != errKafkaInDoubt {
			rest = append(rest, e)
		}
	}
	return errors.Join(rest...)
}

// followPartitions asks the brokers for the topic's partitions every
// partitionPoll until ctx ends, and wakes the coordinator when they
// changed. The reassignment uses the list read last (knownPartitions):
// brokers that take the question and do not answer (kafkaTimeout) must
// not hold a hand-over back.
func (m *module) followPartitions(ctx context.Context) {
	known, _ := m.t.lastPartitions(m.cfg.Topic)
	for {
		parts, err := m.t.partitions(ctx, m.cfg.Topic)
		if err == nil && !slices.Equal(parts, known) {
			if known != nil {
				m.log.Info("topic partitions changed", "partitions", len(parts))
			}
			known = parts
			m.wake()
		}
		every := partitionPoll
		_, cut := m.t.kafkaCutOff()
		if aside := m.aside.Load(); aside != cut {
			m.wake() // to step aside, or back
		}
		if cut || m.aside.Load() {
			// Asked every second while no broker answers: the module
			// registers again as soon as one does.
			every = min(every, time.Second)
		}
		if !sleep(ctx, every) {
			return
		}
	}
}

// wake asks for a reassignment.
func (m *module) wake() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// watchDir wakes the coordinator whenever dir's children change. A watch
// tells only of changes made while it is set, and the reassignment reads
// the folder apart from it: after every arm the coordinator is woken, so
// that a reassignment reads the folder once the watch is set, and a
// change made while none was (before the first arm, between an arm that
// failed, the connection down, and the next one a second later, between
// an event and the arm that follows it) is acted on at once, not at the
// next change or the periodic check. A change told by an event is acted
// on as soon as the arm that follows it is answered, or failed. A run
// that stops leaves its set watch to the module's next run (parkWatch),
// which takes it as its first arm.
func (m *module) watchDir(ctx context.Context, dir string) {
	told := false // an event came, and the coordinator was not woken for it yet
	owners := dir == zklayout.Owners(m.t.cfg.ZKChroot, m.cfg.Name, m.cfg.Topic)
	unwatched := false // owners/ went unwatched since its guard last looked (an event, a failed arm)
	for ctx.Err() == nil {
		// A watch left set by the module's previous run, if any: set again,
		// each run would leave one more channel in the client.
		ev := m.t.takeWatch(dir)
		var err error
		if ev == nil {
			err = beforeWatch(m.t.id, dir)
			if err == nil {
				_, _, ev, err = m.t.conn().ChildrenW(dir)
			}
		}
		if errors.Is(err, zk.ErrNoNode) {
			if err = zklayout.CreateAll(m.t.conn(), dir, m.t.acl); err == nil {
				continue
			}
		}
		if err != nil {
			if told {
				m.wake()
				told = false
			}
			unwatched = true
			sleep(ctx, time.Second)
			continue
		}
		m.wake()
		told = false
		if owners && unwatched {
			// An owner node deleted while no watch was set told nobody:
			// the guard looks now. The reassignment, woken above, may be
			// the very one waiting for a hand-over's pushes.
			m.guardNow()
		}
		unwatched = false
		select {
		case <-ev:
			told = true
			if owners {
				unwatched = true
				m.guardNow()
			}
		case <-ctx.Done():
			m.t.parkWatch(dir, ev)
			return
		}
	}
}

// guardNow asks guardOwners to look at the claims' owner nodes.
func (m *module) guardNow() {
	select {
	case m.ownersChanged <- struct{}{}:
	default:
	}
}

// guardOwners deposes, whenever owners/ changes, the claims whose owner
// node is gone or another's, apart from the reassignment: that one waits
// for the releases it starts (a hand-over waits for the pushes in
// progress, up to shutdown_timeout_ms), and meanwhile a claim whose node
// an operator deleted, which another process may take and push at once,
// would go on pushing here. Only claims held before each look: a claim's
// node is created, and answered, before the claim is held, and ZooKeeper
// answers a session's requests in order, so a node not found then was
// deleted (or went with its session). A node that cannot be looked at
// (ZooKeeper did not answer) is looked at again a little later: the
// reassignment may be the one waiting for a hand-over's pushes.
func (m *module) guardOwners(ctx context.Context, ownersDir string) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.ownersChanged:
		}
		again := false
		m.mu.Lock()
		held := make([]*claimed, 0, len(m.claims)+len(m.handing))
		for _, c := range m.claims {
			held = append(held, c)
		}
		for _, c := range m.handing { // their pushes in progress wait
			held = append(held, c)
		}
		m.mu.Unlock()
		for _, c := range held {
			if ctx.Err() != nil {
				return // the run's stop waits for it: no more look-ups
			}
			node := path.Join(ownersDir, strconv.Itoa(int(c.part.id)))
			ok, stat, err := m.t.conn().Exists(node)
			if ctx.Err() != nil {
				continue
			}
			if err != nil {
				again = true
				continue
			}
			if !ok || stat.Czxid != c.part.epoch {
				// A hand-over under way stops waiting (release); one that
				// begins after this look too.
				c.lost.Store(true)
				m.depose(c.part) // not if it is released, or being released
			}
		}
		if again {
			time.AfterFunc(guardRetry, m.guardNow)
		}
	}
}

// guardRetry is how soon guardOwners looks again at an owner node
// ZooKeeper did not answer for.
const guardRetry = 100 * time.Millisecond

// watchFault, when a test sets it, runs before each arm of a fleet
// folder's watch (watchDir), with the instance and the folder: an error
// it returns is taken as the arm's (as the connection down at that moment
// gives), and it may wait (as a slow answer does).
var watchFault atomic.Pointer[func(instance, dir string) error]

func beforeWatch(instance, dir string) error {
	if f := watchFault.Load(); f != nil {
		return (*f)(instance, dir)
	}
	return nil
}

// reconcile registers this instance if needed, computes the assignment
// and applies this process's part of it: the claims whose owner node is
// another claim's or gone are dropped (deposed), the partitions no longer
// its own are released (in parallel, each committing and deleting its
// owner node), owner nodes left with its id by a failed release are
// deleted, and the partitions newly its own are claimed.
func (m *module) reconcile(ctx context.Context, idsDir, ownersDir string, errc chan<- error) error {
	gen, up := m.t.session()
	if !up {
		return nil // without a session nothing is ours; the session watcher wakes us
	}
	if waited, cut := m.t.kafkaCutOff(); cut {
		return m.stepAside(idsDir, waited)
	}
	if m.aside.Load() {
		m.log.Info("a kafka broker answers again: the module registers and takes its share of the partitions")
		m.aside.Store(false)
	}
	// The partitions first: a process that cannot read them (its topic
	// not created yet) does not register, or the others would leave it a
	// share of them it cannot claim.
	parts, err := m.modulePartitions(ctx)
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		m.leaveWhileWaiting(idsDir)
	}
	if err != nil {
		return err
	}
	if err := m.register(idsDir); err != nil {
		return err
	}
	ids, _, err := m.t.conn().Children(idsDir)
	if err != nil {
		return fmt.Errorf("list %s: %w", idsDir, err)
	}
	ids = m.readers(idsDir, ids)
	owners, unreadable, err := m.owners(ownersDir)
	if err != nil {
		return err
	}
	m.warnUnreadable(unreadable)
	var failed error
	for _, err := range unreadable {
		if unanswered(err) {
			// Asked again, it will be answered: the partition may be
			// free and this process's to claim, or hold this process's
			// node, left by a claim whose answer was lost, that only it
			// deletes. No change of owners/ need come to wake it.
			failed = err
		}
	}
	current := ownerIDs(owners)
	m.mu.Lock()
	for p := range unreadable {
		if _, held := m.claims[p]; held {
			// Its node is this claim's as far as anyone knows: kept, as
			// the assignment keeps any owner's partitions, not moved as
			// a free one.
			current[p] = m.t.id
		}
	}
	m.mu.Unlock()
	target := assign(ids, parts, current)
	me := m.t.id
	m.mu.Lock()
	var release []*claimed
	var lost []*partition
	for p, c := range m.claims {
		o, ok := owners[p]
		switch {
		case ok && (o.id != me || o.epoch != c.part.epoch):
			// Its owner node is another claim's: the partition is lost,
			// whether or not a commit (refused) would have told.
			lost = append(lost, c.part)
		case !ok && unreadable[p] == nil:
			// Its owner node is gone: deleted by someone else (an
			// operator, a script; this process deletes a claim's node
			// only in the release that takes it out of m.claims), or
			// with the session. Nothing fences the partition, and any
			// process may claim it: it is dropped, and claimed again
			// if it stays ours. The read of owners/ above cannot
			// predate a held claim's node: claims are made only here,
			// on this goroutine and after that read, so every claim
			// held was made by an earlier reconcile, on the same
			// client (a new one comes only after the session was
			// given up, which drops every claim), and ZooKeeper
			// answers a session's requests in order. If the session
			// changed meanwhile, its nodes are gone indeed.
			lost = append(lost, c.part)
		case target[p] != me:
			release = append(release, c)
		}
	}
	m.mu.Unlock()
	for _, p := range lost {
		m.depose(p)
	}
	m.releaseAll(release, handOver)
	if err := m.deleteLeftOwners(owners, target); err != nil {
		return err
	}
	if _, doubt := m.t.kafkaInDoubt(); doubt {
		// Half kafka_cutoff_ms without an answer from the brokers: no
		// new claim, which the module would hand over again if no
		// answer comes (when the brokers answer no process, each that
		// steps aside would pass its partitions to one about to). Looked
		// at again a second later.
		for _, p := range parts {
			m.mu.Lock()
			_, held := m.claims[p]
			m.mu.Unlock()
			if target[p] == me && !held && unreadable[p] == nil {
				return errors.Join(failed, errKafkaInDoubt)
			}
		}
		return failed
	}
	for _, p := range parts {
		if ctx.Err() != nil {
			break // stopping: the run releases what it holds, and claims nothing more
		}
		if target[p] != me || unreadable[p] != nil {
			continue // an unknown owner's: its claim would fail (reading the node)
		}
		m.mu.Lock()
		_, held := m.claims[p]
		m.mu.Unlock()
		if !held {
			if err := m.claim(ctx, ownersDir, p, gen, errc); err != nil {
				failed = err // the others are claimed all the same; retried soon
			}
		}
	}
	return failed
}

// stepAside deregisters the module and hands every partition it holds
// over, while no Kafka broker answers the process (cutoff.go): the other
// processes, or a spare, take them. First the registration: the others
// assign without this process before its owner nodes go, so none of its
// partitions is left to it again.
func (m *module) stepAside(idsDir string, waited time.Duration) error {
	if !m.aside.Load() {
		m.log.Warn("no kafka broker answered this process: the module deregisters and leaves its partitions to the other processes until one answers",
			"waited", waited.Round(time.Millisecond), "kafka_cutoff_ms", m.t.cfg.KafkaCutoffMs)
	}
	if err := m.deregister(); err != nil {
		return err
	}
	m.aside.Store(true)
	m.mu.Lock()
	claims := make([]*claimed, 0, len(m.claims))
	for _, c := range m.claims {
		claims = append(claims, c)
	}
	m.mu.Unlock()
	m.releaseAll(claims, handOver)
	// A node of this process's left behind (a delete that failed, here
	// or before) holds its partition from every other process.
	owners, _, err := m.owners(zklayout.Owners(m.t.cfg.ZKChroot, m.cfg.Name, m.cfg.Topic))
	if err != nil {
		return err
	}
	return m.deleteLeftOwners(owners, nil)
}

// deleteLeftOwners deletes the owner nodes of owners that name this
// process but no claim it holds or is releasing, of partitions target
// does not give it: a release whose delete failed, or a claim given up
// with the session that came back. Nobody pushes such a partition until
// its node is gone.
func (m *module) deleteLeftOwners(owners map[int32]owner, target map[int32]string) error {
	for p, o := range owners {
		m.mu.Lock()
		_, held := m.claims[p]
		held = held || m.releasing[p] > 0
		m.mu.Unlock()
		if o.id == m.t.id && !held && target[p] != m.t.id {
			if err := m.deleteOwner(p, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// register creates this instance's ephemeral ids/ node if it is missing
// (first start, or a new session after the old one expired), and replaces
// one that names another topic (left by a run of the module on that topic
// whose deregistration failed: the others would not count this one). The
// replacement deletes and creates the node in one multi-op: the group's
// watches follow the children of ids/, and a change of the node's data
// alone would wake none of them (the readers of either topic would go on
// counting this instance as before until their periodic check).
func (m *module) register(idsDir string) error {
	node := path.Join(idsDir, m.t.id)
	conn := m.t.conn()
	data := m.registration()
	old, stat, err := conn.Get(node)
	if err == nil {
		if subscribed(old, m.cfg.Topic) {
			return nil
		}
		if _, err := conn.Multi(
			&zk.DeleteRequest{Path: node, Version: stat.Version},
			&zk.CreateRequest{Path: node, Data: data, Acl: m.t.acl, Flags: zk.FlagEphemeral},
		); err != nil {
			return fmt.Errorf("register %s: %w", node, err)
		}
		m.log.Info("registered again for this topic", "instance", m.t.id)
		return nil
	}
	if !errors.Is(err, zk.ErrNoNode) {
		return err
	}
	if err := zklayout.CreateAll(conn, idsDir, m.t.acl); err != nil {
		return err
	}
	if _, err := conn.Create(node, data, zk.FlagEphemeral, m.t.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("register %s: %w", node, err)
	}
	m.log.Info("registered", "instance", m.t.id)
	return nil
}

// registration is this instance's ids/ node data for the module: the
// process's fields and, as Kafka 0.8's consumers wrote it, the topic it
// reads: "subscription": {"<topic>": 1}.
func (m *module) registration() []byte {
	r := m.t.registration()
	r["subscription"] = map[string]int{m.cfg.Topic: 1}
	data, _ := json.Marshal(r)
	return data
}

// subscribed reports whether an ids/ node's data says its instance reads
// topic. A registration without a subscription (written by an older
// ktransfer) is taken to read it, as before.
func subscribed(data []byte, topic string) bool {
	var r struct {
		Subscription map[string]int `json:"subscription"`
	}
	if json.Unmarshal(data, &r) != nil || r.Subscription == nil {
		return true
	}
	_, ok := r.Subscription[topic]
	return ok
}

// readers keeps, of the instances registered in idsDir, those that read
// the module's topic. The processes of a group can run the module on
// different topics for a while (a reload that changes its topic goes
// round the fleet host by host; a host's module file was not updated): a
// partition assigned to a process that does not read its topic would
// never be pushed. An instance gone meanwhile is left out; one whose
// registration cannot be read (no answer, no read permission) is counted,
// as before registrations named their topic. A persistent node (written
// by hand or by a tool, left by a restore) is no live process: it is left
// out, with a warning, or its share of the partitions would never be
// pushed.
func (m *module) readers(idsDir string, ids []string) []string {
	var out []string
	others, persistent := 0, 0
	for _, id := range ids {
		if id == m.t.id {
			out = append(out, id) // registered by this reconcile
			continue
		}
		data, stat, err := m.t.conn().Get(path.Join(idsDir, id))
		switch {
		case errors.Is(err, zk.ErrNoNode):
		case err == nil && stat.EphemeralOwner == 0:
			persistent++
		case err == nil && !subscribed(data, m.cfg.Topic):
			others++
		default:
			out = append(out, id)
		}
	}
	if others != m.otherTopic {
		m.otherTopic = others
		if others > 0 {
			m.log.Warn("instances of the module's group read another topic; they take none of this topic's partitions", "instances", others)
		}
	}
	if persistent != m.persistentIDs {
		m.persistentIDs = persistent
		if persistent > 0 {
			m.log.Warn("persistent nodes under ids/ are no live instances; they take no partitions (delete them)", "dir", idsDir, "nodes", persistent)
		}
	}
	return out
}

// leaveWhileWaiting deletes this process's registration for the module
// while the module waits for its topic: one left by its previous run (a
// reload changed the topic, and the old run could not deregister, its
// ZooKeeper session given up and then answered again) would have the
// other processes leave it a share of the old topic it never claims. It
// looks first (a read): a delete of no node is a write to ZooKeeper's log,
// every second while the topic is missing.
func (m *module) leaveWhileWaiting(idsDir string) {
	node := path.Join(idsDir, m.t.id)
	conn := m.t.conn()
	ok, stat, err := conn.Exists(node)
	if err != nil || !ok {
		return // looked again at the next reassignment
	}
	if err := conn.Delete(node, stat.Version); err == nil {
		m.log.Info("registration left by the module's previous run deleted: the module waits for its topic", "instance", m.t.id)
	}
}

// deregister deletes this instance's ids/ node: the other processes
// compute the assignment without it at once, and take its partitions as
// soon as their owner nodes are deleted.
func (m *module) deregister() error {
	node := path.Join(zklayout.ConsumerIDs(m.t.cfg.ZKChroot, m.cfg.Name), m.t.id)
	if err := m.t.conn().Delete(node, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("deregister %s: %w", node, err)
	}
	return nil
}

// owner is who holds a partition: the instance in the owner node, and the
// node's creation zxid (the epoch of that claim).
type owner struct {
	id    string
	epoch int64
}

func ownerIDs(o map[int32]owner) map[int32]string {
	out := make(map[int32]string, len(o))
	for p, w := range o {
		out[p] = w.id
	}
	return out
}

// owners reads who holds each partition. Only a node gone meanwhile means
// released: a node that cannot be read (no answer, no read permission)
// has an unknown owner, and taking its partition as free would move it
// (or claim it) needlessly. Such partitions are returned apart
// (unreadable, with the error): the reassignment keeps those this process
// holds and claims none of the others, and assigns every other partition
// (before, one such node failed every reassignment: a dead process's
// partitions were never taken over).
func (m *module) owners(dir string) (out map[int32]owner, unreadable map[int32]error, err error) {
	names, _, err := m.t.conn().Children(dir)
	if errors.Is(err, zk.ErrNoNode) {
		return map[int32]owner{}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", dir, err)
	}
	out = make(map[int32]owner, len(names))
	for _, n := range names {
		p, ok := zklayout.Partition(n)
		if !ok {
			continue // not an owner node: "07" is not partition 7's
		}
		node := path.Join(dir, n)
		data, stat, err := m.t.conn().Get(node)
		if errors.Is(err, zk.ErrNoNode) {
			continue // released meanwhile
		}
		if err != nil {
			if unreadable == nil {
				unreadable = map[int32]error{}
			}
			unreadable[p] = fmt.Errorf("read owner node %s: %w", node, err)
			continue
		}
		id := string(data)
		if id != m.t.id && m.t.ownsNode(m.t.conn(), data, stat) {
			// Rewritten by hand: still this process's (its session's),
			// which only this process may delete. Taken for what it is;
			// said once per rewrite (an idle claim keeps it until its
			// next commit, refused, and every reassignment reads it).
			if m.rewrittenOwners[p] != stat.Mzxid {
				if m.rewrittenOwners == nil {
					m.rewrittenOwners = map[int32]int64{}
				}
				m.rewrittenOwners[p] = stat.Mzxid
				m.log.Warn("owner node rewritten by hand; it is this process's session's, taken as this process's", "partition", p, "owner", id)
			}
			id = m.t.id
		}
		out[p] = owner{id: id, epoch: stat.Czxid}
	}
	return out, unreadable, nil
}

// ownsNode reports whether an owner node read (data, stat) is this
// process's: it holds its id, or it is an ephemeral node of its session,
// whatever it holds (rewritten by hand). Such a node no other process may
// create, and no session's end deletes while this process runs: left as
// another's, its partition would be pushed by nobody.
func (t *Transfer) ownsNode(conn *zk.Conn, data []byte, stat *zk.Stat) bool {
	return string(data) == t.id || stat.EphemeralOwner != 0 && stat.EphemeralOwner == conn.SessionID()
}

// unanswered reports whether a ZooKeeper request failed for want of an
// answer (the connection broke, no server could be reached) rather than by
// one (no node, no permission): asked again soon, it will be answered.
func unanswered(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer)
}

// warnUnreadable logs the owner nodes that cannot be read, when they
// changed since the last reassignment (they are read at every one).
func (m *module) warnUnreadable(unreadable map[int32]error) {
	var parts []int32
	for p := range unreadable {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, "%d: %v; ", p, unreadable[p])
	}
	now := b.String()
	if now == m.unreadableOwners {
		return
	}
	m.unreadableOwners = now
	if now == "" {
		m.log.Info("every owner node can be read again")
		return
	}
	m.log.Warn("owner nodes cannot be read: their partitions are left to whoever holds them, the others are assigned", "partitions", parts, "errors", strings.TrimSuffix(now, "; "))
}

// errHeld: another instance holds the owner node.
var errHeld = errors.New("held by another instance")

// claimOwner is a claim's owner node as created.
type claimOwner struct {
	epoch   int64 // creation zxid
	version int32
	session int64 // the ephemeral node's session
	// offsetVersion is the version of the partition's offset node as the
	// claim rewrote it (-1: there was none). Every owner node is at
	// version 0, so the owner node's version tells no claim from another:
	// this one does, and the claim's first write (its start offset)
	// checks it.
	offsetVersion int32
}

// takeOwner creates partition p's ephemeral owner node, in one multi-op
// with a rewrite of the partition's offset node (same value, its version
// checked): from the moment the node exists, any older claim of the
// partition fails to write the offset node, its commits and its start
// offset alike (a claim's start checks the version its own rewrite left,
// not one read later). A node left with this instance's id (a claim
// given up with a lost session, a failed delete) is deleted and created
// again, in one multi-op, so that the partition never looks free to
// another process meanwhile: the new claim's epoch is above every push of
// the old one. So is a persistent node (no process holds it: owner nodes
// are ephemeral).
//
// Every owner node is created at version 0, so a delete by version alone
// could remove a node created after the one read. The same multi-op bumps
// the version of the owners folder, and a delete of an owner node checks
// that version as read before the node (readOwner): it fails once any
// claim was made since.
func (m *module) takeOwner(p int32, node string) (claimOwner, error) {
	conn := m.t.conn()
	offsetNode := path.Join(zklayout.Offsets(m.t.cfg.ZKChroot, m.cfg.Name, m.cfg.Topic), strconv.Itoa(int(p)))
	var replace []any // the delete of the node read last, when it is to be replaced
	for range 5 {
		ops := append(replace,
			&zk.CreateRequest{Path: node, Data: []byte(m.t.id), Acl: m.t.acl, Flags: zk.FlagEphemeral},
			&zk.SetDataRequest{Path: path.Dir(node), Version: -1},
		)
		replace = nil
		off, ostat, err := conn.Get(offsetNode)
		rewrite := err == nil // the offset node, rewritten by the last op
		switch {
		case err == nil:
			ops = append(ops, &zk.SetDataRequest{Path: offsetNode, Data: off, Version: ostat.Version})
		case !errors.Is(err, zk.ErrNoNode):
			return claimOwner{}, err
		}
		res, cerr := conn.Multi(ops...)
		if cerr != nil && !errors.Is(cerr, zk.ErrNodeExists) {
			if errors.Is(cerr, zk.ErrNoNode) {
				// The owners directory is missing (a new layout: the
				// watcher that creates it may not have run yet), or the
				// offset node went away meanwhile.
				if err := zklayout.CreateAll(conn, path.Dir(node), m.t.acl); err != nil {
					return claimOwner{}, err
				}
				continue
			}
			if errors.Is(cerr, zk.ErrBadVersion) {
				continue // the offset node changed meanwhile, or a claim was made since the node to replace was read
			}
			return claimOwner{}, cerr
		}
		data, stat, dirVersion, err := readOwner(conn, node)
		if errors.Is(err, zk.ErrNoNode) {
			continue // deleted meanwhile
		}
		if err != nil {
			return claimOwner{}, err
		}
		switch {
		case !m.t.ownsNode(conn, data, stat) && stat.EphemeralOwner != 0:
			return claimOwner{}, errHeld
		case string(data) != m.t.id && stat.EphemeralOwner != 0:
			m.log.Warn("owner node rewritten by hand; it is this process's session's: created again", "partition", p, "owner", string(data))
		case string(data) != m.t.id:
			// Persistent (written by hand, copied by a tool): no
			// session's end deletes it, and it holds no live claim.
			m.log.Warn("persistent owner node deleted: owner nodes are ephemeral, this one would keep the partition from everyone", "partition", p, "owner", string(data))
		case cerr == nil:
			o := claimOwner{epoch: stat.Czxid, version: stat.Version, session: stat.EphemeralOwner, offsetVersion: -1}
			if rewrite {
				o.offsetVersion = res[len(res)-1].Stat.Version
			}
			return o, nil
		}
		if f := beforeOwnerDelete.Load(); f != nil {
			(*f)()
		}
		replace = []any{
			&zk.CheckVersionRequest{Path: path.Dir(node), Version: dirVersion},
			&zk.DeleteRequest{Path: node, Version: stat.Version},
		}
	}
	return claimOwner{}, fmt.Errorf("owner node %s keeps changing", node)
}

// readOwner reads an owner node and, first, the version of its folder,
// which every claim moves (takeOwner).
func readOwner(conn *zk.Conn, node string) (data []byte, stat *zk.Stat, dirVersion int32, err error) {
	if _, err := conn.Sync(node); err != nil {
		return nil, nil, 0, err
	}
	ok, dstat, err := conn.Exists(path.Dir(node))
	if err != nil {
		return nil, nil, 0, err
	}
	if !ok {
		return nil, nil, 0, zk.ErrNoNode
	}
	data, stat, err = conn.Get(node)
	return data, stat, dstat.Version, err
}

// deleteOwnerNode deletes the owner node read by readOwner, unless a claim
// was made since (zk.ErrBadVersion): that claim's node may be the one now
// there, at the same version 0.
func deleteOwnerNode(conn *zk.Conn, node string, version, dirVersion int32) error {
	if f := beforeOwnerDelete.Load(); f != nil {
		(*f)()
	}
	_, err := conn.Multi(
		&zk.CheckVersionRequest{Path: path.Dir(node), Version: dirVersion},
		&zk.DeleteRequest{Path: node, Version: version},
	)
	return err
}

// claim takes partition p: it creates the ephemeral owner node, and only
// then starts the partition (which stores its start offset, fenced, before
// reading). A node held by another instance is left alone; its deletion
// wakes the coordinator. gen is the session generation the assignment was
// computed in: a claim that finishes after the session was given up does
// not start (the next reconcile deletes or takes the node again).
func (m *module) claim(ctx context.Context, ownersDir string, p int32, gen uint64, errc chan<- error) error {
	node := path.Join(ownersDir, strconv.Itoa(int(p)))
	o, err := m.takeOwner(p, node)
	if errors.Is(err, errHeld) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("claim partition %d: %w", p, err)
	}
	rctx, cancel := context.WithCancel(ctx)
	part := newPartition(m, p, rctx)
	part.owner, part.epoch, part.ownerVersion, part.session = node, o.epoch, o.version, o.session
	part.offsetVersion = o.offsetVersion
	epoch := o.epoch
	c := &claimed{part: part, cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	if cur, up := m.t.session(); !up || cur != gen {
		m.mu.Unlock()
		cancel()
		return nil
	}
	part.hwGauge = m.stats.highWaterGauge(p) // under m.mu, as release's forget
	m.parts[p] = part
	m.claims[p] = c
	m.mu.Unlock()
	m.log.Info("partition claimed", "partition", p, "epoch", epoch)
	go func() {
		err := part.run(rctx)
		close(c.done)
		switch {
		case errors.Is(err, errDeposed):
			m.log.Error("partition lost: its owner node or offset changed under this process", "partition", p, "epoch", epoch)
			m.release(c, deposed)
			m.wake()
		case err != nil:
			select {
			case errc <- err:
			default: // the module is stopping already
			}
		}
	}()
	return nil
}

// releaseMode says what a release does in ZooKeeper.
type releaseMode int

const (
	// handOver commits what is acknowledged (fenced) and deletes the
	// owner node: the next owner starts at once, from that offset.
	handOver releaseMode = iota
	// drop does nothing in ZooKeeper: the session is lost, another
	// process may own the partition soon.
	drop
	// deposed commits nothing (the partition is no longer ours) and
	// deletes the owner node only when it is still this claim's.
	deposed
)

// releaseAll releases claims in parallel and returns when all are done.
func (m *module) releaseAll(cs []*claimed, mode releaseMode) {
	var wg sync.WaitGroup
	for _, c := range cs {
		c.stop()
		wg.Go(func() { m.release(c, mode) })
	}
	wg.Wait()
}

// stop ends a claim's reading, pushes and retries at once: queued records
// of the partition are dropped, a retry's wait ends, and no new attempt
// starts.
func (c *claimed) stop() {
	c.part.released.Store(true)
	c.cancel()
}

// release gives a claim up: stop reading, pushing and retrying (stop);
// on a hand-over, wait for the pushes in progress, bounded by
// shutdown_timeout_ms (a push that cannot be interrupted, or a dead-letter
// write Kafka has not answered, is abandoned: its record stays uncommitted
// and its late result is ignored), and store a
// restart offset whose store was under way and the start in a topic found
// created again within what is left, else (dropped,
// deposed: nothing is committed) abandon them at once; then, by mode,
// commit and delete the owner node; and give back the window slots of its
// records.
func (m *module) release(c *claimed, mode releaseMode) {
	if c.releasing.Swap(true) {
		return // released by another path (a commit found it deposed, the session was lost)
	}
	p := c.part
	m.mu.Lock()
	if m.claims[p.id] == c {
		delete(m.claims, p.id)
	}
	m.releasing[p.id]++ // its owner node is not an orphan yet
	if mode == handOver {
		m.handing[p.id] = c
	}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		if m.releasing[p.id]--; m.releasing[p.id] == 0 {
			delete(m.releasing, p.id)
		}
		if m.handing[p.id] == c {
			delete(m.handing, p.id)
		}
		m.mu.Unlock()
	}()
	c.stop()
	if mode != handOver {
		// Nothing is committed: a push in progress is of no use any more,
		// and one without an answer would hold its worker for ever. A
		// deposed claim's pushes would also overlap the new owner's of
		// the same keys.
		m.pusher.abandon(p)
		p.abandonWrites()
	}
	<-c.done        // the reader dispatches none of its records any more
	m.sched.drop(p) // its slots are given back below

	var deadline time.Time // a hand-over's bound
	if mode == handOver {
		deadline = time.Now().Add(time.Duration(m.t.cfg.ShutdownTimeoutMs) * time.Millisecond)
		// Not past ZooKeeper's silence for the session grace either: the
		// session may expire before the hand-over ends, and the next owner
		// push the same keys while these are still out. dropAll stops
		// the claims not being released then; this one stops here.
		//
		// Nor past the cut of the stop or reload this run is in: a
		// hand-over the coordinator began before it would otherwise wait
		// its own whole bound, and the run's release of the partitions
		// it kept another after it, while the stop gives up waiting for
		// the run at its own bound (and a reload starts the next run,
		// whose pushes of these keys would overlap the ones still out).
		//
		// Nor once its owner node is gone or another claim's (lost): the
		// next owner may be pushing the same keys already.
		for p.pushing.Load() > 0 && time.Now().Before(deadline) && m.zkFresh(p) && !m.cut() && !c.lost.Load() {
			time.Sleep(2 * time.Millisecond)
		}
		if m.cut() || c.lost.Load() {
			deadline = time.Now() // the stores below get their second
		}
		if c.lost.Load() {
			m.log.Warn("owner node deleted or taken during the hand-over", "partition", p.id, "epoch", p.epoch)
		}
		if n := p.pushing.Load(); n > 0 {
			m.log.Warn("pushes still in progress at release; abandoned, their records stay uncommitted and their connections are closed", "partition", p.id, "pushes", n)
			m.pusher.abandon(p) // they end, and give their workers back
			p.abandonWrites()   // so do the dead-letter writes still waiting for Kafka
		}
		if p.tracker != nil {
			// Within what is left of the same bound (a stop waits for
			// it, then not much more), a second at least. The reader
			// marks the partition (topicGone) until it leaves m.parts
			// below: a topic found created again after the mark is read
			// here and before then (the commit, a few milliseconds) is
			// missed, as one found after the hand-over is. A restart
			// offset whose store was under way is stored first: a
			// topic created again is stored after it.
			p.handOverPendingStart(max(time.Until(deadline), time.Second))
			p.handOverNewTopicStart(max(time.Until(deadline), time.Second))
		}
	}
	m.commitMu.Lock()
	if mode == handOver && p.tracker != nil {
		m.handOverCommitLocked(p, c, deadline)
	}
	held, ready := 0, 0
	if p.tracker != nil {
		held, ready = p.tracker.drop()
	}
	m.mu.Lock()
	if m.parts[p.id] == p { // not a newer claim of the partition
		delete(m.parts, p.id)
		m.stats.forget(p.id) // under commitMu: no commit re-creates its series
	}
	m.mu.Unlock()
	m.commitMu.Unlock()
	m.uncommitted.Add(-int64(ready)) // acknowledged, never to be committed here
	for range held {                 // dispatched records that will never be committed here
		<-m.slots
	}
	m.reader.signal()
	if mode != drop {
		_ = m.deleteOwner(p.id, p.epoch) // logged; retried by the reassignment
	}
	m.log.Info("partition released", "partition", p.id, "epoch", p.epoch, "mode", mode.String())
}

// handOverRetry is the pause between two tries of a hand-over's commit.
const handOverRetry = 50 * time.Millisecond

// handOverCommitLocked stores what partition p's hand-over leaves
// acknowledged (m.commitMu held). A write ZooKeeper fails without refusing
// it (a connection lost, a server restarting, a write denied for a while)
// is tried again every handOverRetry, within the hand-over's bound
// (deadline), a second at least: nothing else stores these records once p
// is released, and the next owner would push them again from the last
// commit. It stops when the commit is refused (deposed), the owner node is
// gone or another claim's (lost), or ZooKeeper has not answered within the
// grace: the next owner may be starting.
func (m *module) handOverCommitLocked(p *partition, c *claimed, deadline time.Time) {
	until := time.Now().Add(time.Second)
	if deadline.After(until) {
		until = deadline
	}
	for {
		if _, lost := m.commitLocked([]*partition{p}); len(lost) > 0 {
			return
		}
		offset, n, due := p.tracker.toCommit()
		if !due {
			return
		}
		if c.lost.Load() || !m.zkFresh(p) || !time.Now().Add(handOverRetry).Before(until) {
			m.log.Warn("hand-over commit not stored; the next owner pushes these records again", "partition", p.id,
				"offset", offset, "records", n)
			return
		}
		m.commitMu.Unlock()
		time.Sleep(handOverRetry)
		m.commitMu.Lock()
	}
}

// cut tells whether the run's pushes were cut short (pushesCut).
func (m *module) cut() bool {
	select {
	case <-m.pushesCut:
		return true
	default:
		return false
	}
}

func (r releaseMode) String() string {
	return [...]string{"hand_over", "drop", "deposed"}[r]
}

// deleteOwner deletes partition p's owner node when it holds this
// instance's id (and, when epoch is not 0, was created by that claim),
// trying a few times. A node left behind is deleted by a later
// reassignment (woken here), or, when the module is stopping for good, by
// the cleanup of its nodes (nodeCleanup).
func (m *module) deleteOwner(p int32, epoch int64) error {
	var err error
	for n := 1; n <= 3; n++ {
		if err = m.deleteOwnerOnce(p, epoch); err == nil {
			return nil
		}
		time.Sleep(time.Duration(n) * 50 * time.Millisecond)
	}
	m.log.Warn("owner node not deleted; deleted later", "partition", p, "err", err)
	m.wake()
	return err
}

// beforeOwnerDelete, when a test sets it, runs between the read of an
// owner node and its delete.
var beforeOwnerDelete atomic.Pointer[func()]

// deleteOwnerOnce is one try of deleteOwner: nil when the node is gone or
// another claim's (another instance's id, or another epoch).
func (m *module) deleteOwnerOnce(p int32, epoch int64) error {
	node := path.Join(zklayout.Owners(m.t.cfg.ZKChroot, m.cfg.Name, m.cfg.Topic), strconv.Itoa(int(p)))
	var err error
	for range 3 {
		conn := m.t.conn()
		data, stat, dirVersion, rerr := readOwner(conn, node)
		if errors.Is(rerr, zk.ErrNoNode) || rerr == nil && (!m.t.ownsNode(conn, data, stat) || epoch != 0 && stat.Czxid != epoch) {
			return nil // gone, or another claim's
		}
		if err = rerr; err != nil {
			break
		}
		if err = deleteOwnerNode(conn, node, stat.Version, dirVersion); err == nil || errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if !errors.Is(err, zk.ErrBadVersion) {
			break
		}
		// A claim was made since the read: read the node again.
	}
	return fmt.Errorf("delete owner node %s: %w", node, err)
}

// dropAll stops every partition at once, without ZooKeeper: the session is
// lost, and another instance may own them soon. It does not wait.
func (m *module) dropAll() {
	m.mu.Lock()
	cs := make([]*claimed, 0, len(m.claims))
	for p, c := range m.claims {
		cs = append(cs, c)
		delete(m.claims, p) // a claim in the next session is a new one
	}
	m.mu.Unlock()
	for _, c := range cs {
		c.stop()
	}
	go func() {
		m.releaseAll(cs, drop)
		m.wake()
	}()
}
