package ktransfer

import (
	"testing"
)

// TestLateReleaseKeepsTheNewRunsPartitionSeries: a reload restarts module
// x while a release of its old run (a deposed partition's, a dropped
// session's: they run on their own) is still under way; the new run
// claims the partition first, and the old release then forgets the
// partition's series. The new run's ktransfer_high_water_offset must stay
// in /metrics. Before, the old release deleted it, and the new run went on
// setting a series no scrape saw, until the partition's next claim.
func TestLateReleaseKeepsTheNewRunsPartitionSeries(t *testing.T) {
	m := newMetrics()
	old := m.module("x")
	old.highWaterGauge(0).Set(1)
	old.committed(0, 1)
	run := m.module("x") // the reload's run claims partition 0
	hw := run.highWaterGauge(0)
	old.forget(0) // the old run's release ends
	hw.Set(9)
	run.committed(0, 7)
	if got, ok := gauge(t, m, "ktransfer_high_water_offset", "x", "0"); !ok || got != 9 {
		t.Errorf("ktransfer_high_water_offset{module=x,partition=0} = %v (present: %v), want 9", got, ok)
	}
	run.forget(0) // the new run's own release removes them
	if _, ok := gauge(t, m, "ktransfer_high_water_offset", "x", "0"); ok {
		t.Error("the series stayed after the run that claimed the partition released it")
	}
	if _, ok := gauge(t, m, "ktransfer_committed_offset", "x", "0"); ok {
		t.Error("ktransfer_committed_offset stayed after the run that claimed the partition released it")
	}
}

// gauge is the value of series name{module, partition} in m's registry.
func gauge(t *testing.T, m *metrics, name, module, partition string) (float64, bool) {
	t.Helper()
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["module"] == module && labels["partition"] == partition {
				return s.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}
