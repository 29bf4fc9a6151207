package ktransfer

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"
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
	// module files in use: the first 12 hex digits of their SHA-256.
	Hash     string    `json:"hash"`
	LoadedAt time.Time `json:"loaded_at"`
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
	return c
}

// Reload reads the configuration files again (LoadConfig) and applies
// them while Run runs: added modules start; removed ones hand their
// partitions over and stop; changed ones (any key of their file) do both;
// the others are not touched. A configuration with any problem is refused,
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
	if err != nil {
		st.Result, st.Error = reloadRefused, err.Error()
		t.metrics.reloadOK.Set(0)
		for _, problem := range strings.Split(err.Error(), "\n") {
			t.log.Error("configuration reload refused; the running configuration is kept", "file", t.cfg.file, "problem", problem)
		}
	} else {
		st.Result = reloadOK
		t.metrics.reloadOK.Set(1)
		t.log.Info("configuration reloaded", "file", t.cfg.file, "hash", st.Hash, "started", st.Started,
			"stopped", st.Stopped, "restarted", st.Restarted, "took", time.Since(start).Round(time.Millisecond))
	}
	t.metrics.reloads.WithLabelValues(st.Result).Inc()
	t.confMu.Lock()
	if err == nil {
		t.conf.Hash, t.conf.LoadedAt = st.Hash, start
	}
	t.conf.LastReload = &st
	t.confMu.Unlock()
	return err
}

// reload does Reload's work; t.reloadMu is held.
func (t *Transfer) reload(ctx context.Context) (ReloadStatus, error) {
	r := t.runner
	if r == nil {
		return ReloadStatus{}, errors.New("not running")
	}
	if t.cfg.file == "" {
		return ReloadStatus{}, errors.New("the configuration was not read from a file: nothing to read again")
	}
	cfg, err := LoadConfig(t.cfg.file)
	st := ReloadStatus{Hash: cfg.hash}
	if err != nil {
		return st, err
	}
	st.RestartNeeded = restartKeys(t.cfg, cfg)
	for _, key := range st.RestartNeeded {
		t.log.Warn("changed key needs a restart; the running value is kept", "file", t.cfg.file, "key", key)
	}

	// Plan: which modules stop, which start; build the new ones (their
	// topic must exist) before anything is stopped.
	running := map[string]*module{}
	for _, m := range t.liveModules() {
		running[m.cfg.Name] = m
	}
	var next, stopping, built []*module
	var errs []error
	for _, mc := range cfg.Modules {
		old, ok := running[mc.Name]
		delete(running, mc.Name)
		if ok && sameModule(old.cfg, mc) {
			next = append(next, old)
			continue
		}
		if ok {
			stopping = append(stopping, old)
			st.Restarted = append(st.Restarted, mc.Name)
		} else {
			st.Started = append(st.Started, mc.Name)
		}
		if _, err := t.partitions(ctx, mc.Topic); err != nil {
			errs = append(errs, fmt.Errorf("%s: module %s: %w", mc.File, mc.Name, err))
			continue
		}
		m, err := newModule(mc, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		built = append(built, m)
		next = append(next, m)
	}
	if len(errs) > 0 {
		for _, m := range built {
			m.reader.cl.Close()
		}
		st.Started, st.Restarted = nil, nil
		return st, errors.Join(errs...)
	}
	for _, m := range running { // not enabled any more
		stopping = append(stopping, m)
		st.Stopped = append(st.Stopped, m.cfg.Name)
	}

	// Apply: the stopping modules hand their partitions over in parallel,
	// through their release path (pushes and retries stop, what is
	// acknowledged is committed, the owner nodes are deleted), each waited
	// for as a shutdown waits; then the new ones start (a changed module's
	// new run registers after its old one deregistered).
	var wg sync.WaitGroup
	for _, m := range stopping {
		mr := r.running[m]
		wg.Go(func() { mr.stopReading(); t.awaitStop(mr.done, mr.stopPushing) })
	}
	wg.Wait()
	successor := map[string]*module{}
	for _, m := range built {
		successor[m.cfg.Name] = m
	}
	for _, m := range stopping {
		delete(r.running, m)
		m.reader.cl.Close()
		m.forgetBackends(successor[m.cfg.Name])
	}
	t.modulesMu.Lock()
	t.modules = next
	t.modulesMu.Unlock()
	for _, m := range built {
		r.start(m)
	}
	if cfg.LogLevel != t.logLevel {
		if t.setLevel != nil && t.setLevel(cfg.LogLevel) {
			t.log.Info("log_level changed", "from", t.logLevel, "to", cfg.LogLevel)
			t.logLevel = cfg.LogLevel
		} else {
			t.log.Warn("changed key needs a restart; the running value is kept", "file", t.cfg.file, "key", "log_level")
			st.RestartNeeded = append(st.RestartNeeded, "log_level")
		}
	}
	return st, nil
}

// sameModule reports whether two loads of a module file configure the
// same module (the file's path aside).
func sameModule(a, b Module) bool {
	a.File, b.File = "", ""
	return reflect.DeepEqual(a, b)
}

// restartKeys lists the keys of ktransfer.yaml that differ between the
// running configuration and a new one and apply only after a restart.
func restartKeys(running, next Config) []string {
	var keys []string
	a, b := reflect.ValueOf(running), reflect.ValueOf(next)
	for i := range a.NumField() {
		f := a.Type().Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || key == "" || key == "-" || liveKeys[key] {
			continue
		}
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			keys = append(keys, key)
		}
	}
	return keys
}
