package ktransfer

import (
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
