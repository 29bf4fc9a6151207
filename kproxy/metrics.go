package kproxy

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	requests      *prometheus.CounterVec
	byCode        map[int]prometheus.Counter // the codes kproxy answers, resolved once
	duration      prometheus.Histogram
	produceErrors *prometheus.CounterVec
	records       [3]prometheus.Counter // by acks level
	bodies        [2]prometheus.Counter // by format: formatMsgpack, formatJSON
	batchRecords  prometheus.Histogram
	acks0Lost     prometheus.Counter

	// /batch
	batches       *prometheus.CounterVec // answers by status
	batchSize     prometheus.Histogram   // records per batch
	batchDuration prometheus.Histogram
	batchResults  *prometheus.CounterVec // records by their own status
	resultByCode  map[int]prometheus.Counter
	transactions  *prometheus.CounterVec // atomic batches by outcome
}

// Body formats of /commit, indexes of metrics.bodies.
const (
	formatMsgpack = iota
	formatJSON
)

// answeredCodes are every status the handler writes.
var answeredCodes = []int{200, 207, 400, 401, 403, 404, 405, 408, 413, 429, 431, 502, 503, 504}

func newMetrics(reg *prometheus.Registry, inFlight *atomic.Int64) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kproxy_requests_total", Help: "HTTP requests answered, by status code.",
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kproxy_request_duration_seconds",
			Help:    "Time from reading a /commit request to answering it.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		produceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kproxy_produce_errors_total", Help: "Records Kafka did not accept, by the status answered.",
		}, []string{"code"}),
		byCode: map[int]prometheus.Counter{},
	}
	m.batchRecords = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "kproxy_produce_request_records",
		Help:    "Records per record batch Kafka accepted (one partition of a produce request).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	})
	m.acks0Lost = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kproxy_acks0_lost_records_total",
		Help: "acks=0 records answered 200 that could not be delivered within produce_timeout_ms.",
	})
	records := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kproxy_records_total", Help: "Records Kafka accepted, by acks level.",
	}, []string{"acks"})
	for i, a := range []string{"0", "1", "-1"} {
		m.records[i] = records.WithLabelValues(a)
	}
	bodies := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kproxy_request_bodies_total",
		Help: "/commit request bodies read, valid or not, by format (Content-Type: application/json, else msgpack).",
	}, []string{"format"})
	m.bodies[formatMsgpack] = bodies.WithLabelValues("msgpack")
	m.bodies[formatJSON] = bodies.WithLabelValues("json")
	for _, c := range answeredCodes {
		m.byCode[c] = m.requests.WithLabelValues(strconv.Itoa(c))
	}
	m.batches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kproxy_batches_total", Help: "/batch requests answered, by status code.",
	}, []string{"code"})
	m.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "kproxy_batch_records",
		Help:    "Records per /batch request read whole (before its records are checked).",
		Buckets: prometheus.ExponentialBuckets(1, 4, 8), // 1 … 16384
	})
	m.batchDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "kproxy_batch_duration_seconds",
		Help:    "Time from reading a /batch request to answering it.",
		Buckets: []float64{.001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 25},
	})
	m.batchResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kproxy_batch_results_total", Help: "Records of /batch requests written or tried, by their own status (200 written).",
	}, []string{"code"})
	m.resultByCode = map[int]prometheus.Counter{}
	for _, c := range []int{200, 400, 403, 404, 413, 502, 503, 504} {
		m.resultByCode[c] = m.batchResults.WithLabelValues(strconv.Itoa(c))
	}
	m.transactions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kproxy_transactions_total", Help: "Atomic batches by outcome: committed, aborted (not written), unknown (commit unanswered: 504).",
	}, []string{"outcome"})
	reg.MustRegister(m.batches, m.batchSize, m.batchDuration, m.batchResults, m.transactions)
	reg.MustRegister(m.requests, m.duration, m.produceErrors, records, bodies, m.batchRecords, m.acks0Lost,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kproxy_requests_in_flight", Help: "/commit requests and /batch records being processed.",
		}, func() float64 { return float64(inFlight.Load()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) answered(code int) {
	c, ok := m.byCode[code]
	if !ok {
		c = m.requests.WithLabelValues(strconv.Itoa(code))
	}
	c.Inc()
}

func (m *metrics) observe(code int, since time.Time) {
	m.answered(code)
	m.duration.Observe(time.Since(since).Seconds())
}

func (m *metrics) observeBatch(code int, since time.Time) {
	m.answered(code)
	m.batches.WithLabelValues(strconv.Itoa(code)).Inc()
	m.batchDuration.Observe(time.Since(since).Seconds())
}

// batchResultN counts n records of batches with status code.
func (m *metrics) batchResultN(code, n int) {
	c, ok := m.resultByCode[code]
	if !ok {
		c = m.batchResults.WithLabelValues(strconv.Itoa(code))
	}
	c.Add(float64(n))
}
