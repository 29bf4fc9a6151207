package kproxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/logging"
)

// A reload (SIGHUP) reads kproxy's file again and applies what can change
// while requests are served: the clients (names, secrets and secret files,
// topics, rate limits), topics_allowed and log_level. A request is checked
// by one set of rules, those its client was found by (on arrival); a gRPC
// stream's client is found again, by the rules then in force, just before
// the checks of its next request. Every other key changed is logged as needing
// a restart, its running value kept. A file that does not load (or a
// secret_file that cannot be read) is refused whole: nothing changes.

// liveKeys are the keys a reload applies.
var liveKeys = map[string]bool{"clients": true, "topics_allowed": true, "log_level": true}

// Reload results, the label of kproxy_config_reloads_total.
const (
	reloadOK      = "ok"
	reloadRefused = "refused"
)

// reloader is the Server's reload state.
type reloader struct {
	req      chan struct{} // (cap 1) a reload asked for
	mu       sync.Mutex    // one reload at a time
	setLevel func(int) bool
	level    int // the log_level in force
}

// RequestReload asks for the configuration file to be read again (SIGHUP)
// and returns at once; Run reloads, one at a time. Requests made during a
// reload are one more.
func (s *Server) RequestReload() {
	select {
	case s.reload.req <- struct{}{}:
	default:
	}
}

// SetLevelFunc gives a reload the way to apply a new log_level; without
// one, a changed log_level needs a restart. Call it before Run.
func (s *Server) SetLevelFunc(set func(logLevel int) bool) {
	s.reload.mu.Lock()
	defer s.reload.mu.Unlock()
	s.reload.setLevel = set
}

// reloadLoop reloads on each request until ctx ends (Run waits for it).
func (s *Server) reloadLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.reload.req:
			if ctx.Err() != nil {
				return // a SIGHUP just before the stop: not applied during it
			}
			_ = s.reloadWithin(ctx) // logged and counted
		}
	}
}

// Reload reads the configuration file again and applies its clients,
// topics_allowed and log_level; refused (the error), nothing changes.
func (s *Server) Reload() error { return s.reloadWithin(context.Background()) }

// errReloadStopped: the process began to stop while the reload read its
// file; nothing was applied.
var errReloadStopped = errors.New("reload stopped: the process is stopping")

// loadConfig is LoadConfig, for reloads (a test's stand-in reads a file
// that never answers).
var loadConfig = LoadConfig

// reloadWithin is Reload, given up when ctx ends (the stop) while it reads
// the file.
func (s *Server) reloadWithin(ctx context.Context) error {
	s.reload.mu.Lock()
	defer s.reload.mu.Unlock()
	restart, level, err := s.reloadLocked(ctx)
	if errors.Is(err, errReloadStopped) {
		// Neither applied nor refused: not counted.
		s.log.Info("configuration reload stopped: the process is stopping; nothing was applied", "file", s.cfg.file)
		return err
	}
	if err != nil {
		s.metrics.reloads.WithLabelValues(reloadRefused).Inc()
		for _, problem := range strings.Split(err.Error(), "\n") {
			s.log.Error("configuration reload refused; the running configuration is kept", "file", s.cfg.file, "problem", problem)
		}
		return err
	}
	s.metrics.reloads.WithLabelValues(reloadOK).Inc()
	for _, key := range restart {
		s.log.Warn("changed key needs a restart; the running value is kept", "file", s.cfg.file, "key", key)
	}
	a := s.acl()
	// Logged before a new log_level applies: a reload to a quieter level
	// is still told.
	s.log.Info("configuration reloaded", "file", s.cfg.file, "clients", len(a.clients), "topics_allowed", len(a.allowed), "log_level", level)
	if level != s.reload.level {
		if s.reload.setLevel != nil && s.reload.setLevel(level) {
			s.reload.level = level
		} else {
			s.log.Warn("changed key needs a restart; the running value is kept", "file", s.cfg.file, "key", "log_level")
		}
	}
	return nil
}

// reloadLocked reads the file and applies its clients and topics_allowed;
// s.reload.mu is held. It returns the changed keys that need a restart
// and the file's log_level, for Reload to apply.
func (s *Server) reloadLocked(ctx context.Context) (restart []string, level int, err error) {
	if s.cfg.file == "" {
		return nil, 0, errors.New("the configuration was not read from a file: nothing to read again")
	}
	cfg, err := config.Within(ctx, func(waited time.Duration) {
		s.log.Warn("reload still reading its files (a mount that stopped answering?); later reloads wait for it", "file", s.cfg.file, "waited", waited)
	}, func() (Config, error) {
		load := loadConfig // read once: a test's stand-in is put back as the reload ends
		return config.Settled(ctx, func() (Config, string, error) {
			// The file's contents, read before and after it is loaded:
			// the same in two loads in a row, it was not being written.
			before, _ := config.ReadFile(s.cfg.file)
			cfg, err := load(s.cfg.file)
			if err == nil {
				// A file the start refuses is refused whole (not in
				// Validate: a command that logs to standard error would be
				// refused too).
				err = logging.CheckFileDir(s.cfg.file, "log_dir", cfg.LogDir, cfg.LogLevel, "kproxy")
			}
			after, _ := config.ReadFile(s.cfg.file)
			sum := sha256.Sum256(append(before, after...))
			return cfg, string(sum[:]), err
		})
	})
	if ctx.Err() != nil {
		return nil, 0, errReloadStopped // the file's read left behind (a mount that stopped answering)
	}
	if err != nil {
		return nil, 0, err
	}
	prev := s.acl()
	if len(prev.clients) > 0 && len(cfg.Clients) == 0 {
		// No clients means no authentication: an operator who removes
		// the last client to shut every client out would open kproxy to
		// anyone instead.
		return nil, 0, fmt.Errorf("%s: clients: a reload cannot turn authentication off (no clients: every request is taken without credentials); restart kproxy to run without clients, got none", s.cfg.file)
	}
	if len(prev.allowed) > 0 && len(cfg.TopicsAllowed) == 0 {
		// No topics_allowed means every topic: an operator who removes
		// the last entry to shut every topic off would open them all
		// instead (to anyone, without clients).
		return nil, 0, fmt.Errorf("%s: topics_allowed: a reload cannot turn the topic restriction off (none listed: every topic may be written); restart kproxy to run without it, got none", s.cfg.file)
	}
	a, err := newAccess(cfg, prev)
	if err != nil {
		return nil, 0, errors.New(s.cfg.file + ": " + err.Error())
	}
	s.access.Store(a)
	restart, ineffective := restartKeys(s.cfg, cfg)
	for _, key := range ineffective {
		s.log.Info("changed key has no effect, now or after a restart", "file", s.cfg.file, "key", key)
	}
	return restart, cfg.LogLevel, nil
}

// restartKeys are the keys other than liveKeys whose value differs
// between the configuration kproxy started with and next, or the contents
// of the files they name (certificates, password files: fileDigests).
// Those without effect in next (producer_num; a spool key without
// spool_dir, …: offKeys), set there or removed, are ineffective instead:
// a restart would change nothing.
func restartKeys(running, next Config) (restart, ineffective []string) {
	none := map[string]bool{"producer_num": true}
	for _, k := range next.offKeys() { // a line removed too
		none[k.key] = true
	}
	for _, key := range config.ChangedKeys(running, next, liveKeys, func(key string) bool { return running.fileDigests[key] != next.fileDigests[key] }) {
		if none[key] {
			ineffective = append(ineffective, key)
		} else {
			restart = append(restart, key)
		}
	}
	return restart, ineffective
}
