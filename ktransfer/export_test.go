package ktransfer

import (
	"sync/atomic"
	"testing"
	"time"

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

// ConfigHash is the configuration's hash shown in /status.
func ConfigHash(c Config) string { return c.hash }

// SetID names tr's instance in ids/ and owners/ in place of the one New
// made; call it before Run. A test of the assignment chooses the order of
// the fleet's ids with it.
func SetID(tr *Transfer, id string) { tr.id = id }

// ReloadOK is ktransfer_config_last_reload_ok.
func ReloadOK(tr *Transfer) float64 {
	var m dto.Metric
	_ = tr.metrics.reloadOK.Write(&m)
	return m.GetGauge().GetValue()
}

// HoldTopicGone has a reader that found its topic deleted and created
// again wait, before it handles that, until one of the partitions it reads
// is being released (for 20 s at most), as when a release starts during
// the look-up of the topic's id. It returns a flag set once a reader
// waits; the hold ends with the test.
func HoldTopicGone(t *testing.T) (waiting *atomic.Bool) {
	waiting = new(atomic.Bool)
	hold := func(r *reader) {
		waiting.Store(true)
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			for _, p := range r.parts {
				if p.ctx.Err() != nil {
					return
				}
			}
		}
	}
	beforeTopicGone.Store(&hold)
	t.Cleanup(func() { beforeTopicGone.Store(nil) })
	return waiting
}
