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
	// epochChanges counts the acks=-1 client's new producer epochs
	// (epochWatch).
	epochChanges prometheus.Counter
	// acks0Unconfirmed are the acks=0 records given up (acks0Lost) that
	// may have been written.
	acks0Unconfirmed prometheus.Counter

	// /batch
	batches       *prometheus.CounterVec // answers by status
	batchSize     prometheus.Histogram   // records per batch
	batchDuration prometheus.Histogram
	batchResults  *prometheus.CounterVec // records by their own status
	resultByCode  map[int]prometheus.Counter
	transactions  *prometheus.CounterVec // atomic batches by outcome

	// gRPC
	grpcRequests map[string]*grpcMethodMetrics // by method: Produce, ProduceStream
	grpcRPCs     *prometheus.CounterVec        // RPCs ended, by method and gRPC code
	grpcStreams  prometheus.Gauge              // ProduceStream streams open

	reloads *prometheus.CounterVec // SIGHUP reloads by result: ok, refused
}

// grpcMethodMetrics are the ProduceRequests of one method: answered by
// status, and the time to answer them.
type grpcMethodMetrics struct {
	vec      *prometheus.CounterVec
	byCode   map[int]prometheus.Counter
	method   string
	duration prometheus.Observer
}

// Body formats of /commit, indexes of metrics.bodies.
const (
	formatMsgpack = iota
	formatJSON
)

// answeredCodes are every status the handler writes.
var answeredCodes = []int{200, 202, 207, 400, 401, 403, 404, 405, 408, 413, 415, 429, 431, 502, 503, 504}

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
	m.epochChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kproxy_producer_epoch_changes_total",
		Help: "New producer epochs of the acks=-1 client, seen on the records it wrote: Kafka's client gave up a batch a broker may hold, purged a topic, or a broker forgot the producer; a batch being retried across the change may be written twice.",
	})
	m.acks0Lost = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kproxy_acks0_lost_records_total",
		Help: "acks=0 records answered 200 and not delivered: refused by Kafka, or not acknowledged within produce_timeout_ms (those that may have been written are counted in kproxy_acks0_unconfirmed_records_total too).",
	})
	m.acks0Unconfirmed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kproxy_acks0_unconfirmed_records_total",
		Help: "Of kproxy_acks0_lost_records_total, the records that may have been written: a produce request of their Kafka client got no answer, or was still out, when they were given up; perhaps in Kafka, perhaps not.",
	})
	records := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kproxy_records_total", Help: "Records Kafka accepted from a request, by acks level; records answered 202 and written from the spool are in kproxy_spool_drained_total, not here.",
	}, []string{"acks"})
	for i, a := range []string{"0", "1", "-1"} {
		m.records[i] = records.WithLabelValues(a)
	}
	bodies := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kproxy_request_bodies_total",
		Help: "/commit request bodies checked, valid or not, by format (Content-Type: application/json, else msgpack); a request refused for its line or headers (method, parameters, credentials, topic; with Expect: 100-continue also an unknown topic, before its body is sent) or for a body over max_request_size_bytes is not counted; one refused after (a record over max_message_bytes) is.",
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
		Help:    "Records per batch read whole (a /batch request or a gRPC ProduceRequest), before its records are checked.",
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
	grpcRequests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kproxy_grpc_requests_total",
		Help: "gRPC ProduceRequests answered (a Produce call, or one request of a ProduceStream), by method and by the status /batch would answer (200, 207, 400, …).",
	}, []string{"method", "code"})
	grpcDuration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kproxy_grpc_request_duration_seconds",
		Help:    "Time from reading a gRPC ProduceRequest to answering it, by method.",
		Buckets: []float64{.001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 25},
	}, []string{"method"})
	m.grpcRequests = map[string]*grpcMethodMetrics{}
	for _, method := range []string{"Produce", "ProduceStream"} {
		mm := &grpcMethodMetrics{vec: grpcRequests, byCode: map[int]prometheus.Counter{}, method: method,
			duration: grpcDuration.WithLabelValues(method)}
		for _, c := range []int{200, 202, 207, 400, 401, 403, 404, 413, 429, 502, 503, 504} {
			mm.byCode[c] = grpcRequests.WithLabelValues(method, strconv.Itoa(c))
		}
		m.grpcRequests[method] = mm
	}
	m.grpcRPCs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kproxy_grpc_rpcs_total",
		Help: "gRPC calls ended (a stream counts once, at its end), by method and gRPC status code.",
	}, []string{"method", "code"})
	m.grpcStreams = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kproxy_grpc_streams_open", Help: "ProduceStream streams open.",
	})
	reg.MustRegister(grpcRequests, grpcDuration, m.grpcRPCs, m.grpcStreams)
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kproxy_config_reloads_total", Help: "Configuration reloads (SIGHUP: clients, topics_allowed, log_level) by result: ok, or refused (the running configuration kept).",
	}, []string{"result"})
	for _, r := range []string{reloadOK, reloadRefused} {
		m.reloads.WithLabelValues(r)
	}
	reg.MustRegister(m.reloads)
	reg.MustRegister(m.requests, m.duration, m.produceErrors, records, bodies, m.batchRecords, m.acks0Lost, m.acks0Unconfirmed, m.epochChanges,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kproxy_requests_in_flight", Help: "Places of req_pool_size taken: /commit requests, and the records of /batch and gRPC requests, being processed.",
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

// grpcAnswered counts a ProduceRequest of method answered with status,
// read at since.
func (m *metrics) grpcAnswered(method string, status int, since time.Time) {
	mm := m.grpcRequests[method]
	c, ok := mm.byCode[status]
	if !ok {
		c = mm.vec.WithLabelValues(mm.method, strconv.Itoa(status))
	}
	c.Inc()
	mm.duration.Observe(time.Since(since).Seconds())
}
