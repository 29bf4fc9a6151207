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
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// Version is reported in the ids/ registration.
const Version = "0.1.0"

// debounce gathers the ZooKeeper events of one change (an instance
// joining fires ids/ and then owners/) into one reassignment.
const debounce = 100 * time.Millisecond

// partitionPoll is how often the topic is checked for new partitions.
const partitionPoll = 10 * time.Second

// claimed is a partition this process holds: its read loop and its owner node.
type claimed struct {
	part   *partition
	cancel context.CancelFunc
	done   chan struct{} // closed when the read loop returned
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
	go m.watchDir(ctx, ownersDir)
	poll := time.NewTicker(partitionPoll)
	defer poll.Stop()
	var known []int32
	for {
		if err := m.reconcile(ctx, idsDir, ownersDir, errc); err != nil {
			m.log.Warn("reassignment failed; will retry", "err", err)
			sleep(ctx, time.Second)
			m.wake()
		}
		select {
		case <-ctx.Done():
			return
		case <-m.changed:
			sleep(ctx, debounce)
		case <-poll.C:
			parts, err := m.t.partitions(ctx, m.cfg.Topic)
			if err == nil && !slices.Equal(parts, known) {
				if known != nil {
					m.log.Info("topic partitions changed", "partitions", len(parts))
				}
				known = parts
			}
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

// watchDir wakes the coordinator whenever dir's children change.
func (m *module) watchDir(ctx context.Context, dir string) {
	for ctx.Err() == nil {
		_, _, ev, err := m.t.conn().ChildrenW(dir)
		if errors.Is(err, zk.ErrNoNode) {
			if err = zklayout.CreateAll(m.t.conn(), dir, m.t.acl); err == nil {
				continue
			}
		}
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		select {
		case <-ev:
			m.wake()
		case <-ctx.Done():
			return
		}
	}
}

// reconcile registers this instance if needed, computes the assignment
// and applies this process's part of it.
func (m *module) reconcile(ctx context.Context, idsDir, ownersDir string, errc chan<- error) error {
	if !m.t.sessionUp() {
		return nil // without a session nothing is ours; the session watcher wakes us
	}
	if err := m.register(idsDir); err != nil {
		return err
	}
	ids, _, err := m.t.conn().Children(idsDir)
	if err != nil {
		return fmt.Errorf("list %s: %w", idsDir, err)
	}
	parts, err := m.t.knownPartitions(ctx, m.cfg.Topic)
	if err != nil {
		return err
	}
	owners, err := m.owners(ownersDir)
	if err != nil {
		return err
	}
	target := assign(ids, parts, owners)
	me := m.t.id
	m.mu.Lock()
	var release []int32
	for p := range m.claims {
		if target[p] != me {
			release = append(release, p)
		}
	}
	m.mu.Unlock()
	for _, p := range release {
		m.release(p, true)
	}
	for _, p := range parts {
		if target[p] != me {
			continue
		}
		m.mu.Lock()
		_, held := m.claims[p]
		m.mu.Unlock()
		if !held {
			m.claim(ctx, ownersDir, p, errc)
		}
	}
	return nil
}

// register creates this instance's ephemeral ids/ node if it is missing
// (first start, or a new session after the old one expired).
func (m *module) register(idsDir string) error {
	node := path.Join(idsDir, m.t.id)
	if ok, _, err := m.t.conn().Exists(node); err != nil || ok {
		return err
	}
	if err := zklayout.CreateAll(m.t.conn(), idsDir, m.t.acl); err != nil {
		return err
	}
	data, _ := json.Marshal(m.t.registration())
	if _, err := m.t.conn().Create(node, data, zk.FlagEphemeral, m.t.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("register %s: %w", node, err)
	}
	m.log.Info("registered", "instance", m.t.id)
	return nil
}

// owners reads who holds each partition.
func (m *module) owners(dir string) (map[int32]string, error) {
	names, _, err := m.t.conn().Children(dir)
	if errors.Is(err, zk.ErrNoNode) {
		return map[int32]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	out := make(map[int32]string, len(names))
	for _, n := range names {
		p, err := strconv.ParseInt(n, 10, 32)
		if err != nil {
			continue
		}
		data, _, err := m.t.conn().Get(path.Join(dir, n))
		if err != nil {
			continue // released meanwhile
		}
		out[int32(p)] = string(data)
	}
	return out, nil
}

// claim takes partition p: it creates the ephemeral owner node, and only
// then starts reading from the committed offset. A node held by another
// instance is left alone; its deletion wakes the coordinator.
func (m *module) claim(ctx context.Context, ownersDir string, p int32, errc chan<- error) {
	node := path.Join(ownersDir, strconv.Itoa(int(p)))
	_, err := m.t.conn().Create(node, []byte(m.t.id), zk.FlagEphemeral, m.t.acl)
	if errors.Is(err, zk.ErrNodeExists) {
		data, _, gerr := m.t.conn().Get(node)
		if gerr != nil || string(data) != m.t.id {
			return // another instance still holds it
		}
		err = nil // ours already (created before a reconnect)
	}
	if err != nil {
		m.log.Warn("claim partition failed", "partition", p, "err", err)
		return
	}
	rctx, cancel := context.WithCancel(ctx)
	part := newPartition(m, p, rctx)
	c := &claimed{part: part, cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	m.parts[p] = part
	m.claims[p] = c
	m.mu.Unlock()
	m.log.Info("partition claimed", "partition", p)
	go func() {
		defer close(c.done)
		if err := part.run(rctx); err != nil {
			errc <- err
		}
	}()
}

// release gives partition p up: stop reading, drop its queued records,
// wait for its pushes in flight (bounded by shutdown_timeout_ms), commit,
// free its window slots, and — when the session is still ours — delete the
// owner node, which lets the next owner start from the committed offset.
func (m *module) release(p int32, withZK bool) {
	m.mu.Lock()
	c, ok := m.claims[p]
	delete(m.claims, p)
	m.mu.Unlock()
	if !ok {
		return
	}
	c.cancel()
	<-c.done
	c.part.released.Store(true)
	deadline := time.Now().Add(time.Duration(m.t.cfg.ShutdownTimeoutMs) * time.Millisecond)
	for c.part.pushing.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	m.commitMu.Lock()
	if withZK {
		m.commitAllLocked()
	}
	m.mu.Lock()
	delete(m.parts, p)
	m.mu.Unlock()
	m.stats.forget(p) // before commits go on: none re-creates its series
	m.commitMu.Unlock()
	if t := c.part.tracker; t != nil {
		inFlight, ready := t.drop()
		m.uncommitted.Add(-int64(ready)) // acknowledged, never to be committed here
		for range inFlight + ready {     // dispatched records that will never be committed here
			<-m.slots
		}
		m.reader.signal()
	}
	if withZK {
		node := path.Join(zklayout.Owners(m.t.cfg.ZKChroot, m.cfg.Name, m.cfg.Topic), strconv.Itoa(int(p)))
		if data, stat, err := m.t.conn().Get(node); err == nil && string(data) == m.t.id {
			_ = m.t.conn().Delete(node, stat.Version)
		}
	}
	m.log.Info("partition released", "partition", p, "handed_over", withZK)
}

// dropAll stops every partition at once, without ZooKeeper: the session is
// lost, and another instance may own them soon.
func (m *module) dropAll() {
	m.mu.Lock()
	parts := make([]int32, 0, len(m.claims))
	for p := range m.claims {
		parts = append(parts, p)
	}
	m.mu.Unlock()
	for _, p := range parts {
		m.release(p, false)
	}
}
