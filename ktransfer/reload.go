package ktransfer

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/logging"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// Reload results, in /status and ktransfer_config_reloads_total.
const (
	reloadOK      = "ok"
	reloadRefused = "refused"
)

// ConfigStatus is /status's account of the configuration in use.
type ConfigStatus struct {
	File string `json:"file,omitempty"`
	// Hash identifies the contents of ktransfer.yaml and the enabled
	// module files in use, and of the secret, certificate and password
	// files they name (by digest): the first 12 hex digits of a SHA-256.
	Hash     string    `json:"hash"`
	LoadedAt time.Time `json:"loaded_at"`
	// RestartNeeded are the keys whose value in the files, as of the
	// latest applied reload, differs from the running one: they apply only
	// after a restart (a reload that reverts them clears them).
	RestartNeeded []string `json:"restart_needed,omitempty"`
	// CleanupPending are the modules stopped by reloads whose ZooKeeper
	// nodes (ids/ registration, owner nodes) are not deleted yet: ZooKeeper
	// did not answer as they stopped. Retried until deleted.
	CleanupPending []string `json:"cleanup_pending,omitempty"`
	// LastReload is the latest reload's outcome; nil before the first.
	LastReload *ReloadStatus `json:"last_reload,omitempty"`
}

// ReloadStatus is the outcome of one reload.
type ReloadStatus struct {
	At     time.Time `json:"at"`
	TookMs int64     `json:"took_ms"`
	Result string    `json:"result"`          // ok or refused
	Error  string    `json:"error,omitempty"` // why it was refused: every problem, one a line
	// Hash is the files' hash as read; when refused, not the one in use.
	Hash      string   `json:"hash,omitempty"`
	Started   []string `json:"started,omitempty"`   // modules added
	Stopped   []string `json:"stopped,omitempty"`   // modules removed (handed over)
	Restarted []string `json:"restarted,omitempty"` // modules changed
	// NotStarted are the modules added or changed that were not started:
	// the process began to stop while the reload handed modules over (a
	// changed one is in Stopped then, not in Restarted).
	NotStarted []string `json:"not_started,omitempty"`
	// RestartNeeded are the changed keys that apply only after a restart;
	// their running values are kept.
	RestartNeeded []string `json:"restart_needed,omitempty"`
}

// liveKeys are the ktransfer.yaml keys a reload applies; a change of any
// other key is logged as needing a restart.
var liveKeys = map[string]bool{"module_enabled": true, "module_conf_dir": true, "log_level": true}

// runner is where Run runs the modules; reloads stop and start modules in
// it. running is touched by Run before its reloads start and after they
// end, and by reloads (under reloadMu).
type runner struct {
	readCtx, pushCtx context.Context
	wg               sync.WaitGroup
	errc             chan error // the first module failure
	running          map[*module]*moduleRun
}

// moduleRun is one module's run: stopping its reading hands its partitions
// over; stopping its pushes cuts the pushes in flight short.
type moduleRun struct {
	stopReading, stopPushing context.CancelFunc
	done                     chan struct{} // closed when module.run returned
}

// start runs m until the runner's reading ends or m is stopped.
func (r *runner) start(m *module) {
	readCtx, stopReading := context.WithCancel(r.readCtx)
	pushCtx, stopPushing := context.WithCancel(r.pushCtx)
	mr := &moduleRun{stopReading: stopReading, stopPushing: stopPushing, done: make(chan struct{})}
	r.running[m] = mr
	r.wg.Go(func() {
		defer close(mr.done)
		defer stopPushing()
		defer stopReading()
		if err := m.run(readCtx, pushCtx); err != nil {
			select {
			case r.errc <- fmt.Errorf("module %s: %w", m.cfg.Name, err):
			default: // the process is stopping already
			}
		}
	})
}

// RequestReload asks for the configuration files to be read again and
// applied (SIGHUP); it returns at once. Reloads run one at a time in Run: a
// request during a reload queues one more, and requests made meanwhile
// are one.
func (t *Transfer) RequestReload() {
	select {
	case t.reloadReq <- struct{}{}:
	default:
	}
}

// SetLevelFunc gives a reload the way to apply a new log_level; without
// one, a changed log_level needs a restart. Call it before Run.
func (t *Transfer) SetLevelFunc(set func(logLevel int) bool) {
	t.reloadMu.Lock()
	defer t.reloadMu.Unlock()
	t.setLevel = set
}

// reloadLoop reloads on each request until ctx ends.
func (t *Transfer) reloadLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.reloadReq:
			_ = t.Reload(ctx) // logged, counted and in /status
		}
	}
}

// ConfigStatus is the configuration in use and the latest reload's outcome.
func (t *Transfer) ConfigStatus() ConfigStatus {
	t.confMu.Lock()
	defer t.confMu.Unlock()
	c := t.conf
	if c.LastReload != nil {
		last := *c.LastReload
		c.LastReload = &last
	}
	c.RestartNeeded = slices.Clone(c.RestartNeeded)
	for _, cl := range t.cleanups {
		c.CleanupPending = append(c.CleanupPending, cl.m.cfg.Name)
	}
	slices.Sort(c.CleanupPending)
	c.CleanupPending = slices.Compact(c.CleanupPending)
	return c
}

// Reload reads the configuration files again (LoadConfig) and applies
// them while Run runs: added modules start; removed ones hand their
// partitions over and stop; changed ones (any key of their file) do both;
// the others are not touched; a module whose topic does not exist yet
// starts and waits for it. A configuration with any problem is refused,
// every problem logged, and the running one kept. Keys of ktransfer.yaml
// other than module_enabled, module_conf_dir and log_level need a restart:
// a change is logged and the running value kept. It returns why the
// reload was refused, or nil.
func (t *Transfer) Reload(ctx context.Context) error {
	t.reloadMu.Lock()
	defer t.reloadMu.Unlock()
	start := time.Now()
	st, err := t.reload(ctx)
	st.At, st.TookMs = start, time.Since(start).Milliseconds()
	if errors.Is(err, errReloadStopped) {
		// Neither applied nor refused: not counted, last_reload kept.
		t.log.Info("configuration reload stopped: the process is stopping; nothing was applied", "file", t.cfg.file)
		return err
	}
	if err != nil {
		st.Result, st.Error = reloadRefused, err.Error()
		t.metrics.reloadOK.Set(0)
		for _, problem := range strings.Split(err.Error(), "\n") {
			t.log.Error("configuration reload refused; the running configuration is kept", "file", t.cfg.file, "problem", problem)
		}
	} else {
		st.Result = reloadOK
		t.metrics.reloadOK.Set(1)
		for _, key := range st.RestartNeeded {
			t.log.Warn("changed key needs a restart; the running value is kept", "file", t.cfg.file, "key", key)
		}
		attrs := []any{"file", t.cfg.file, "hash", st.Hash, "started", st.Started,
			"stopped", st.Stopped, "restarted", st.Restarted, "took", time.Since(start).Round(time.Millisecond)}
		if len(st.NotStarted) > 0 {
			attrs = append(attrs, "not_started", st.NotStarted)
		}
		t.log.Info("configuration reloaded", attrs...)
	}
	t.metrics.reloads.WithLabelValues(st.Result).Inc()
	t.confMu.Lock()
	if err == nil {
		t.conf.Hash, t.conf.LoadedAt, t.conf.RestartNeeded = st.Hash, start, st.RestartNeeded
	}
	t.conf.LastReload = &st
	t.confMu.Unlock()
	return err
}

// errReloadStopped is reload's answer when the process began to stop
// before the reload applied anything.
var errReloadStopped = errors.New("reload stopped: the process is stopping")

// loadConfig is LoadConfig, for reload (a test's stand-in reads a file
// that never answers).
var loadConfig = LoadConfig

// reload does Reload's work; t.reloadMu is held.
func (t *Transfer) reload(ctx context.Context) (ReloadStatus, error) {
	r := t.runner
	if r == nil {
		return ReloadStatus{}, errors.New("not running")
	}
	if t.cfg.file == "" {
		return ReloadStatus{}, errors.New("the configuration was not read from a file: nothing to read again")
	}
	cfg, err := config.Within(ctx, func(waited time.Duration) {
		t.log.Warn("reload still reading its files (a mount that stopped answering?); later reloads wait for it", "file", t.cfg.file, "waited", waited)
	}, func() (Config, error) {
		load := loadConfig // read once: a test's stand-in is put back as the reload ends
		return config.Settled(ctx, func() (Config, string, error) {
			cfg, err := load(t.cfg.file)
			if err == nil {
				// A file the start refuses is refused whole (not in Validate:
				// the dead-letter replay, which logs to standard error, would
				// be too).
				err = logging.CheckFileDir(t.cfg.file, "log_dir", cfg.LogDir, cfg.LogLevel, "ktransfer")
			}
			return cfg, cfg.hash, err // the contents of the files read
		})
	})
	if ctx.Err() != nil {
		return ReloadStatus{}, errReloadStopped // the files' reads left behind (a mount that stopped answering)
	}
	st := ReloadStatus{Hash: cfg.hash}
	if err != nil {
		return st, err
	}
	st.RestartNeeded = restartKeys(t.cfg, cfg) // logged when the reload is applied

	// Plan: which modules stop, which start; build the new ones (their
	// topic's brokers must answer) before anything is stopped.
	running := map[string]*module{}
	for _, m := range t.liveModules() {
		running[m.cfg.Name] = m
	}
	var next, stopping, built []*module
	var errs []error
	removed := map[*module]bool{}
	for _, mc := range cfg.Modules {
		old, ok := running[mc.Name]
		delete(running, mc.Name)
		if ok && sameModule(old.cfg, mc) {
			next = append(next, old)
			continue
		}
		if ok {
			stopping = append(stopping, old)
			removed[old] = false
			st.Restarted = append(st.Restarted, mc.Name)
		} else {
			st.Started = append(st.Started, mc.Name)
		}
		_, err := t.partitions(ctx, mc.Topic)
		missing := errors.Is(err, kerr.UnknownTopicOrPartition)
		if err != nil && !missing {
			errs = append(errs, fmt.Errorf("%s: module %s: %w", mc.File, mc.Name, err))
			continue
		}
		m, err := newModule(mc, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok && old.cfg.Topic == mc.Topic {
			// The old run's wait for its topic goes on in the new one: a
			// topic created (and written to) since, which the old run has
			// not looked at yet, is read from its first records under
			// start_from newest, not from its end.
			if late := old.topicLate.Load(); late != 0 {
				m.topicLate.CompareAndSwap(0, late)
			}
		}
		if missing {
			// No fault of the configuration: the module starts and waits
			// for its topic, as at the process's start (coordinate says so,
			// as an error), from now (the hand-overs below come first).
			m.topicMissing(time.Now())
		}
		built = append(built, m)
		next = append(next, m)
	}
	if len(errs) > 0 || ctx.Err() != nil {
		for _, m := range built {
			m.reader.cl.Close() // nothing else of it exists outside it: no series, no node
		}
		st.Started, st.Restarted = nil, nil
		if ctx.Err() != nil {
			// Stopped (a SIGTERM) before anything was applied: what
			// failed may be only the wait the stop cut short.
			return st, errReloadStopped
		}
		return st, errors.Join(errs...)
	}
	for _, m := range running { // not enabled any more
		stopping = append(stopping, m)
		removed[m] = true
		st.Stopped = append(st.Stopped, m.cfg.Name)
	}

	// Apply: the stopping modules hand their partitions over in parallel,
	// through their release path (pushes and retries stop, what is
	// acknowledged is committed, the owner nodes are deleted), each waited
	// for as a shutdown waits; then the new ones start (a changed module's
	// new run registers after its old one deregistered). What ZooKeeper
	// did not take as they stopped is deleted by a cleanup (nodeCleanup).
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Duration(t.cfg.ShutdownTimeoutMs) * time.Millisecond)
	for _, m := range stopping {
		mr := r.running[m]
		wg.Go(func() { mr.stopReading(); t.awaitStop(mr.done, mr.stopPushing, deadline) })
	}
	wg.Wait()
	successor := map[string]*module{}
	for _, m := range built {
		successor[m.cfg.Name] = m
	}
	for _, m := range built {
		m.bindMetrics() // before the old runs forget their backends: a successor's breakers say which stay
	}
	for _, m := range stopping {
		delete(r.running, m)
		m.reader.cl.Close()
		m.forgetBackends(successor[m.cfg.Name])
		if s := successor[m.cfg.Name]; s != nil {
			s.limiter.inherit(m.limiter) // the tokens spent stay spent
			if samePushes(m.cfg, s.cfg) {
				s.breakers.inherit(m.breakers) // open backends stay open
			}
		}
	}
	for _, m := range built {
		t.takeOverCleanups(r, m.cfg)
	}
	for _, m := range stopping {
		switch {
		case removed[m]:
			// Its ids/ registration and owner nodes; its series go.
			t.startCleanup(r, m, true)
			t.metrics.forgetModule(m.cfg.Name)
		case !slices.ContainsFunc(built, func(n *module) bool { return n.cfg.Topic == m.cfg.Topic && n.cfg.Name == m.cfg.Name }):
			// Changed to another topic: its owner nodes of the old one (the
			// new run keeps the registration).
			t.startCleanup(r, m, false)
		}
		// Changed on the same topic: the new run's reassignment deletes
		// or takes over the owner nodes left with this instance's id.
	}
	t.modulesMu.Lock()
	t.modules = next
	t.modulesMu.Unlock()
	t.retireUnusedDeadLetterClients(next)
	if r.readCtx.Err() != nil && len(built) > 0 {
		// The process began to stop during the hand-over: what stopped
		// stays stopped, and nothing starts. Started now, a module would
		// register and claim its partitions only to hand them over at
		// once, and its group would reassign twice. (Its reader client
		// is closed with the others', by Close.)
		names := make([]string, 0, len(built))
		for _, m := range built {
			names = append(names, m.cfg.Name)
		}
		t.log.Info("process stopping: the modules this reload added or changed are not started", "modules", names)
		st.Stopped = append(st.Stopped, st.Restarted...) // handed over, not started again
		st.Started, st.Restarted, st.NotStarted = nil, nil, names
	} else {
		for _, m := range built {
			r.start(m)
		}
	}
	if cfg.LogLevel != t.logLevel {
		if t.setLevel != nil && t.setLevel(cfg.LogLevel) {
			t.log.Info("log_level changed", "from", t.logLevel, "to", cfg.LogLevel)
			t.logLevel = cfg.LogLevel
		} else {
			st.RestartNeeded = append(st.RestartNeeded, "log_level") // warned of by Reload
		}
	}
	return st, nil
}

// sameModule reports whether two loads of a module file configure the
// same module (the file's path aside): the keys, and the contents of the
// secret files signing_secrets names. A module whose secret file was
// rewritten restarts (its signer is built at the start).
func sameModule(a, b Module) bool {
	a.File, b.File = "", ""
	// A key without effect written or left out changes nothing.
	a.legacyKeys, b.legacyKeys = nil, nil
	a.keysSet, b.keysSet = nil, nil
	// Nor does a default written out: an empty list is none, as left out,
	// and serialize_by_key: true is what leaving it out means.
	a, b = meantModule(a), meantModule(b)
	return reflect.DeepEqual(a, b)
}

// samePushes reports whether two runs of a module make the same pushes
// to a backend: its protocol section (uri, headers, timeouts, signing
// secrets and their files' contents, target header) unchanged. A breaker
// judged its backend by the old pushes; a reload that changes them (a
// corrected uri, a longer read_timeout_ms) is often the fix, and must not
// leave the backend skipped until a trial the old verdict scheduled.
func samePushes(a, b Module) bool {
	a, b = meantModule(a), meantModule(b)
	return reflect.DeepEqual(a.Protocol, b.Protocol) && a.secretsDigest == b.secretsDigest
}

// meantModule is m with the values that mean what leaving their key out
// means left out: empty lists, serialize_by_key: true.
func meantModule(m Module) Module {
	m.signingKeys, m.keysOf = nil, nil // the digest stands for them
	if len(m.Methods) == 0 {
		m.Methods = nil
	}
	if len(m.Protocol.Headers) == 0 {
		m.Protocol.Headers = nil
	}
	if len(m.Protocol.SigningSecrets) == 0 {
		m.Protocol.SigningSecrets = nil
	}
	if m.serializeByKey() {
		m.SerializeByKey = nil
	}
	return m
}

// restartKeys lists the keys of ktransfer.yaml that differ between the
// running configuration and a new one and apply only after a restart: by
// value, or by the contents of the files they name (certificates and
// password files of kafka and zk_auth).
func restartKeys(running, next Config) []string {
	return config.ChangedKeys(running, next, liveKeys, func(key string) bool { return running.fileDigests[key] != next.fileDigests[key] })
}

// cleanupRetry is how often a cleanup of a stopped module's nodes is
// tried again while ZooKeeper answers; a session taken back wakes it.
const cleanupRetry = time.Second

// nodeCleanup deletes what a module stopped by a reload may have left in
// ZooKeeper when ZooKeeper did not answer as it stopped (its session given
// up, or its connection broken): its ids/ registration, and the owner
// nodes of its topic holding this instance's id. Left there, the other
// processes would count this one as a member and leave the partitions
// assigned to it (or whose node it holds) unpushed, without an error. It
// tries again until it succeeds (after a lost session the nodes are gone:
// the next try finds nothing) or the process stops.
//
// Only this instance's nodes are deleted, by their data, each with its
// version (deleteOwnerOnce); none is a newer claim: no module of that name
// runs on that topic here while the cleanup runs (takeOverCleanups stops
// it before one starts).
type nodeCleanup struct {
	m          *module // the stopped module: its name, topic and paths
	deregister bool    // its ids/ node too: no run of its name goes on
	stop       context.CancelFunc
	done       chan struct{} // closed when runCleanup returned
	wake       chan struct{}
}

func cleanupKey(m Module) string { return m.Name + "\x00" + m.Topic }

// startCleanup starts the cleanup of stopped module m's nodes; it ends
// with the runner's reading at the latest (closing the session then
// deletes them). t.reloadMu is held.
func (t *Transfer) startCleanup(r *runner, m *module, deregister bool) {
	ctx, stop := context.WithCancel(r.readCtx)
	c := &nodeCleanup{m: m, deregister: deregister, stop: stop, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	t.confMu.Lock()
	if t.cleanups == nil {
		t.cleanups = map[string]*nodeCleanup{}
	}
	t.cleanups[cleanupKey(m.cfg)] = c
	t.confMu.Unlock()
	r.wg.Go(func() { t.runCleanup(ctx, c) })
}

// takeOverCleanups stops the cleanups of the nodes of module mc's name
// before a module of that name starts: its run registers, and its
// reassignment deletes or takes over the owner nodes of its topic left
// with this instance's id. The owner nodes of another topic are still
// cleaned, without deregistering. t.reloadMu is held.
func (t *Transfer) takeOverCleanups(r *runner, mc Module) {
	var stopped []*nodeCleanup
	t.confMu.Lock()
	for key, c := range t.cleanups {
		if c.m.cfg.Name == mc.Name {
			delete(t.cleanups, key)
			stopped = append(stopped, c)
		}
	}
	t.confMu.Unlock()
	for _, c := range stopped {
		c.stop()
		<-c.done
		if c.m.cfg.Topic != mc.Topic {
			t.startCleanup(r, c.m, false)
		}
	}
}

// wakeCleanups has every pending cleanup try again now (the session was
// taken back).
func (t *Transfer) wakeCleanups() {
	t.confMu.Lock()
	defer t.confMu.Unlock()
	for _, c := range t.cleanups {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// runCleanup tries c while the session is up, every cleanupRetry and when
// woken, until it succeeds or ctx ends.
func (t *Transfer) runCleanup(ctx context.Context, c *nodeCleanup) {
	defer close(c.done)
	defer c.stop() // its context is unregistered from the reading context's
	log := c.m.log.With("deregister", c.deregister)
	failures := 0
	for {
		if t.sessionUp() {
			err := c.clean()
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				t.confMu.Lock()
				if key := cleanupKey(c.m.cfg); t.cleanups[key] == c {
					delete(t.cleanups, key)
				}
				t.confMu.Unlock()
				if failures > 0 {
					log.Info("stopped module's zookeeper nodes deleted", "failures", failures)
				}
				return
			}
			failures++
			if failures == 1 {
				log.Warn("stopped module's zookeeper nodes not deleted; retrying", "err", err)
			} else {
				log.Debug("stopped module's zookeeper nodes not deleted; retrying", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-time.After(cleanupRetry):
		}
	}
}

// clean deletes the stopped module's ids/ node (when c.deregister) and its
// topic's owner nodes holding this instance's id.
func (c *nodeCleanup) clean() error {
	m := c.m
	if c.deregister {
		if err := m.deregister(); err != nil {
			return err
		}
	}
	dir := zklayout.Owners(m.t.cfg.ZKChroot, m.cfg.Name, m.cfg.Topic)
	names, _, err := m.t.conn().Children(dir)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, name := range names {
		p, ok := zklayout.Partition(name)
		if !ok {
			continue
		}
		if err := m.deleteOwnerOnce(p, 0); err != nil {
			return err
		}
	}
	return nil
}
