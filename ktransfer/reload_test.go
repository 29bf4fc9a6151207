package ktransfer_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// confDir is one process's ktransfer.yaml and module files, reaching
// ZooKeeper at zk and Kafka at brokers.
type confDir struct {
	dir, path, zk string
	brokers       []string
	admin         string // admin_addr; "": off
	shutdownMs    int    // shutdown_timeout_ms; 0: 3000
}

// reloadConf writes a ktransfer.yaml reaching e that enables modules, in a
// directory of its own.
func (e *env) reloadConf(t *testing.T, modules ...string) confDir {
	t.Helper()
	dir := t.TempDir()
	c := confDir{dir: dir, path: filepath.Join(dir, "ktransfer.yaml"), zk: e.zkAdr, brokers: e.kafka.ListenAddrs()}
	if err := os.MkdirAll(filepath.Join(dir, "modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	c.enable(t, "", modules...)
	return c
}

// enable rewrites ktransfer.yaml to enable modules, with extra lines at
// its end. zk_timeout_ms is envZKTimeoutMs unless extra sets it.
func (c confDir) enable(t *testing.T, extra string, modules ...string) {
	t.Helper()
	shutdownMs := c.shutdownMs
	if shutdownMs == 0 {
		shutdownMs = 3000
	}
	if !strings.Contains(extra, "zk_timeout_ms:") {
		extra = fmt.Sprintf("zk_timeout_ms: %d\n%s", envZKTimeoutMs, extra)
	}
	data := fmt.Sprintf("zk_chroot: %s\nzk_hosts: [%s]\nbroker_hosts: [%s]\nmodule_conf_dir: %s\nmodule_enabled: [%s]\n"+
		"admin_addr: %q\nshutdown_timeout_ms: %d\n%s", chroot, c.zk, strings.Join(c.brokers, ", "),
		filepath.Join(c.dir, "modules"), strings.Join(modules, ", "), c.admin, shutdownMs, extra)
	if err := os.WriteFile(c.path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// module writes modules/<name>.yaml: topic pushed to backend at
// /<path>/{#TOPIC}, with extra lines.
func (c confDir) module(t *testing.T, name, topic, path, backend, extra string) {
	t.Helper()
	data := fmt.Sprintf("topic: %s\nprotocol:\n name: http\n uri: /%s/{#TOPIC}?key={#KEY}\n write_timeout_ms: 2000\n conn_timeout_ms: 2000\n"+
		"worker_num: 8\nwindow_size: 100\nfail_retry_interval_ms: 10\nmax_retry_interval_ms: 100\nbackend_servers: [%s]\n%s",
		topic, path, strings.TrimPrefix(backend, "http://"), extra)
	if err := os.WriteFile(filepath.Join(c.dir, "modules", name+".yaml"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// editModule replaces old, which it must hold, with new in
// modules/<name>.yaml.
func (c confDir) editModule(t *testing.T, name, old, new string) {
	t.Helper()
	file := filepath.Join(c.dir, "modules", name+".yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s does not hold %q:\n%s", file, old, data)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startConf runs a Transfer from the files of c, logging to log (nil: the
// test log).
func startConf(t *testing.T, c confDir, log *slog.Logger) *running {
	t.Helper()
	cfg, err := ktransfer.LoadConfig(c.path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if log == nil {
		log = testLog(t)
	}
	tr, err := ktransfer.New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &running{tr: tr, stop: runtest.Start(t, tr.Run, 30*time.Second)}
}

// ownerEpochs returns partition → owner node creation zxid (the epoch).
func (e *env) ownerEpochs(t *testing.T, module, topic string) map[string]int64 {
	t.Helper()
	dir := zklayout.Owners(chroot, module, topic)
	names, _, err := e.conn.Children(dir)
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	for _, n := range names {
		if _, stat, err := e.conn.Get(dir + "/" + n); err == nil {
			out[n] = stat.Czxid
		}
	}
	return out
}

// traffic produces records to topics until stopped: value i (from 0) to
// every topic, key k<i%40>.
type traffic struct {
	stop     chan struct{}
	done     chan struct{}
	produced atomic.Int64
}

func (e *env) startTraffic(t *testing.T, topics ...string) *traffic {
	t.Helper()
	return e.startKeyedTraffic(t, 40, topics...)
}

// startKeyedTraffic is startTraffic over keys keys: key k<i%keys>.
func (e *env) startKeyedTraffic(t *testing.T, keys int, topics ...string) *traffic {
	t.Helper()
	cl := kafkatest.Client(t, e.kafka, e.kc)
	tr := &traffic{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		for i := 0; ; i += 20 {
			select {
			case <-tr.stop:
				return
			default:
			}
			var rs []*kgo.Record
			for j := i; j < i+20; j++ {
				for _, topic := range topics {
					rs = append(rs, &kgo.Record{Topic: topic, Key: []byte("k" + strconv.Itoa(j%keys)), Value: []byte(strconv.Itoa(j))})
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := cl.ProduceSync(ctx, rs...).FirstErr()
			cancel()
			if err != nil {
				t.Errorf("produce: %v", err)
				return
			}
			tr.produced.Store(int64(i + 20))
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return tr
}

// finish stops the traffic and returns how many records went to each topic.
func (tr *traffic) finish() int {
	close(tr.stop)
	<-tr.done
	return int(tr.produced.Load())
}

// repeats counts the records a backend received more than once.
func repeats(b *backend) int {
	n := map[string]int{}
	r := 0
	for _, p := range b.got() {
		if n[p.body]++; n[p.body] > 1 {
			r++
		}
	}
	return r
}

// TestReloadFleetUnderTraffic: two processes run modules u (unchanged), r
// (to be removed) and c (to be changed) while records arrive on every
// topic; process A reloads files that keep u, drop r, change c's URI and
// add n. n starts on A; r's partitions on A go to B; c restarts on A with
// its new URI; u's partitions keep their owner nodes (same epochs) and
// none of u's records is pushed twice; nothing is lost anywhere.
func TestReloadFleetUnderTraffic(t *testing.T) {
	topics := []string{"tu", "tr", "tc", "tn"}
	var kt []kafkatest.Topic
	for _, name := range topics {
		kt = append(kt, kafkatest.Topic{Name: name, Partitions: 4})
	}
	e := newEnv(t, kt...)
	slow := func(int, push, http.ResponseWriter) { time.Sleep(time.Millisecond) } // keep pushes in flight
	bu, br, bc, bn := newBackend(t, slow), newBackend(t, slow), newBackend(t, slow), newBackend(t, slow)
	var procs []confDir
	for range 2 {
		c := e.reloadConf(t, "u", "r", "c")
		c.module(t, "u", "tu", "u", bu.URL, "")
		c.module(t, "r", "tr", "r", br.URL, "")
		c.module(t, "c", "tc", "c", bc.URL, "")
		c.module(t, "n", "tn", "n", bn.URL, "") // not enabled yet
		procs = append(procs, c)
	}
	a := startConf(t, procs[0], nil)
	b := startConf(t, procs[1], nil)
	split := func(module, topic string) bool {
		return halves(e.owners(t, module, topic), 4)
	}
	waitFor(t, "u, r and c shared 2 + 2", 20*time.Second, func() bool {
		return split("u", "tu") && split("r", "tr") && split("c", "tc")
	})
	tr := e.startTraffic(t, topics...)
	waitFor(t, "pushes of every module", 20*time.Second, func() bool {
		return len(bu.got()) > 200 && len(br.got()) > 200 && len(bc.got()) > 200
	})
	uEpochs := e.ownerEpochs(t, "u", "tu")
	hashBefore := a.tr.ConfigStatus().Hash

	procs[0].enable(t, "", "u", "c", "n")
	procs[0].module(t, "c", "tc", "c2", bc.URL, "")
	reloadAt := time.Now()
	if err := a.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	reloaded := time.Since(reloadAt)
	waitFor(t, "c pushing with its new URI", 20*time.Second, func() bool {
		return slices.ContainsFunc(bc.got(), func(p push) bool { return strings.HasPrefix(p.path, "/c2/") })
	})
	pushingAgain := time.Since(reloadAt)
	waitFor(t, "after the reload: n on A alone, r on B alone, c and u shared", 20*time.Second, func() bool {
		n, r := e.owners(t, "n", "tn"), e.owners(t, "r", "tr")
		return len(n) == 4 && distinctOwners(n)[a.tr.ID()] == 4 && len(r) == 4 && distinctOwners(r)[b.tr.ID()] == 4 &&
			split("c", "tc") && split("u", "tu")
	})
	time.Sleep(300 * time.Millisecond) // traffic after the move
	sent := tr.finish()

	st := a.tr.ConfigStatus()
	last := st.LastReload
	if last == nil || last.Result != "ok" || !slices.Equal(last.Started, []string{"n"}) || !slices.Equal(last.Stopped, []string{"r"}) ||
		!slices.Equal(last.Restarted, []string{"c"}) {
		t.Errorf("last reload: %+v", last)
	}
	if st.Hash == hashBefore || st.Hash != last.Hash || len(st.Hash) != 12 {
		t.Errorf("hash %q before, %q after (last reload's %q)", hashBefore, st.Hash, last.Hash)
	}
	if got := e.ownerEpochs(t, "u", "tu"); !mapsEqual(got, uEpochs) {
		t.Errorf("u's owner nodes changed in the reload: %v, before %v", got, uEpochs)
	}
	// n starts from the oldest record: all of it is delivered too.
	for _, c := range []struct {
		name string
		b    *backend
	}{{"u", bu}, {"r", br}, {"c", bc}, {"n", bn}} {
		waitFor(t, fmt.Sprintf("%s: all %d records", c.name, sent), 30*time.Second, func() bool { return distinct(c.b) == sent })
		deliveredAll(t, c.b, sent)
	}
	ru, rr, rc := repeats(bu), repeats(br), repeats(bc)
	t.Logf("%d records a topic; reload took %v, changed module pushing again after %v; pushed twice: u %d, r %d, c %d, n %d",
		sent, reloaded.Round(time.Millisecond), pushingAgain.Round(time.Millisecond), ru, rr, rc, repeats(bn))
	if ru != 0 {
		t.Errorf("%d records of the unchanged module pushed twice", ru)
	}
	// A hand-over drops the records still queued for a worker, so the
	// records pushed after the first dropped one are not committed and the
	// peer pushes them again: at most the window (README: a moved
	// partition re-pushes at most window_size records).
	if rr > 100 || rc > 2*100 {
		t.Errorf("pushed twice: r %d (handed over once), c %d (handed over and back); window_size is 100", rr, rc)
	}
	if ids, _, err := e.conn.Children(zklayout.ConsumerIDs(chroot, "r")); err != nil || len(ids) != 1 || ids[0] != b.tr.ID() {
		t.Errorf("r's ids/ after the reload: %v %v, want only B", ids, err)
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// startModuleM runs a Transfer, logging to logs, from files enabling
// module m of topic t (partitions of it), which pushes to a backend that
// accepts.
func startModuleM(t *testing.T, partitions int32, logs *runtest.Log) (*env, *backend, confDir, *running) {
	t.Helper()
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: partitions})
	bk := newBackend(t, nil)
	c := e.reloadConf(t, "m")
	c.module(t, "m", "t", "m", bk.URL, "")
	return e, bk, c, startConf(t, c, slog.New(slog.NewTextHandler(logs, nil)))
}

// TestReloadRefusesBadFiles: a reload whose files have problems (in
// ktransfer.yaml and in a module file) is refused with every problem
// logged, counted and in /status; the running configuration goes on
// untouched (no partition moves). A change of a key that needs a restart
// is applied as far as the modules go, logged, and listed.
func TestReloadRefusesBadFiles(t *testing.T) {
	var logs runtest.Log
	e, bk, c, r := startModuleM(t, 2, &logs)
	waitFor(t, "both partitions", 20*time.Second, func() bool { return len(e.owners(t, "m", "t")) == 2 })
	produceN(t, e, 0, 100)
	waitFor(t, "100 records", 20*time.Second, func() bool { return distinct(bk) == 100 })
	epochs := e.ownerEpochs(t, "m", "t")
	before := r.tr.ConfigStatus()

	c.enable(t, "zk_timeout_ms: 5\n", "m", "m2")
	c.module(t, "m", "t", "m", bk.URL, "max_retry_times: -2\n")
	c.module(t, "m2", "t", "m2", bk.URL, "dispatch: fastest\n")
	err := r.tr.Reload(context.Background())
	if err == nil {
		t.Fatal("a reload with bad files was applied")
	}
	want := []string{
		c.path + ": zk_timeout_ms: must be 1000..2147483647, got 5",
		filepath.Join(c.dir, "modules", "m.yaml") + ": max_retry_times: must be -1 (retry until success) or >= 0, got -2",
		filepath.Join(c.dir, "modules", "m2.yaml") + ": dispatch: must be hash or idle_worker, got \"fastest\"",
	}
	st := r.tr.ConfigStatus()
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("reload error lacks %q: %v", w, err)
		}
		if !strings.Contains(st.LastReload.Error, w) {
			t.Errorf("/status's last reload lacks %q: %+v", w, st.LastReload)
		}
		if !strings.Contains(logs.String(), strconv.Quote(w)) {
			t.Errorf("log lacks %q:\n%s", w, logs.String())
		}
	}
	if st.LastReload.Result != "refused" || st.Hash != before.Hash || !st.LoadedAt.Equal(before.LoadedAt) {
		t.Errorf("after a refused reload: %+v (before %+v)", st, before)
	}
	if n := len(r.tr.Status()); n != 1 {
		t.Errorf("%d modules running after a refused reload, want the 1 running before", n)
	}
	produceN(t, e, 100, 200)
	waitFor(t, "the running configuration pushing on", 20*time.Second, func() bool { return distinct(bk) == 200 })
	if got := e.ownerEpochs(t, "m", "t"); !mapsEqual(got, epochs) {
		t.Errorf("owner nodes changed by a refused reload: %v, before %v", got, epochs)
	}

	// Fixed files, and a key that needs a restart changed: applied, the
	// key listed and logged, the running value kept.
	c.enable(t, "zk_timeout_ms: 5000\n", "m")
	c.module(t, "m", "t", "m", bk.URL, "")
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	st = r.tr.ConfigStatus()
	if st.LastReload.Result != "ok" || !slices.Equal(st.LastReload.RestartNeeded, []string{"zk_timeout_ms"}) || st.Hash == before.Hash {
		t.Errorf("after the fixed reload: %+v", st.LastReload)
	}
	if !strings.Contains(logs.String(), "key=zk_timeout_ms") {
		t.Errorf("log does not say zk_timeout_ms needs a restart:\n%s", logs.String())
	}
	if got := e.ownerEpochs(t, "m", "t"); !mapsEqual(got, epochs) {
		t.Errorf("owner nodes of the unchanged module changed: %v, before %v", got, epochs)
	}
	if repeated := repeats(bk); repeated != 0 {
		t.Errorf("%d records pushed twice", repeated)
	}
}

// TestShutdownDuringReloadIsBounded: a reload removes a module whose
// backend never answers (no read timeout: its push cannot be interrupted),
// and the process is stopped while that module is handing over; a module
// the reload keeps has a push that never ends too. The stop is bounded by
// one shutdown_timeout_ms (the pushes are abandoned, their records
// uncommitted), not by the backend, and the other module hands over
// cleanly. Before, the stop waited for the reload's own wait and then
// gave the kept modules a whole shutdown_timeout_ms more.
func TestShutdownDuringReloadIsBounded(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "h", Partitions: 1}, kafkatest.Topic{Name: "g", Partitions: 1})
	ok := newBackend(t, nil)
	unblock := make(chan struct{})
	var hanging atomic.Int64
	hang := newBackend(t, func(int, push, http.ResponseWriter) { hanging.Add(1); <-unblock })
	t.Cleanup(func() { close(unblock) }) // before the backend's Close, which waits for its requests
	c := e.reloadConf(t, "m", "h", "g")
	// 6 s: the stop takes the timeout and about 2 s more (8 s), a whole
	// timeout more before (14 s); the bound between leaves a loaded host 3 s.
	c.shutdownMs = 6000
	c.enable(t, "", "m", "h", "g")
	c.module(t, "m", "t", "m", ok.URL, "")
	c.module(t, "h", "h", "h", hang.URL, "")
	c.module(t, "g", "g", "g", hang.URL, "")
	r := startConf(t, c, nil)
	produceN(t, e, 0, 100)
	e.produce(t, "h", [][2]string{{"k", "1"}})
	e.produce(t, "g", [][2]string{{"k", "1"}})
	waitFor(t, "m's records, h's and g's pushes hanging", 20*time.Second, func() bool { return distinct(ok) == 100 && hanging.Load() >= 2 })

	c.enable(t, "", "m", "g")
	r.tr.RequestReload()
	waitFor(t, "h deregistered: the reload is handing it over", 10*time.Second, func() bool {
		ids, _, err := e.conn.Children(zklayout.ConsumerIDs(chroot, "h"))
		return err == nil && len(ids) == 0
	})
	start := time.Now()
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	took := time.Since(start)
	t.Logf("stopped %v after the stop, during a reload waiting on a push that never ends (shutdown_timeout_ms 6000)", took.Round(time.Millisecond))
	// After shutdown_timeout_ms the pushes are cut short, a push that
	// cannot be interrupted is waited for one second more, then the
	// modules commit and the clients close (5 s measured with a 3 s
	// timeout; twice the timeout, 8 s, before).
	if took > 6*time.Second+5*time.Second {
		t.Errorf("stop took %v; shutdown_timeout_ms is 6s", took)
	}
	if got := e.storedOffset(t, "m", "t", 0); got != "100" {
		t.Errorf("m's stored offset %s, want 100", got)
	}
	if o := e.owners(t, "m", "t"); len(o) != 0 {
		t.Errorf("owner nodes left after the stop: %v", o)
	}
}

// TestReloadForgetsRemovedBackends: a reload that removes a backend from
// a module, or stops a module, removes their
// ktransfer_breaker_opened_total series; the backends kept keep theirs.
func TestReloadForgetsRemovedBackends(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	_, _, goodAddr, deadAddr := goodAndDead(t)
	c := e.reloadConf(t, "m", "m2")
	conf, err := os.ReadFile(c.path)
	if err != nil {
		t.Fatal(err)
	}
	// An admin listener, for /metrics.
	if err := os.WriteFile(c.path, bytes.Replace(conf, []byte(`admin_addr: ""`), []byte("admin_addr: 127.0.0.1:0"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	breaker := "breaker_failures: 1\nbreaker_cooldown_ms: 60000\n"
	c.module(t, "m", "t", "m", goodAddr+", "+deadAddr, breaker)
	c.module(t, "m2", "t", "m2", goodAddr, breaker)
	r := startConf(t, c, nil)
	admin := "http://" + r.tr.AdminAddr().String()
	produceN(t, e, 0, 20)
	series := func(module, backend string) *regexp.Regexp {
		return regexp.MustCompile(`(?m)^ktransfer_breaker_opened_total\{backend="` + regexp.QuoteMeta(backend) + `",module="` + module + `"\} `)
	}
	waitFor(t, "the dead backend's breaker opened", 20*time.Second, func() bool {
		return regexp.MustCompile(series("m", deadAddr).String() + `[1-9]`).MatchString(get(t, admin+"/metrics"))
	})

	c.module(t, "m", "t", "m", goodAddr, breaker) // the dead backend removed
	conf, _ = os.ReadFile(c.path)                 // m2 stopped
	if err := os.WriteFile(c.path, bytes.Replace(conf, []byte("module_enabled: [m, m2]"), []byte("module_enabled: [m]"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	metrics := get(t, admin+"/metrics")
	for _, s := range []struct {
		module, backend string
		want            bool
	}{{"m", deadAddr, false}, {"m2", goodAddr, false}, {"m", goodAddr, true}} {
		if got := series(s.module, s.backend).MatchString(metrics); got != s.want {
			t.Errorf("after the reload: a ktransfer_breaker_opened_total series of module %s, backend %s: %v, want %v", s.module, s.backend, got, s.want)
		}
	}
}

// moduleSeries lists the ktransfer series (names and labels, no values)
// admin's /metrics has for modules, the configuration's own aside.
func moduleSeries(t *testing.T, admin string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(get(t, admin+"/metrics"), "\n") {
		if strings.HasPrefix(line, "ktransfer_") && !strings.HasPrefix(line, "ktransfer_config_") {
			series, _, _ := strings.Cut(line, " ")
			out = append(out, series)
		}
	}
	slices.Sort(out)
	return out
}

// TestReloadMetricSeries: a module removed by a reload takes its series
// with it (breakers' included); a refused reload, whose new modules were
// built and discarded, leaves /metrics as it was. Before, the removed
// module's series stayed, and a refused reload added series of modules
// that never ran.
func TestReloadMetricSeries(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "t2", Partitions: 1})
	bk := newBackend(t, nil)
	c := e.reloadConf(t)
	c.admin = "127.0.0.1:0"
	c.enable(t, "", "m", "r")
	c.module(t, "m", "t", "m", bk.URL, "")
	c.module(t, "r", "t2", "r", bk.URL, "breaker_failures: 3\n")
	c.module(t, "n", "t2", "n", bk.URL, "breaker_failures: 3\n")
	c.module(t, "bad", "forbidden", "bad", bk.URL, "")
	r := startConf(t, c, nil)
	admin := "http://" + r.tr.AdminAddr().String()
	produceN(t, e, 0, 10)
	waitFor(t, "10 records pushed", 20*time.Second, func() bool { return distinct(bk) >= 10 })
	hasModule := func(series []string, name string) bool {
		return slices.ContainsFunc(series, func(s string) bool { return strings.Contains(s, `module="`+name+`"`) })
	}
	if !hasModule(moduleSeries(t, admin), "r") {
		t.Fatal("no series of module r while it runs")
	}

	c.enable(t, "", "m") // r removed
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := moduleSeries(t, admin)
	if hasModule(before, "r") {
		t.Errorf("series of removed module r remain: %q", slices.DeleteFunc(slices.Clone(before), func(s string) bool { return !strings.Contains(s, `module="r"`) }))
	}
	if !hasModule(before, "m") {
		t.Errorf("no series of module m, still running: %q", before)
	}

	c.enable(t, "", "m", "n", "bad") // n is fine, bad's topic is not described to the process
	var on atomic.Bool
	on.Store(true)
	topicMetadataError(t, e, "forbidden", kerr.TopicAuthorizationFailed, &on, 1)
	if err := r.tr.Reload(context.Background()); err == nil {
		t.Fatal("reload with a module on a topic not described not refused")
	}
	if after := moduleSeries(t, admin); !slices.Equal(after, before) {
		t.Errorf("a refused reload changed /metrics' series:\nbefore %q\nafter  %q", before, after)
	}
}

// TestReloadSeesRewrittenSecretFile: the secret file a module's
// signing_secrets names is rewritten in place (as secret managers and
// Kubernetes mounts do) and the configuration reloaded: the module
// restarts, and the pushes are signed with the new key only; the secret
// appears nowhere in the log, and the shown hash, which leaves secrets
// out, stays. Before, the reload saw no change (paths only) and the old
// key stayed in use.
func TestReloadSeesRewrittenSecretFile(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	bk := newBackend(t, nil)
	k1, k2 := newSecret(t), newSecret(t)
	secret := writeSecretFile(t, k1, 0o600)
	c := e.reloadConf(t, "m")
	c.module(t, "m", "t", "m", bk.URL, "")
	c.editModule(t, "m", "protocol:\n", "protocol:\n signing_secrets: ["+secret+"]\n")
	var logs runtest.Log
	r := startConf(t, c, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	produceN(t, e, 0, 10)
	waitFor(t, "10 records pushed", 20*time.Second, func() bool { return distinct(bk) == 10 })
	hash := r.tr.ConfigStatus().Hash

	if err := os.WriteFile(secret, []byte(k2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := r.tr.ConfigStatus()
	if !slices.Equal(st.LastReload.Restarted, []string{"m"}) || st.Hash != hash {
		t.Errorf("after rewriting the secret file: restarted %v (want [m]), hash %s → %s (want unchanged)", st.LastReload.Restarted, hash, st.Hash)
	}
	produceN(t, e, 10, 20)
	waitFor(t, "20 records pushed", 20*time.Second, func() bool { return distinct(bk) == 20 })
	for _, p := range bk.got() {
		v, _ := strconv.Atoi(p.body)
		if v < 10 {
			continue
		}
		if err := verifyWebhook(k2, p.header, []byte(p.body), time.Now(), time.Minute); err != nil {
			t.Fatalf("record %d after the reload: not signed with the new key: %v", v, err)
		}
		if err := verifyWebhook(k1, p.header, []byte(p.body), time.Now(), time.Minute); err == nil {
			t.Fatalf("record %d after the reload: still signed with the old key", v)
		}
	}
	for _, k := range []string{k1, k2} {
		if strings.Contains(logs.String(), strings.TrimPrefix(k, "whsec_")) {
			t.Error("a secret appears in the log")
		}
	}
}

// TestReloadRestartNeededStaysInConfig: a changed key that needs a restart
// stays in /status's config.restart_needed after later reloads (refused
// ones included) until a reload reverts it; a refused reload logs no
// "needs a restart" warning. Before, it was only in last_reload, and a
// refused reload warned about keys it did not apply.
func TestReloadRestartNeededStaysInConfig(t *testing.T) {
	var logs runtest.Log
	_, _, c, r := startModuleM(t, 1, &logs)
	restartNeeded := func() []string { return r.tr.ConfigStatus().RestartNeeded }
	waitFor(t, "m running", 20*time.Second, func() bool { st := r.tr.Status(); return len(st) == 1 && len(st[0].Partitions) == 1 })

	c.enable(t, "zk_timeout_ms: 4000\n", "m")
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := restartNeeded(); !slices.Equal(got, []string{"zk_timeout_ms"}) {
		t.Fatalf("restart_needed %v, want [zk_timeout_ms]", got)
	}
	warned := strings.Count(logs.String(), "needs a restart")

	c.enable(t, "zk_timeout_ms: 5000\nshutdown_timeout_ms: 1\n", "m", "missing") // refused: no file for module missing
	if err := r.tr.Reload(context.Background()); err == nil {
		t.Fatal("reload of a missing module not refused")
	}
	if n := strings.Count(logs.String(), "needs a restart"); n != warned {
		t.Errorf("a refused reload logged %d \"needs a restart\" warnings", n-warned)
	}
	if got := restartNeeded(); !slices.Equal(got, []string{"zk_timeout_ms"}) {
		t.Errorf("after a refused reload, restart_needed %v, want [zk_timeout_ms]", got)
	}
	if err := r.tr.Reload(context.Background()); err == nil { // the same files: refused again
		t.Fatal("reload of a missing module not refused")
	}

	c.enable(t, "", "m") // reverted
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := restartNeeded(); len(got) != 0 {
		t.Errorf("after reverting, restart_needed %v", got)
	}
}

// TestReloadRefusalHidesSigningSecret: a module file giving
// signing_secrets as one value instead of a list is refused without the
// secret in the error (which reaches the log and /status).
func TestReloadRefusalHidesSigningSecret(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	b := newBackend(t, nil)
	c := e.reloadConf(t, "m")
	c.module(t, "m", "t", "m", b.URL, "")
	r := startConf(t, c, nil)
	const secret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	f := c.dir + "/modules/m.yaml"
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), "protocol:\n", "protocol:\n signing_secrets: whsec_"+secret+"\n", 1))
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "running", 10*time.Second, func() bool {
		err = r.tr.Reload(context.Background())
		return err == nil || err.Error() != "not running"
	})
	st := r.tr.ConfigStatus()
	if err == nil || st.LastReload == nil || st.LastReload.Result != "refused" ||
		!strings.Contains(st.LastReload.Error, "protocol.signing_secrets: must be a list, got a string (not shown: it may be a secret)") {
		t.Fatalf("reload: %v, last reload %+v; want refused, naming the field", err, st.LastReload)
	}
	if strings.Contains(st.LastReload.Error, secret) {
		t.Errorf("/status last_reload.error shows the signing secret: %s", st.LastReload.Error)
	}
}

// TestConfigHashLeavesSecretsOut: the shown hash of the configuration
// covers the files without their secrets: changing only an inline
// password or signing secret keeps it (it cannot confirm a guessed
// password), the same files give the same hash in another process, and
// any other change changes it.
func TestConfigHashLeavesSecretsOut(t *testing.T) {
	dir := t.TempDir()
	base := "zk_hosts: [127.0.0.1:2181]\nzk_chroot: /mq/c\nbroker_hosts: [127.0.0.1:9092]\nmodule_conf_dir: " + dir +
		"\nmodule_enabled: [m]\nkafka:\n  sasl:\n    mechanism: PLAIN\n    user: u\n    password: %s\n"
	module := "topic: t\nbackend_servers: [127.0.0.1:8080]\nprotocol:\n  uri: /x\n  signing_secrets: [%s]\n"
	hashOf := func(password, secret string) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(fmt.Sprintf(module, secret)), 0o644); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, "ktransfer.yaml")
		if err := os.WriteFile(file, []byte(fmt.Sprintf(base, password)), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := ktransfer.LoadConfig(file)
		if err != nil {
			t.Fatal(err)
		}
		return ktransfer.ConfigHash(cfg)
	}
	k1, k2 := newSecret(t), newSecret(t)
	h := hashOf("hunter2", k1)
	if len(h) != 12 {
		t.Fatalf("hash %q: want 12 hex digits", h)
	}
	if again := hashOf("hunter2", k1); again != h {
		t.Errorf("the same files: hash %s, then %s", h, again)
	}
	if other := hashOf("correct horse", k2); other != h {
		t.Errorf("only the password and the signing secret changed: hash %s → %s; want unchanged", h, other)
	}
	base = strings.Replace(base, "user: u", "user: v", 1)
	if other := hashOf("hunter2", k1); other == h {
		t.Errorf("the user changed: hash %s unchanged", h)
	}
}
