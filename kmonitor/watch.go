package kmonitor

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// retryDelay is the pause before asking ZooKeeper again after an error
// (disconnected, session expired, …); the client reconnects by itself.
const retryDelay = 500 * time.Millisecond

// watchChildren keeps one goroutine per child of dir, started with spawn
// and cancelled when the child disappears or ctx ends. It follows dir with
// a child watch, waits for dir to be created when it does not exist, and
// rides out disconnects and session expiry by asking again. A child's
// goroutine may also end by itself (its znode was deleted): dir is then
// listed again, and a child of that name present by then (deleted and
// created again in between) gets a new goroutine. When dir's parent is
// gone as well it returns, but for root (see waitCreated): the watcher of
// the parent's parent lists it again then, and starts this one anew if
// the parent comes back (see folder for the rest). With spawn nil, the
// names are only told to f.listed. The children of the first listing are
// each given a unit of f.read, which they settle once read themselves;
// f.settle is called once the first listing is done (found, missing or
// denied), or when the watcher returns before; root's not while it is
// missing: a cluster with nothing to read is not a cluster read (see
// cluster.setMissing).
func (c *cluster) watchChildren(ctx context.Context, conn *zk.Conn, f folder, spawn func(ctx context.Context, name string, settle func())) {
	dir := f.path
	settle := f.read.unit(f.settle)
	defer settle()
	denied := false // f.denied is in the state
	w := new(byte)  // this watcher, in the entries it sets
	type child struct {
		name   string
		cancel context.CancelFunc
	}
	running := map[string]*child{}
	var (
		endedMu sync.Mutex
		ended   []*child                 // goroutines that returned by themselves
		wake    = make(chan struct{}, 1) // something was added to ended
	)
	var wg sync.WaitGroup // the children: every goroutine has an owner that waits for it
	defer func() {
		for _, ch := range running {
			ch.cancel()
		}
		wg.Wait()
		if denied && f.client.Err() == nil && f.standsIn() {
			c.state.dropOffset(f.denied, w) // the folder is gone
		}
	}()
	for relist := false; ctx.Err() == nil; relist = true {
		if d := claimsRelistDelay.Load(); d > 0 && relist && spawn == nil {
			time.Sleep(time.Duration(d)) // 0 but in tests
		}
		if d := foldersRelistDelay.Load(); d > 0 && relist && spawn != nil && !f.root {
			time.Sleep(time.Duration(d)) // 0 but in tests
		}
		endedMu.Lock()
		for _, ch := range ended {
			if running[ch.name] == ch {
				delete(running, ch.name)
			}
		}
		ended = ended[:0]
		endedMu.Unlock()
		names, _, ev, err := conn.ChildrenW(dir)
		if errors.Is(err, zk.ErrNoNode) {
			for n, ch := range running { // dir is gone, and so are they
				ch.cancel()
				delete(running, n)
			}
			f.listed(nil)
			var parentThere bool
			if d := parentWaitDelay.Load(); d > 0 {
				time.Sleep(time.Duration(d)) // 0 but in tests
			}
			if f.root {
				// Counted as an error from now on, whatever the chroot's
				// own lookup answers.
				p, reason, err := missingRoot(conn, dir)
				if err == nil || c.missingPath() == "" {
					c.setMissing(p, reason)
				}
			} else {
				settle() // nothing under it to read
			}
			parentThere, err = waitCreated(ctx, conn, dir, f.root, func(err error) {
				// The folder that could not be listed is gone, once its
				// parent answers. Not while the parent may not be listed
				// either (or ZooKeeper did not answer): the entry stays,
				// set again below, rather than vanish until then.
				if denied && f.standsIn() && (err == nil || errors.Is(err, zk.ErrNoNode)) {
					c.state.dropOffset(f.denied, w)
					denied = false
				}
			})
			if !parentThere {
				return
			}
			names, ev = nil, nil
		}
		if errors.Is(err, zk.ErrNoAuth) {
			// Shown as an error in place of the offsets it holds; asked
			// again now and then, for an ACL that changes.
			if f.standsIn() {
				c.state.deniedFolder(ctx, f.denied, w, dir, fmt.Errorf("%w; set zk_auth for cluster %s", err, c.name))
			}
			if !denied { // when it starts, not at every retry
				c.log.Warn("znode unreadable: set zk_auth", "path", dir, "err", err)
			}
			denied = true
			settle() // shown as unreadable
			sleep(ctx, 10*retryDelay)
			continue
		}
		if denied && err == nil && f.standsIn() {
			c.state.dropOffset(f.denied, w)
			denied = false
		}
		if err != nil {
			c.log.Debug("list znode children", "path", dir, "err", err)
			sleep(ctx, retryDelay)
			continue
		}
		if ev == nil {
			continue // dir exists now: list it
		}
		if f.root {
			c.setMissing("", "")
		}
		f.listed(names)
		seen := make(map[string]bool, len(names))
		for _, n := range names {
			seen[n] = true
			if _, ok := running[n]; !ok && spawn != nil {
				cctx, cancel := context.WithCancel(ctx)
				ch := &child{name: n, cancel: cancel}
				running[n] = ch
				read := f.read.unit(nil) // counted before this listing settles
				wg.Go(func() {
					defer read()
					spawn(cctx, n, read)
					byItself := cctx.Err() == nil
					cancel() // else cctx stays among ctx's children until ctx ends
					if !byItself {
						return // cancelled here: nothing to tell
					}
					endedMu.Lock()
					ended = append(ended, ch)
					endedMu.Unlock()
					select {
					case wake <- struct{}{}:
					default:
					}
				})
			}
		}
		for n, ch := range running {
			if !seen[n] {
				ch.cancel()
				delete(running, n)
			}
		}
		settle()
		select {
		case <-ev:
		case <-wake:
		case <-ctx.Done():
		}
		if d := consumersRelistDelay.Load(); d > 0 && f.root {
			sleep(ctx, time.Duration(d)) // 0 but in tests
		}
	}
}

// missingRoot names what is missing when <chroot>/consumers (root) is,
// the chroot itself or only consumers/ in it, and what may be wrong; it is
// root when the chroot cannot be looked up (err).
func missingRoot(conn *zk.Conn, root string) (p, reason string, err error) {
	chroot := path.Dir(root)
	ok, _, err := conn.Exists(chroot)
	if err == nil && !ok {
		return chroot, "no such chroot: check chroot and zk_hosts", nil
	}
	return root, "no module has offsets in the chroot yet: check chroot", err
}

// waitCreated blocks until p exists (root: or its parent, see below) or
// ctx ends, and reports whether p's parent exists. It waits with a child watch on the parent, not with an
// exists watch on p: ZooKeeper ends a child watch when its node is deleted,
// whereas an exists watch on a node that is never created stays on the
// server for as long as the session, and this client has no call to
// remove a watch (a module that goes away before it has offsets/ would
// leave one behind every time). The parent's child watch is one the
// server holds anyway for the parent's own watcher. When the parent is
// missing too it returns false at once, unless root: the top of what
// kmonitor follows (<chroot>/consumers, in a chroot that may not exist
// yet) waits for the chroot with an exists watch, one per client at most,
// which ends when the chroot is created or the client is closed. It
// returns then, consumers/ created or not: the listing that follows says
// which of the two is missing now (see missingRoot). answered, if not nil,
// is told the parent's listing's error before the wait.
func waitCreated(ctx context.Context, conn *zk.Conn, p string, root bool, answered func(err error)) (bool, error) {
	parent := path.Dir(p)
	names, _, ev, err := conn.ChildrenW(parent)
	if answered != nil {
		answered(err)
	}
	switch {
	case errors.Is(err, zk.ErrNoNode) && root:
		var ok bool
		ok, _, ev, err = conn.ExistsW(parent)
		if err != nil || ok {
			return true, err
		}
	case errors.Is(err, zk.ErrNoNode):
		return false, nil
	case err != nil:
		return true, err
	case slices.Contains(names, path.Base(p)):
		return true, nil
	}
	select {
	case <-ev:
	case <-ctx.Done():
	}
	return true, nil
}

// pauseAfter waits before asking ZooKeeper again after err: an unreadable
// node (its ACL) is asked again as seldom as an unreadable folder is.
func pauseAfter(ctx context.Context, err error) {
	if errors.Is(err, zk.ErrNoAuth) {
		sleep(ctx, 10*retryDelay)
	} else {
		sleep(ctx, retryDelay)
	}
}

// watchOffset follows one offset znode until it is deleted or ctx ends.
// The offset is dropped then, unless client (the ZooKeeper client's
// context) has ended too: kept through a client's replacement, it shows as
// an error while ZooKeeper is away rather than vanish.
// settle is called once its first reading is done (read, missing or
// denied).
func (c *cluster) watchOffset(ctx, client context.Context, conn *zk.Conn, k partKey, p string, settle func()) {
	w := new(byte) // this watcher: a new one may have set k by the time it ends
	defer func() {
		if client.Err() == nil {
			time.Sleep(time.Duration(offsetWatcherEndDelay.Load())) // 0 but in tests
			c.state.dropOffset(k, w)
		}
	}()
	denied := false
	for reread := false; ctx.Err() == nil; reread = true {
		if reread {
			time.Sleep(time.Duration(offsetRereadDelay.Load())) // 0 but in tests
		} else {
			time.Sleep(time.Duration(offsetFirstReadDelay.Load())) // 0 but in tests
		}
		data, _, ev, err := conn.GetW(p)
		if errors.Is(err, zk.ErrNoNode) {
			return // deleted: the parent lists its folder again
		}
		if errors.Is(err, zk.ErrNoAuth) {
			// Shown on the dashboard as an error; asked again now and then,
			// for an ACL that changes (logged when it starts, not at every
			// retry).
			c.state.unreadable(ctx, k, w, fmt.Errorf("%w; set zk_auth for cluster %s", err, c.name))
			settle()
			if !denied {
				c.log.Warn("offset znode unreadable: set zk_auth", "path", p, "err", err)
			}
			denied = true
			sleep(ctx, 10*retryDelay)
			continue
		}
		denied = denied && err != nil
		if err != nil {
			c.log.Debug("read offset znode", "path", p, "err", err)
			sleep(ctx, retryDelay)
			continue
		}
		if err := c.state.setOffset(ctx, k, w, data); err != nil {
			c.log.Warn("bad offset znode", "path", p, "err", err)
		}
		settle()
		select {
		case <-ev:
		case <-ctx.Done():
		}
	}
}

// offsetWatcherEndDelay delays the end of an offset watcher,
// offsetRereadDelay its reads but the first, and offsetFirstReadDelay its
// first, as a busy machine or ZooKeeper can: a test sets them
// (export_test.go).
var offsetWatcherEndDelay, offsetRereadDelay, offsetFirstReadDelay atomic.Int64

// consumersRelistDelay delays the listing of <chroot>/consumers that
// follows a change, as on a machine too busy to run it at once: a test
// sets it (export_test.go).
var consumersRelistDelay atomic.Int64

// claimsRelistDelay delays the listings of a module's owners/<topic> but
// the first (the folders followed with no goroutine per child), between
// seeing its watcher's context alive and listing the folder, as a busy
// machine can: a test sets it (export_test.go).
var claimsRelistDelay atomic.Int64

// foldersRelistDelay delays the listings but the first of the folders
// below <chroot>/consumers followed with a goroutine per child (a module's
// offsets/ and owners/, offsets/<topic>), between seeing its watcher's
// context alive and listing the folder, as a busy machine can: a test sets
// it (export_test.go).
var foldersRelistDelay atomic.Int64

// parentWaitDelay delays a folder watcher's wait for its deleted folder
// to come back (before it lists the parent), as a busy machine can: a test
// sets it (export_test.go).
var parentWaitDelay atomic.Int64

// folder is a folder watchChildren follows.
type folder struct {
	path string
	// root marks <chroot>/consumers, the top (see waitCreated).
	root bool
	// listed is told each listing's names (none when the folder does not
	// exist).
	listed func(names []string)
	// denied is the entry that stands for the offsets under the folder
	// while kmonitor may not list it (its ACL): "*" in place of what the
	// listing would have named. Zero for a folder of owners/: the offsets
	// say what cannot be read.
	denied partKey
	// client is the ZooKeeper client's context: when it has ended, the
	// folder is not gone, and its entries stay (see followOffsets).
	client context.Context
	// read counts what the client's first reading has left to read, and
	// settle ends the folder's own unit of it (see watchChildren).
	read   *firstRead
	settle func()
}

// firstRead counts the folders and offsets a ZooKeeper client has still
// to read once: while it is above zero the partitions known are only
// those read so far. done is called when it reaches zero.
type firstRead struct {
	n    atomic.Int64
	done func()
	// parent, if not nil, is given a unit with each of this one's, taken
	// off after it.
	parent *firstRead
}

// unit adds one to what is left to read, and returns the call, run once
// (later calls do nothing), that takes it off again, after then (if any).
func (r *firstRead) unit(then func()) func() {
	var up func()
	if r != nil {
		r.n.Add(1)
		if r.parent != nil {
			up = r.parent.unit(nil)
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			if then != nil {
				then()
			}
			if r != nil && r.n.Add(-1) == 0 {
				r.done()
			}
			if up != nil {
				up()
			}
		})
	}
}

// standsIn reports whether an entry stands for the folder while it cannot
// be listed.
func (f folder) standsIn() bool { return f.denied != partKey{} }

// followOffsets follows <chroot>/consumers/*/offsets/*/* : every module,
// topic and partition, as they come and go. ctx is the client's: when it
// ends (the client is replaced, or kmonitor stops) the offsets read stay
// in the state, and the next client's listings drop those that are gone.
//
// Once everything found by its first listings is read (and the client is
// still on), the cluster counts as read (see cluster.everRead).
func (c *cluster) followOffsets(ctx context.Context, conn *zk.Conn) {
	client := ctx
	consumers := path.Join(c.cfg.Chroot, "consumers")
	read := &firstRead{done: func() {
		if client.Err() == nil && !c.everRead.Swap(true) {
			select {
			case c.readWake <- struct{}{}:
			default:
			}
		}
	}}
	c.watchChildren(ctx, conn, folder{path: consumers, root: true, client: client, read: read,
		denied: partKey{"*", "*", "*"},
		listed: func(modules []string) {
			c.state.pruneStale(func(k partKey) bool { return !slices.Contains(modules, k.module) })
			c.state.pruneOwned(func(k moduleTopic) bool { return !slices.Contains(modules, k.module) })
			c.state.pruneCounts(func(k moduleTopic) bool { return !slices.Contains(modules, k.module) })
		},
	}, func(ctx context.Context, module string, settle func()) {
		// offsets/ and owners/ are followed side by side. When either
		// watcher returns by itself (the module's znode is gone), the
		// other is stopped too: the module ends, and consumers/ is listed
		// again, which starts it anew if it was created again by then.
		// Left running, the other would follow the new module alone, and
		// what the returned one followed would never be read again.
		ctx, stop := context.WithCancel(ctx)
		var owners sync.WaitGroup
		defer owners.Wait()
		defer stop()
		ownersRead := read.unit(nil)
		owners.Go(func() {
			defer stop()
			defer ownersRead()
			c.followOwners(ctx, client, conn, path.Join(consumers, module, "owners"), module, read, ownersRead)
		})
		offsets := path.Join(consumers, module, "offsets")
		c.watchChildren(ctx, conn, folder{path: offsets, client: client, read: read, settle: settle,
			denied: partKey{module, "*", "*"},
			listed: func(topics []string) {
				c.state.pruneStale(func(k partKey) bool { return k.module == module && !slices.Contains(topics, k.topic) })
				c.state.pruneCounts(func(k moduleTopic) bool { return k.module == module && !slices.Contains(topics, k.topic) })
			},
		}, func(ctx context.Context, topic string, settle func()) {
			dir := path.Join(offsets, topic)
			// Its partitions with no offset known are not read yet, not
			// unstored, until the folder is listed and every offset znode
			// it lists read once: the count, read beside, may come first.
			mt, w := moduleTopic{module, topic}, new(byte)
			c.state.startReading(mt, w)
			defer c.state.readDone(mt, w)
			defer func() {
				if client.Err() == nil { // else it stays, as the offsets do
					c.state.setListed(ctx, mt, w, nil, true)
				}
			}()
			topicRead := &firstRead{parent: read, done: func() { c.state.readDone(mt, w) }}
			// The node's partition count, followed beside its children.
			var count sync.WaitGroup
			defer count.Wait()
			ctx, stop := context.WithCancel(ctx)
			defer stop()
			countRead := read.unit(nil) // the count is part of the first reading
			count.Go(func() {
				defer countRead()
				c.watchCount(ctx, client, conn, moduleTopic{module, topic}, dir, countRead)
				// Returned by itself (the module's offsets/ is gone): the
				// folder's watcher is stopped too, and the topic is
				// started anew by the next listing of offsets/ if it is
				// there again by then (as offsets/ and owners/ are
				// paired). Left running, it would follow a module created
				// again alone: its count never read again, the unstored
				// partitions gone from every output.
				stop()
			})
			c.watchChildren(ctx, conn, folder{path: dir, client: client, read: topicRead, settle: settle,
				denied: partKey{module, topic, "*"},
				listed: func(names []string) {
					c.state.pruneStale(func(k partKey) bool {
						return k.module == module && k.topic == topic && !slices.Contains(names, k.name)
					})
					c.state.setListed(ctx, mt, w, names, false)
				},
			}, func(ctx context.Context, name string, settle func()) {
				k := partKey{module: module, topic: topic, name: name}
				c.watchOffset(ctx, client, conn, k, path.Join(dir, name), settle)
			})
		})
	})
}

// watchCount follows the partition count a module's offsets/<topic> node
// p records (zklayout.OffsetsTopic; ktransfer writes it with the node and
// moves it on as added partitions get their offsets) until ctx ends: with
// it, a partition the brokers list that has no offset znode is reported
// (see state.unstored). The count is dropped while the node is missing,
// and when the watcher ends, unless client (the ZooKeeper client's
// context) has ended too: it stays then, as the offsets do.
//
// read is called once the node was first read, found missing or
// unreadable (its ACL); not while ZooKeeper does not answer.
func (c *cluster) watchCount(ctx, client context.Context, conn *zk.Conn, k moduleTopic, p string, read func()) {
	w := new(byte) // this watcher: a new one may have set k by the time it ends
	defer func() {
		if client.Err() == nil {
			c.state.setCount(ctx, k, w, 0, true)
		}
	}()
	for ctx.Err() == nil {
		data, _, ev, err := conn.GetW(p)
		if errors.Is(err, zk.ErrNoNode) {
			c.state.setCount(ctx, k, w, 0, false)
			read()
			there, err := waitCreated(ctx, conn, p, false, nil)
			if !there {
				return // the module's offsets/ is gone: so is this watcher's folder
			}
			if err != nil {
				// offsets/ could not be listed (its ACL: asked again as
				// seldom as an unreadable folder is; or ZooKeeper away):
				// asked again after a pause, not back to back.
				c.log.Debug("wait for offsets node", "path", p, "err", err)
				pauseAfter(ctx, err)
			}
			continue
		}
		if err != nil {
			// Not readable (its ACL: the listing of its children says
			// so, and is asked again as seldom) or ZooKeeper away: asked
			// again.
			c.log.Debug("read offsets node", "path", p, "err", err)
			if errors.Is(err, zk.ErrNoAuth) {
				read()
			}
			pauseAfter(ctx, err)
			continue
		}
		n, _ := zklayout.ParseOffsetsTopic(data)
		c.state.setCount(ctx, k, w, n, false)
		read()
		select {
		case <-ev:
		case <-ctx.Done():
		}
	}
}

// followOwners follows a module's owners/<topic>/<partition>: the
// partitions its ktransfer processes have claimed. One claimed without an
// offset committed yet is reported as such (see state.snapshot), not left
// out. The claims are dropped when their folder goes; when client (the
// ZooKeeper client's context) ends they stay, as the offsets do, until
// the next client has listed them again or found them gone.
func (c *cluster) followOwners(ctx, client context.Context, conn *zk.Conn, owners, module string, read *firstRead, settle func()) {
	c.watchChildren(ctx, conn, folder{path: owners, client: client, read: read, settle: settle,
		listed: func(topics []string) {
			c.state.pruneOwned(func(k moduleTopic) bool { return k.module == module && !slices.Contains(topics, k.topic) })
		},
	}, func(ctx context.Context, topic string, settle func()) {
		// A folder deleted and created again gets a new watcher while
		// this one may still be ending: it drops only its own listing.
		w := new(byte)
		defer func() {
			if client.Err() == nil {
				c.state.setOwned(ctx, module, topic, w, nil)
			}
		}()
		c.watchChildren(ctx, conn, folder{path: path.Join(owners, topic), client: client, read: read, settle: settle,
			listed: func(names []string) { c.state.setOwned(ctx, module, topic, w, names) },
		}, nil)
	})
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
