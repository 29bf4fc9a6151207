package kmonitor

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Monitor serves the lag of every configured cluster.
type Monitor struct {
	cfg      Config
	log      *slog.Logger
	clusters []*cluster // in base.clusters order
	ln       net.Listener
	srv      *http.Server
	metrics  http.Handler

	cacheMu sync.Mutex
	cache   map[cacheKey]cached
	shared  map[string]string // per set of clusters asked for: the zabbix keys last logged as shared by several partitions

	closeOnce sync.Once
}

// cacheKey names one rendering of /delay.
type cacheKey struct{ format, cluster, keys string }

// cached is a rendered answer, reusable while nothing it was computed from
// has changed and it is younger than maxCacheAge (the lag of a log end that
// turns stale with time shows at most that late).
type cached struct {
	gen  uint64
	at   time.Time
	body []byte
}

const maxCacheAge = 100 * time.Millisecond

// generation changes whenever an offset, a log-end offset or an error of
// any cluster does.
func (m *Monitor) generation() uint64 {
	var g uint64
	for _, c := range m.clusters {
		g += c.state.gen.Load()
	}
	return g
}

// New validates cfg and opens the listener. Run connects to the clusters.
func New(cfg Config, log *slog.Logger) (*Monitor, error) {
	file, where := "config", ""
	if cfg.file != "" {
		file, where = cfg.file, cfg.file+": "
	}
	if err := cfg.Validate(file); err != nil {
		return nil, err
	}
	m := &Monitor{cfg: cfg, log: log, cache: map[cacheKey]cached{}, shared: map[string]string{}}
	addr := net.JoinHostPort(cfg.HTTPServer.ListenHost, strconv.Itoa(cfg.HTTPServer.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%slisten on %s (http_server.port): %w", where, addr, err)
	}
	m.ln = ln
	for _, name := range cfg.Base.Clusters {
		for _, k := range cfg.Clusters[name].Kafka.NoEffect(name + ".kafka") {
			log.Warn("config key has no effect", "file", cfg.file, "key", k.Key, "value", k.Value, "reason", k.Reason)
		}
		m.clusters = append(m.clusters, newCluster(name, cfg.Clusters[name], cfg.Base, log.With("cluster", name)))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(lagCollector{m}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	mux.HandleFunc("/delay", m.handleDelay)
	mux.HandleFunc("/metrics", m.servePrometheus)
	mux.HandleFunc("/health", m.handleHealth)
	mux.HandleFunc("/debug/pprof/", slow(pprof.Index))
	mux.HandleFunc("/debug/pprof/cmdline", slow(pprof.Cmdline))
	mux.HandleFunc("/debug/pprof/profile", slow(pprof.Profile))
	mux.HandleFunc("/debug/pprof/symbol", slow(pprof.Symbol))
	mux.HandleFunc("/debug/pprof/trace", slow(pprof.Trace))
	m.srv = &http.Server{
		Handler:      mux,
		ReadTimeout:  time.Duration(cfg.HTTPServer.ReadTimeoutMs) * time.Millisecond,
		WriteTimeout: time.Duration(cfg.HTTPServer.WriteTimeoutMs) * time.Millisecond,
		IdleTimeout:  60 * time.Second,
	}
	return m, nil
}

// slow serves a profiling endpoint: to loopback clients only (the port
// listens on every interface by default, for zabbix and Prometheus; the
// profiles, like the other binaries' admin endpoints, are for this host),
// with the write timeout lifted, as they answer after the seconds asked
// for.
func slow(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			http.Error(w, "profiles are served to loopback clients only", http.StatusForbidden)
			return
		}
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(5 * time.Minute))
		h(w, r)
	}
}

// prometheusWriteTimeout is the least time a Prometheus or /delay answer
// gets. A Prometheus answer is gathered at scrape time, six series per
// partition, and takes longer the more partitions there are (50-90 ms for
// 1,600 on a loaded 2-core machine): http_server.write_timeout_ms (100 ms
// by default) would cut it, the scraper reading an EOF and losing every
// series. A /delay answer cut by it, for a client reading slowly an answer
// larger than the sockets' buffers, would reach zabbix_sender (curl passes
// on what it got) with its last line cut, perhaps among the digits of a
// lag. It is Prometheus's default scrape timeout.
const prometheusWriteTimeout = 10 * time.Second

// servePrometheus serves /metrics with the write deadline lifted.
func (m *Monitor) servePrometheus(w http.ResponseWriter, r *http.Request) {
	m.liftWriteDeadline(w)
	m.metrics.ServeHTTP(w, r)
}

// liftWriteDeadline lifts the write deadline to prometheusWriteTimeout
// when http_server.write_timeout_ms is shorter.
func (m *Monitor) liftWriteDeadline(w http.ResponseWriter) {
	if time.Duration(m.cfg.HTTPServer.WriteTimeoutMs)*time.Millisecond < prometheusWriteTimeout {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(prometheusWriteTimeout))
	}
}

// Addr is the HTTP listener's address.
func (m *Monitor) Addr() net.Addr { return m.ln.Addr() }

// Run serves until ctx ends or the listener fails.
func (m *Monitor) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range m.clusters {
		wg.Go(func() { c.run(ctx) })
	}
	errc := make(chan error, 1)
	go func() { errc <- m.srv.Serve(m.ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("http server: %w", err)
	}
	// Shutdown order: 1. stop answering HTTP; 2. close the ZooKeeper
	// sessions and Kafka clients (cancel) and wait for their goroutines.
	if !daemon.StopHTTP(m.srv, 5*time.Second) {
		m.log.Warn("requests still in progress after 5s, closed")
	}
	cancel()
	wg.Wait()
	m.log.Info("stopped")
	return err
}

// Close releases what New acquired (the listener); idempotent. The
// ZooKeeper clients live only while Run does.
func (m *Monitor) Close() error {
	m.closeOnce.Do(func() { m.ln.Close() })
	return nil
}

// Lags returns the lag of every partition of the named clusters (all when
// none are named), computed now.
func (m *Monitor) Lags(names ...string) []Lag {
	now := time.Now()
	var out []Lag
	for _, c := range m.clusters {
		if len(names) > 0 && !slices.Contains(names, c.name) {
			continue
		}
		stale := c.staleAfter()
		out = append(out, c.state.snapshot(c.name, now, stale, c.zkProblem(now), c.lastContact())...)
	}
	return out
}

// otherClusters names the clusters not in names.
func (m *Monitor) otherClusters(names []string) []string {
	var out []string
	for _, c := range m.clusters {
		if !slices.Contains(names, c.name) {
			out = append(out, c.name)
		}
	}
	return out
}

// unseen names the clusters kmonitor cannot see into at now: without a
// ZooKeeper session for longer than their session timeout, without
// <chroot>/consumers (see cluster.setMissing), or not read once since the
// start (cluster.everReached: until then, only some partitions are known,
// or none).
func (m *Monitor) unseen(now time.Time) map[string]bool {
	down := map[string]bool{}
	for _, c := range m.clusters {
		if c.zkProblem(now) != "" || c.missingPath() != "" || !c.everReached() {
			down[c.name] = true
		}
	}
	return down
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (m *Monitor) handleDelay(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	// r.URL.Query() drops the pairs it cannot read: format=zabbix;keys=item
	// would answer JSON.
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, fmt.Sprintf("query %q does not parse: %v", r.URL.RawQuery, err), http.StatusBadRequest)
		return
	}
	// Only the first value of a parameter would be read: a second one
	// (an unknown cluster, another format) must not pass unseen.
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if name == "_" {
			// A cache-buster (_=<time>, as jQuery and many dashboards
			// add to every GET): says nothing about the answer.
			continue
		}
		if name != "cluster" && name != "format" && name != "keys" && name != "detail" {
			// A misspelt parameter (formt=zabbix) would answer JSON of
			// every cluster as if it were not there.
			http.Error(w, fmt.Sprintf("unknown parameter %q (known: cluster, format, keys, detail)", name), http.StatusBadRequest)
			return
		}
		if len(q[name]) > 1 {
			http.Error(w, fmt.Sprintf("parameter %q given more than once", name), http.StatusBadRequest)
			return
		}
	}
	clusters := m.cfg.Base.Clusters
	if name := q.Get("cluster"); q.Has("cluster") {
		if !slices.Contains(clusters, name) {
			http.Error(w, fmt.Sprintf("unknown cluster %q (configured: %s)", name, strings.Join(clusters, ", ")), http.StatusBadRequest)
			return
		}
		clusters = []string{name}
	}
	format := q.Get("format")
	keys := q.Get("keys")
	if keys != "" && keys != "dotted" && keys != "item" {
		http.Error(w, fmt.Sprintf("unknown keys %q (dotted, item)", keys), http.StatusBadRequest)
		return
	}
	if keys != "" && format != "zabbix" {
		// Ignored, it would answer JSON or discovery data to a request
		// for item keys.
		http.Error(w, fmt.Sprintf("keys applies to format=zabbix only, not to format=%s", cmp.Or(format, "json")), http.StatusBadRequest)
		return
	}
	var withDetail bool
	switch d := q.Get("detail"); d {
	case "", "0", "false":
	case "1", "true":
		withDetail = true
	default:
		http.Error(w, fmt.Sprintf("unknown detail %q (1, true, 0, false)", d), http.StatusBadRequest)
		return
	}
	if withDetail && (format == "zabbix" || format == "zabbix_lld" || format == "prometheus") {
		// Detail is JSON: served in place of zabbix lines or discovery
		// data, it would reach zabbix_sender or a discovery rule.
		http.Error(w, fmt.Sprintf("detail applies to the JSON form only, not to format=%s", format), http.StatusBadRequest)
		return
	}
	switch format {
	case "", "json", "zabbix", "zabbix_lld":
	case "prometheus":
		if q.Has("cluster") {
			http.Error(w, "format=prometheus serves every cluster (labelled); leave out cluster", http.StatusBadRequest)
			return
		}
		m.servePrometheus(w, r)
		return
	default:
		http.Error(w, fmt.Sprintf("unknown format %q (json, zabbix, zabbix_lld, prometheus)", format), http.StatusBadRequest)
		return
	}
	if format == "zabbix_lld" {
		// Zabbix takes a discovery answer as the whole list: an empty or
		// partial one would have it mark every item of a cluster not yet
		// read (or not yet read whole), or of one whose chroot is not
		// there (misspelt, the wrong ensemble), as lost.
		var unknown []string
		for _, c := range m.clusters {
			if !slices.Contains(clusters, c.name) {
				continue
			}
			if p := c.missingPath(); p != "" {
				unknown = append(unknown, fmt.Sprintf("%s (%s does not exist)", c.name, p))
			} else if !c.everReached() {
				unknown = append(unknown, c.name)
			}
		}
		if len(unknown) > 0 {
			http.Error(w, "offsets not read from zookeeper, or partitions not listed by the brokers, yet: "+strings.Join(unknown, ", "), http.StatusServiceUnavailable)
			return
		}
	}
	m.liftWriteDeadline(w)
	if format == "zabbix" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	if withDetail { // holds ages: computed every time
		buf := bufPool.Get().(*bytes.Buffer)
		buf.Reset()
		defer bufPool.Put(buf)
		writeJSON(buf, clusters, m.Lags(clusters...), true)
		_, _ = w.Write(buf.Bytes())
		return
	}
	_, _ = w.Write(m.render(cacheKey{format, q.Get("cluster"), keys}, clusters))
}

// render returns the answer for k, from the cache when it is current.
func (m *Monitor) render(k cacheKey, clusters []string) []byte {
	gen := m.generation()
	now := time.Now()
	m.cacheMu.Lock()
	c, ok := m.cache[k]
	m.cacheMu.Unlock()
	if ok && c.gen == gen && now.Sub(c.at) < maxCacheAge {
		return c.body
	}
	var buf bytes.Buffer
	lags := m.Lags(clusters...)
	switch k.format {
	case "zabbix":
		var others []Lag
		if k.keys != "item" && len(clusters) < len(m.clusters) {
			others = m.Lags(m.otherClusters(clusters)...)
		}
		shared := writeZabbix(&buf, clusters, lags, others, k.keys == "item", m.unseen(now))
		m.logShared(k, clusters, shared)
	case "zabbix_lld":
		writeLLD(&buf, lags)
	default:
		writeJSON(&buf, clusters, lags, false)
	}
	m.cacheMu.Lock()
	m.cache[k] = cached{gen: gen, at: now, body: buf.Bytes()}
	m.cacheMu.Unlock()
	return buf.Bytes()
}

// logShared logs the dotted zabbix keys that several partitions share,
// when they change: for every cluster, or for one (zabbix_sender may be
// fed one cluster at a time).
func (m *Monitor) logShared(k cacheKey, clusters, shared []string) {
	if k.keys == "item" {
		return
	}
	s := strings.Join(shared, "; ")
	asked := strings.Join(clusters, "\x00")
	m.cacheMu.Lock()
	changed := s != m.shared[asked]
	if s == "" {
		delete(m.shared, asked)
	} else {
		m.shared[asked] = s
	}
	m.cacheMu.Unlock()
	if changed && s != "" {
		m.log.Warn("zabbix keys shared by several partitions", "keys", s, "effect", "not sent, counted in kmonitor.errors; keys=item tells them apart")
	}
}

func (m *Monitor) handleHealth(w http.ResponseWriter, _ *http.Request) {
	var down []string
	for _, c := range m.clusters {
		if !c.healthy() {
			down = append(down, c.name)
		}
	}
	if len(down) > 0 {
		http.Error(w, "no zookeeper session: "+strings.Join(down, ", "), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// lagCollector exposes the lag as Prometheus gauges, computed at scrape time.
type lagCollector struct{ m *Monitor }

var (
	labels      = []string{"cluster", "module", "topic", "partition"}
	descLag     = prometheus.NewDesc("kmonitor_lag_messages", "Records not yet pushed: log-end offset minus committed offset.", labels, nil)
	descSeconds = prometheus.NewDesc("kmonitor_lag_seconds", "Estimated age of the oldest record not yet pushed (within one poll interval).", labels, nil)
	descAtLeast = prometheus.NewDesc("kmonitor_lag_seconds_at_least", "1 when kmonitor_lag_seconds is only a lower bound: the lag began before the log-end history kept (before kmonitor started, for one), or while the log end could not be read.", labels, nil)
	descCommit  = prometheus.NewDesc("kmonitor_committed_offset", "Next offset to push, as committed in ZooKeeper.", labels, nil)
	descEnd     = prometheus.NewDesc("kmonitor_log_end_offset", "Partition log-end offset, as last polled.", labels, nil)
	descKnown   = prometheus.NewDesc("kmonitor_lag_known", "1 when the partition's lag is known, 0 when its offset or log end is not.", labels, nil)
	descZK      = prometheus.NewDesc("kmonitor_zookeeper_up", "1 while kmonitor holds a ZooKeeper session for the cluster.", []string{"cluster"}, nil)
	descRead    = prometheus.NewDesc("kmonitor_first_read_done", "1 once the cluster's offsets were read whole since kmonitor started and the brokers listed the partitions of their topics (zabbix_lld answers then); 0 before: the cluster's series are only some of its partitions', or none.", []string{"cluster"}, nil)
	descMissing = prometheus.NewDesc("kmonitor_zookeeper_path_missing", "1 while the cluster's <chroot>/consumers (or the chroot itself) does not exist: nothing to monitor, counted in kmonitor.errors.", []string{"cluster"}, nil)
)

func (lagCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLag, descSeconds, descAtLeast, descCommit, descEnd, descKnown, descZK, descRead, descMissing} {
		ch <- d
	}
}

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.m.Lags() {
		lv := []string{l.Cluster, l.Module, l.Topic, l.Partition}
		known := 0.0
		if l.Err == "" {
			known = 1
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(l.Lag), lv...)
			ch <- prometheus.MustNewConstMetric(descSeconds, prometheus.GaugeValue, l.LagSeconds, lv...)
			atLeast := 0.0
			if l.LagSecondsAtLeast {
				atLeast = 1
			}
			ch <- prometheus.MustNewConstMetric(descAtLeast, prometheus.GaugeValue, atLeast, lv...)
		}
		// The offsets whenever known, as ?detail=1 gives them: a committed
		// offset past the log end has both.
		if l.LogEnd >= 0 {
			ch <- prometheus.MustNewConstMetric(descEnd, prometheus.GaugeValue, float64(l.LogEnd), lv...)
		}
		if l.Committed >= 0 {
			ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(l.Committed), lv...)
		}
		ch <- prometheus.MustNewConstMetric(descKnown, prometheus.GaugeValue, known, lv...)
	}
	for _, cl := range c.m.clusters {
		up := 0.0
		if cl.healthy() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descZK, prometheus.GaugeValue, up, cl.name)
		read := 0.0
		if cl.everReached() {
			read = 1
		}
		ch <- prometheus.MustNewConstMetric(descRead, prometheus.GaugeValue, read, cl.name)
		missing := 0.0
		if cl.missingPath() != "" {
			missing = 1
		}
		ch <- prometheus.MustNewConstMetric(descMissing, prometheus.GaugeValue, missing, cl.name)
	}
}
