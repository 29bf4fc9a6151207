package ktransfer

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are ktransfer's Prometheus series.
type metrics struct {
	reg          *prometheus.Registry
	pushed       *prometheus.CounterVec
	retried      *prometheus.CounterVec
	failed       *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	withoutValue *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	dlErrors     *prometheus.CounterVec
	skipped      *prometheus.CounterVec
	outOfRange   *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	commitTime   *prometheus.HistogramVec
	windowFull   *prometheus.CounterVec
	committed    *prometheus.GaugeVec
	highWater    *prometheus.GaugeVec
	opened       *prometheus.CounterVec
	reloads      *prometheus.CounterVec
	reloadOK     prometheus.Gauge

	// partOwner is, per module name and partition, the claim the
	// partition's series are of (highWaterGauge): a run's release that ends
	// after a reload started the module again, and the new run claimed the
	// partition, leaves them alone (forget); a claim released does not
	// make its log-end series again (logEndSeries.Set).
	partMu    sync.Mutex
	partOwner map[partSeries]*logEndSeries
}

type partSeries struct {
	module    string
	partition int32
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		pushed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ktransfer_pushed_total", Help: "Records a backend answered 2xx.",
		}, []string{"module"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ktransfer_retries_total", Help: "Push attempts that failed and were tried again.",
		}, []string{"module"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ktransfer_failed_total", Help: "Records given up on (retries exhausted, or a 4xx refusal with a dead-letter topic).",
		}, []string{"module"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ktransfer_dead_lettered_total", Help: "Records written to the dead-letter topic.",
		}, []string{"module"}),
		withoutValue: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ktransfer_dead_letters_without_value_total",
			Help: "Dead letters written without the record's value: Kafka refused the whole record for good (too large for the dead-letter topic, invalid); also counted in ktransfer_dead_lettered_total.",
		}, []string{"module"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ktransfer_dead_letters_dropped_total",
			Help: "Records given up on whose dead letter Kafka refused for good even without the value: reported only in the log.",
		}, []string{"module"}),
		dlErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ktransfer_dead_letter_write_errors_total",
			Help: "Dead-letter writes that failed and are tried again (the topic missing, not writable, the brokers away); the record waits, uncounted in ktransfer_failed_total until its dead letter is written.",
		}, []string{"module"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ktransfer_skipped_total", Help: "Records not pushed: method not in the list, or no method to match.",
		}, []string{"module", "reason"}),
		outOfRange: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ktransfer_offset_out_of_range_total", Help: "Offsets Kafka no longer had: stored ones (retention, a topic created again), or read past a log that was truncated.",
		}, []string{"module"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ktransfer_push_duration_seconds", Help: "From the first attempt to a 2xx, retries included.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30},
		}, []string{"module"}),
		commitTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ktransfer_commit_duration_seconds", Help: "ZooKeeper offset commits; the window's slots are freed when one ends.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"module"}),
		windowFull: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ktransfer_window_full_seconds_total", Help: "Time reading waited for window slots (window_size records dispatched and not committed).",
		}, []string{"module"}),
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ktransfer_committed_offset", Help: "Next offset to push, as stored in ZooKeeper.",
		}, []string{"module", "partition"}),
		highWater: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ktransfer_high_water_offset", Help: "Partition log end as last seen by the consumer (asked of Kafka every second while a restart waits).",
		}, []string{"module", "partition"}),
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ktransfer_breaker_opened_total", Help: "Times a backend's circuit breaker opened (breaker_failures in a row, or a failed trial).",
		}, []string{"module", "backend"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ktransfer_config_reloads_total", Help: "Configuration reloads (SIGHUP) by result: ok, or refused (the running configuration kept).",
		}, []string{"result"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ktransfer_config_last_reload_ok", Help: "1 when the latest reload was applied (or none was asked for), 0 when it was refused; /status says why.",
		}),
	}
	m.reloadOK.Set(1)
	m.reg.MustRegister(m.pushed, m.retried, m.failed, m.deadLettered, m.withoutValue, m.dropped, m.dlErrors, m.skipped, m.outOfRange, m.duration,
		m.commitTime, m.windowFull, m.committed, m.highWater, m.opened, m.reloads, m.reloadOK,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{reloadOK, reloadRefused} {
		m.reloads.WithLabelValues(r) // both series from the start, at 0
	}
	return m
}

const (
	skipFiltered  = "method_filtered"
	skipMalformed = "no_method"
)

// moduleStats are one module's series, resolved once.
type moduleStats struct {
	m                                       *metrics
	name                                    string
	pushedC, retriedC, failedC, deadC, oorC prometheus.Counter
	withoutValueC, droppedC, dlErrorsC      prometheus.Counter
	skipFilteredC, skipMalformedC           prometheus.Counter
	durationH, commitH                      prometheus.Observer
	windowFullC                             prometheus.Counter
}

// statusCollector exposes the window fill and each partition's lag,
// computed at scrape time from the modules' state.
type statusCollector struct{ status func() []ModuleStatus }

var (
	descWindow = prometheus.NewDesc("ktransfer_window_used", "Records dispatched and not yet committed (at most window_size).", []string{"module"}, nil)
	descLag    = prometheus.NewDesc("ktransfer_lag", "Records between the committed offset and the partition's log end.", []string{"module", "partition"}, nil)
	descState  = prometheus.NewDesc("ktransfer_backend_state", "A backend's circuit breaker: 0 closed, 1 half_open (a trial push), 2 open.", []string{"module", "backend"}, nil)
)

// stateValues are ktransfer_backend_state's values.
var stateValues = map[string]float64{stateClosed.String(): 0, stateHalfOpen.String(): 1, stateOpen.String(): 2}

func (statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descWindow
	ch <- descLag
	ch <- descState
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.status() {
		ch <- prometheus.MustNewConstMetric(descWindow, prometheus.GaugeValue, float64(m.WindowUsed), m.Name)
		for _, p := range m.Partitions {
			if p.Lag != nil { // no series while the log end is not known
				ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(*p.Lag), m.Name, strconv.Itoa(int(p.Partition)))
			}
		}
		for _, b := range m.Backends {
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, stateValues[b.State], m.Name, b.Backend)
		}
	}
}

func (m *metrics) module(name string) *moduleStats {
	return &moduleStats{
		m: m, name: name,
		pushedC: m.pushed.WithLabelValues(name), retriedC: m.retried.WithLabelValues(name),
		failedC: m.failed.WithLabelValues(name), deadC: m.deadLettered.WithLabelValues(name),
		oorC:          m.outOfRange.WithLabelValues(name),
		withoutValueC: m.withoutValue.WithLabelValues(name), droppedC: m.dropped.WithLabelValues(name),
		dlErrorsC:     m.dlErrors.WithLabelValues(name),
		skipFilteredC: m.skipped.WithLabelValues(name, skipFiltered), skipMalformedC: m.skipped.WithLabelValues(name, skipMalformed),
		durationH: m.duration.WithLabelValues(name), commitH: m.commitTime.WithLabelValues(name),
		windowFullC: m.windowFull.WithLabelValues(name),
	}
}

func (s *moduleStats) pushed(d time.Duration)  { s.pushedC.Inc(); s.durationH.Observe(d.Seconds()) }
func (s *moduleStats) retried()                { s.retriedC.Inc() }
func (s *moduleStats) failed()                 { s.failedC.Inc() }
func (s *moduleStats) deadLettered()           { s.deadC.Inc() }
func (s *moduleStats) outOfRange()             { s.oorC.Inc() }
func (s *moduleStats) deadLetterWithoutValue() { s.withoutValueC.Inc() }
func (s *moduleStats) deadLetterDropped()      { s.droppedC.Inc() }
func (s *moduleStats) deadLetterWriteFailed()  { s.dlErrorsC.Inc() }
func (s *moduleStats) skipped(reason string) {
	if reason == skipFiltered {
		s.skipFilteredC.Inc()
	} else {
		s.skipMalformedC.Inc()
	}
}
func (s *moduleStats) breakerOpened(backend string) prometheus.Counter {
	return s.m.opened.WithLabelValues(s.name, backend)
}
func (s *moduleStats) forgetBackend(backend string) { s.m.opened.DeleteLabelValues(s.name, backend) }
func (s *moduleStats) commitTook(d time.Duration)   { s.commitH.Observe(d.Seconds()) }
func (s *moduleStats) windowFull(d time.Duration)   { s.windowFullC.Add(d.Seconds()) }
func (s *moduleStats) committed(p int32, offset int64) {
	s.m.committed.WithLabelValues(s.name, strconv.Itoa(int(p))).Set(float64(offset))
}

// highWaterGauge is partition p's log-end series for a claim of this run:
// the claim owns p's series until it forgets them, or another claims them.
func (s *moduleStats) highWaterGauge(p int32) *logEndSeries {
	s.m.partMu.Lock()
	defer s.m.partMu.Unlock()
	if s.m.partOwner == nil {
		s.m.partOwner = map[partSeries]*logEndSeries{}
	}
	h := &logEndSeries{s: s, p: p}
	s.m.partOwner[partSeries{s.name, p}] = h
	return h
}

// logEndSeries is a claim's ktransfer_high_water_offset series. It is
// made at the first log end Kafka gives the claim, not at the claim: it
// read 0 until then, a lag of 0 while records waited.
type logEndSeries struct {
	s *moduleStats
	p int32
}

// Set sets the series to end, unless the claim no longer owns it.
func (h *logEndSeries) Set(end float64) {
	m := h.s.m
	m.partMu.Lock()
	defer m.partMu.Unlock()
	if m.partOwner[partSeries{h.s.name, h.p}] == h {
		m.highWater.WithLabelValues(h.s.name, strconv.Itoa(int(h.p))).Set(end)
	}
}

// forget removes partition p's series: it left this process, and a gauge
// kept would report the last values seen here as if they were current.
// Not those of another run of the module (a reload's) that claimed p
// since.
func (s *moduleStats) forget(p int32) {
	s.m.partMu.Lock()
	defer s.m.partMu.Unlock()
	key := partSeries{s.name, p}
	if owner := s.m.partOwner[key]; owner != nil && owner.s != s {
		return
	}
	delete(s.m.partOwner, key)
	label := strconv.Itoa(int(p))
	s.m.committed.DeleteLabelValues(s.name, label)
	s.m.highWater.DeleteLabelValues(s.name, label)
}

// forgetModule removes every series of module name: it stopped for good
// (a reload removed it).
func (m *metrics) forgetModule(name string) {
	m.partMu.Lock()
	for key := range m.partOwner {
		if key.module == name {
			delete(m.partOwner, key)
		}
	}
	m.partMu.Unlock()
	labels := prometheus.Labels{"module": name}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.pushed, m.retried, m.failed, m.deadLettered, m.withoutValue, m.dropped, m.dlErrors, m.skipped, m.outOfRange, m.duration, m.commitTime,
		m.windowFull, m.committed, m.highWater, m.opened,
	} {
		v.DeletePartialMatch(labels)
	}
}
