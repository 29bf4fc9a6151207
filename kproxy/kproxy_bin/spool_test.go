package main

import (
	"bufio"
	"bytes"
	"context"
	bin "encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// The tests in this file hold kproxy_bin, as a process, to the spool's
// promises (README "Spool") where a process boundary matters: Kafka stopped
// and started again, kill -9 and a restart on the same spool_dir, a disk
// that refuses writes (a file-size limit), a segment damaged while kproxy
// was down. Clients write numbered records per key and keep a history of
// the answers; the checker reads Kafka back: every record answered 200 or
// 202 is there, per key the first copies are in order, duplicates only
// where the README allows them, and no record answered 503 is there.

const spoolTopic = "t"

// spoolProc is one kproxy_bin configuration with a spool, started and
// killed as the test needs; every run logs into its own directory.
type spoolProc struct {
	t        *testing.T
	dir      string // spool_dir is dir/spool
	brokers  string
	extra    string // more config lines
	port     int
	admin    int
	runs     int
	cmd      *exec.Cmd
	exited   <-chan struct{} // closed once the current run ended
	stderr   *bintest.Output // the current run's standard error
	wrap     []string        // a command kproxy_bin's command line is given to, to run it (nil: none)
	logFile  string          // the current run's log
	prevLogs []string
}

func newSpoolProc(t *testing.T, brokers, extra string) *spoolProc {
	// Two ports in one call: two calls may return the same port.
	port := bintest.FreePorts(t, 2)
	return &spoolProc{t: t, dir: t.TempDir(), brokers: brokers, extra: extra, port: port, admin: port + 1}
}

func (p *spoolProc) spoolDir() string { return filepath.Join(p.dir, "spool") }

// start runs kproxy_bin; with fileLimit > 0 through sh, under
// `ulimit -f fileLimit` (the shell's blocks: 512 bytes for dash). It waits
// until the admin port answers.
func (p *spoolProc) start(fileLimit int) {
	t := p.t
	t.Helper()
	p.runs++
	logDir := filepath.Join(p.dir, "log"+strconv.Itoa(p.runs))
	p.logFile = filepath.Join(logDir, "kproxy.log")
	cfg := fmt.Sprintf("log_dir: %s\nlog_level: 4\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: 127.0.0.1:%d\n"+
		"read_timeout_ms: 5000\nwrite_timeout_ms: 5000\nbroker_hosts: [%s]\n"+
		"produce_timeout_ms: 3000\nspool_dir: %s\nspool_after_ms: 300\n%s",
		logDir, p.port, p.admin, p.brokers, p.spoolDir(), p.extra)
	f := filepath.Join(p.dir, "kproxy.yaml")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var wrapErr *bintest.Output // the wrapper's standard error
	switch {
	case fileLimit > 0:
		p.cmd, p.stderr = bintest.Start(t, "sh", "-c", fmt.Sprintf(`ulimit -f %d && exec "$0" -f "$1"`, fileLimit), binary(t), f)
	case p.wrap != nil:
		p.cmd, wrapErr = bintest.Start(t, p.wrap[0], append(p.wrap[1:len(p.wrap):len(p.wrap)], binary(t), "-f", f)...)
		p.stderr = wrapErr
	default:
		p.cmd, p.stderr = bintest.Start(t, binary(t), "-f", f)
	}
	p.exited = bintest.Exited(t, p.cmd)
	// A start on a loaded machine (the race detector, other packages'
	// tests) can take long; one that fails ends the process, seen below.
	const within = 60 * time.Second
	deadline := time.Now().Add(within)
	for {
		if wrapErr != nil && wrapErr.String() != "" && p.log() == "" {
			// The wrapper failed before kproxy_bin ran (its own stderr
			// is empty: it logs to its file).
			time.Sleep(100 * time.Millisecond) // what it writes after the first line
			t.Fatalf("%q could not run kproxy_bin (the test needs it, e.g. unprivileged user and mount namespaces): %s", p.wrap, wrapErr)
		}
		select {
		case <-p.exited:
			t.Fatalf("kproxy_bin ended before its admin port answered: %v; stderr: %s; log:\n%s", p.cmd.ProcessState, p.stderr, p.log())
		default:
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", p.admin))
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kproxy_bin's admin port does not answer within %v: %v; stderr: %s; log:\n%s", within, err, p.stderr, p.log())
		}
		if log := p.log(); strings.Contains(log, `msg="start failed"`) {
			t.Fatalf("kproxy_bin did not start; log:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill9 kills the running process without a chance to clean up.
func (p *spoolProc) kill9() {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Fatal(err)
	}
	<-p.exited
	p.prevLogs = append(p.prevLogs, p.logFile)
}

// health is the admin port's /health answer.
func (p *spoolProc) health() (int, string) {
	p.t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", p.admin))
	if err != nil {
		p.t.Fatalf("health: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// log is the current run's log.
func (p *spoolProc) log() string {
	b, _ := os.ReadFile(p.logFile)
	return string(b)
}

// metric is the value of an unlabelled metric on the admin port.
func (p *spoolProc) metric(name string) float64 {
	p.t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.admin))
	if err != nil {
		p.t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				p.t.Fatalf("metric %s: %q", name, v)
			}
			return f
		}
	}
	p.t.Fatalf("no metric %s", name)
	return 0
}

// drained waits until the spool is empty.
func (p *spoolProc) drained() {
	p.t.Helper()
	waitFor(p.t, 60*time.Second, "the spool to drain", func() bool { return p.metric("kproxy_spool_records") == 0 })
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// history is what the clients were answered.
type history struct {
	mu       sync.Mutex
	accepted map[string][]int // 200 or 202, per key
	refused  map[string][]int // 503: not written
	codes    map[int]int
	reasons  map[int]string // one body per status other than 200 and 202
	errs     int            // requests without an answer
}

func (h *history) count(code int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.codes[code]
}

// load is clients writing, one goroutine per key, each its key's records
// numbered from 0, one after the other.
type load struct {
	h    *history
	stop chan struct{}
	wg   sync.WaitGroup
	// hold is read-locked around each request: pause (the write lock)
	// returns once no request is under way.
	hold   sync.RWMutex
	paused atomic.Bool
}

// pause waits until no request is under way and sends none until resume.
func (l *load) pause() {
	l.hold.Lock()
	l.paused.Store(true)
}

// resume lets the clients send again (end resumes too).
func (l *load) resume() {
	if l.paused.CompareAndSwap(true, false) {
		l.hold.Unlock()
	}
}

// startLoad writes keys keys of values padded to size bytes to p until
// the returned load is stopped (at cleanup at the latest).
func startLoad(t *testing.T, p *spoolProc, keys, size int) *load {
	l := &load{h: &history{accepted: map[string][]int{}, refused: map[string][]int{}, codes: map[int]int{}, reasons: map[int]string{}},
		stop: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	for k := range keys {
		key := "k" + strconv.Itoa(k)
		l.wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				v := recordValue(t, key, n, size)
				url := fmt.Sprintf("http://127.0.0.1:%d/commit?acks=-1&topic=%s&key=%s", p.port, spoolTopic, key)
				l.hold.RLock()
				resp, err := client.Post(url, "", bytes.NewReader(v))
				var body []byte
				if err == nil {
					body, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				l.hold.RUnlock()
				l.h.mu.Lock()
				if err != nil {
					l.h.errs++ // kproxy down or killed: the record's fate is unknown
					l.h.mu.Unlock()
					time.Sleep(20 * time.Millisecond)
					continue
				}
				l.h.codes[resp.StatusCode]++
				switch resp.StatusCode {
				case 200, 202:
					l.h.accepted[key] = append(l.h.accepted[key], n)
				case 503:
					l.h.refused[key] = append(l.h.refused[key], n)
					fallthrough
				default:
					if _, ok := l.h.reasons[resp.StatusCode]; !ok {
						l.h.reasons[resp.StatusCode] = strings.TrimSpace(string(body))
					}
				}
				l.h.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	t.Cleanup(l.end)
	return l
}

// end stops the clients and waits for them.
func (l *load) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.resume()
	l.wg.Wait()
}

// await waits until the clients got n more answers of code than now.
func (l *load) await(t *testing.T, code, n int, what string) {
	t.Helper()
	base := l.h.count(code)
	waitFor(t, 30*time.Second, fmt.Sprintf("%d answers %d (%s)", n, code, what), func() bool { return l.h.count(code) >= base+n })
}

// recordValue is key's n-th value: msgpack "key#n|padding", size bytes at least.
func recordValue(t *testing.T, key string, n, size int) []byte {
	s := key + "#" + strconv.Itoa(n) + "|"
	if len(s) < size {
		s += strings.Repeat("x", size-len(s))
	}
	b, err := msgpack.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkKafka reads the topic back and checks the history against it: every
// accepted record is there, per key the first copies are in order, no
// record refused with 503 is there. It returns the duplicates (second
// copies) and the records read.
func checkKafka(t *testing.T, c *kfake.Cluster, h *history) (dups, total int) {
	t.Helper()
	recs := kafkatest.ReadAll(t, c, kafkaconf.Default(), spoolTopic)
	seen := map[string]map[int]bool{}
	last := map[string]int{}
	for _, r := range recs {
		var s string
		if err := msgpack.Unmarshal(r.Value, &s); err != nil {
			t.Fatalf("record %d/%d: %v", r.Partition, r.Offset, err)
		}
		id, _, _ := strings.Cut(s, "|")
		key, num, _ := strings.Cut(id, "#")
		n, err := strconv.Atoi(num)
		if err != nil || string(r.Key) != key {
			t.Fatalf("record %d/%d: key %q, value %.40q", r.Partition, r.Offset, r.Key, s)
		}
		if seen[key] == nil {
			seen[key], last[key] = map[int]bool{}, -1
		}
		if seen[key][n] {
			dups++
			continue
		}
		seen[key][n] = true
		if n < last[key] {
			t.Errorf("key %s: record %d first written after record %d (%d/%d)", key, n, last[key], r.Partition, r.Offset)
		}
		last[key] = max(last[key], n)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	missing := 0
	for key, ns := range h.accepted {
		for _, n := range ns {
			if !seen[key][n] {
				if missing++; missing <= 5 {
					t.Errorf("key %s: record %d was answered 200 or 202 and is not in kafka", key, n)
				}
			}
		}
	}
	if missing > 5 {
		t.Errorf("%d accepted records in all are not in kafka", missing)
	}
	for key, ns := range h.refused {
		for _, n := range ns {
			if seen[key][n] {
				t.Errorf("key %s: record %d was answered 503 (not written) and is in kafka", key, n)
			}
		}
	}
	return dups, len(recs)
}

func (h *history) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("answers %v, %d without an answer", h.codes, h.errs)
}

// entryStarts walks a segment's entries (uint32 length, uint32 CRC32C of
// the payload, payload) and returns the offset of each and where they end
// (zeros after the entries were written ahead by the spool: a length of 0
// is never an entry); err says where the first bad entry starts.
func entryStarts(path string) (starts []int64, size int64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	table := crc32.MakeTable(crc32.Castagnoli)
	var off int64
	for off < int64(len(b)) {
		if int64(len(b))-off < 8 {
			return starts, int64(len(b)), fmt.Errorf("%s: torn header at offset %d", path, off)
		}
		n := int64(bin.LittleEndian.Uint32(b[off:]))
		if n == 0 && !slices.ContainsFunc(b[off:], func(c byte) bool { return c != 0 }) {
			return starts, off, nil
		}
		sum := bin.LittleEndian.Uint32(b[off+4:])
		if off+8+n > int64(len(b)) || crc32.Checksum(b[off+8:off+8+n], table) != sum {
			return starts, int64(len(b)), fmt.Errorf("%s: bad entry at offset %d", path, off)
		}
		starts = append(starts, off)
		off += 8 + n
	}
	return starts, off, nil
}

// lastSegment is the spool's last segment file.
func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments in %s: %v %v", dir, segs, err)
	}
	sort.Strings(segs)
	return segs[len(segs)-1]
}

const cutLine = "spool: cut torn or corrupt tail"

// TestSpoolKill9WhileKafkaAway: Kafka stops under load, clients get 202s,
// kproxy_bin is killed with SIGKILL and started again on the same spool
// while Kafka is still stopped: it starts (logging that no broker
// answers), says "degraded" on /health, and keeps answering 202 for the
// topic it has not written to since its start; then Kafka starts again:
// every record answered 200 or 202 is in Kafka, per key in order; the
// duplicates are at most the records whose request got no answer when
// Kafka went away (kproxy_spool_duplicates_possible_total of both runs);
// spooled and drained totals add up with the records replayed.
func TestSpoolKill9WhileKafkaAway(t *testing.T) {
	k := kafkatest.StartRestartable(t, []kafkatest.Topic{{Name: spoolTopic, Partitions: 3}})
	p := newSpoolProc(t, k.Addr(), "")
	p.start(0)
	l := startLoad(t, p, 8, 100)
	l.await(t, 200, 200, "kafka up")

	k.Stop()
	l.await(t, 202, 200, "kafka stopped")
	possible := p.metric("kproxy_spool_duplicates_possible_total")
	spooled := p.metric("kproxy_spool_records")
	p.kill9()
	p.start(0)
	for _, want := range []string{"spool holds records from before the restart", "no kafka broker answers; starting anyway"} {
		if !strings.Contains(p.log(), want) {
			t.Errorf("the restarted kproxy does not log %q; log:\n%s", want, p.log())
		}
	}
	replayed := p.metric("kproxy_spool_replayed_records")
	if got := p.metric("kproxy_spool_records"); got < spooled || replayed < spooled {
		t.Errorf("after the restart the spool holds %v records (%v replayed), before the kill %v", got, replayed, spooled)
	}
	if code, text := p.health(); code != 200 || !strings.HasPrefix(text, "degraded: spooling") {
		t.Errorf("/health restarted without kafka: %d %q", code, text)
	}
	l.await(t, 202, 200, "restarted, kafka still stopped")

	k.Restart()
	l.await(t, 200, 200, "kafka back, the spool drained")
	l.end()
	p.drained()
	possible += p.metric("kproxy_spool_duplicates_possible_total")
	// The drain acknowledges records in the spool (which empties it),
	// then counts them drained (ackDrained): the count may come after.
	sp, dr := p.metric("kproxy_spooled_total"), p.metric("kproxy_spool_drained_total")
	for deadline := time.Now().Add(30 * time.Second); sp+replayed != dr && time.Now().Before(deadline); dr = p.metric("kproxy_spool_drained_total") {
		time.Sleep(20 * time.Millisecond)
	}
	if sp+replayed != dr {
		t.Errorf("second run: spooled %v + replayed %v, drained %v", sp, replayed, dr)
	}
	dups, total := checkKafka(t, k.Cluster(), l.h)
	t.Logf("%s; %d records in kafka, %d duplicates (at most %v possible)", l.h, total, dups, possible)
	if float64(dups) > possible {
		t.Errorf("%d duplicates, more than the %v records spooled without an answer", dups, possible)
	}
}

// TestSpoolDrainsOnceUnderLiveTraffic: no leader for a while (Kafka
// refuses every produce outright), clients get 202s; Kafka comes back while
// the clients go on writing, their new records queued behind the spool:
// every accepted record is in Kafka, per key in order, and none of the
// outage or the drain twice. Only a later flip may add duplicates: once
// the spool is empty the topic goes to Kafka directly again, and on a
// loaded machine a produce slower than spool_after_ms flips it again,
// taking the records Kafka may have written all the same; those are
// counted in kproxy_spool_duplicates_possible_total.
func TestSpoolDrainsOnceUnderLiveTraffic(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: spoolTopic, Partitions: 3}})
	p := newSpoolProc(t, c.ListenAddrs()[0], "")
	p.start(0)
	l := startLoad(t, p, 8, 100)
	l.await(t, 200, 200, "kafka up")

	end := kafkatest.NewFaults(t, c).Outage(int16(kerr.NotLeaderForPartition.Code))
	l.await(t, 202, 1000, "no leader")
	atOutage := p.metric("kproxy_spool_duplicates_possible_total") // the outage's flip
	end()
	during := l.h.count(202)
	l.await(t, 200, 300, "kafka back, the spool drained")
	during = l.h.count(202) - during
	l.end()
	p.drained()
	later := p.metric("kproxy_spool_duplicates_possible_total") - atOutage
	dups, total := checkKafka(t, c, l.h)
	t.Logf("%s; %d records in kafka, %d answered 202 while the spool drained, %v taken by flips after the outage",
		l.h, total, during, later)
	if float64(dups) > later {
		t.Errorf("%d duplicates; Kafka refused outright, so none may be but the %v records flips took after the outage", dups, later)
	}
	if during == 0 {
		t.Errorf("no record arrived while the spool drained: the test did not test that")
	}
	if l.h.count(200)+l.h.count(202)+dups != total {
		t.Errorf("%s, %d records in kafka, %d of them duplicates", l.h, total, dups)
	}
}

// TestSpoolFullAnswers503: a spool of 1 MiB fills while Kafka has no
// leader: kproxy answers 503 with the reason, and once Kafka is back every
// 202 is in Kafka and no 503 is.
func TestSpoolFullAnswers503(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: spoolTopic, Partitions: 3}})
	p := newSpoolProc(t, c.ListenAddrs()[0], "spool_max_bytes: 1048576\n")
	p.start(0)
	l := startLoad(t, p, 4, 8000)
	l.await(t, 200, 20, "kafka up")
	end := kafkatest.NewFaults(t, c).Outage(int16(kerr.NotLeaderForPartition.Code))
	l.await(t, 503, 20, "the spool full")
	if why := l.h.reasons[503]; !strings.Contains(why, "spool is full") || !strings.Contains(why, "not written") {
		t.Errorf("503 reason %q", why)
	}
	if n := l.h.count(202); n < 100 || n > 140 {
		t.Errorf("%d records of 8 KB answered 202 by a spool of 1 MiB", n)
	}
	end()
	l.await(t, 200, 50, "kafka back")
	l.end()
	p.drained()
	noDuplicates(t, c, l.h)
}

// noDuplicates checks that every accepted record of h is in Kafka, in
// order per key, and that none is there twice.
func noDuplicates(t *testing.T, c *kfake.Cluster, h *history) {
	t.Helper()
	dups, total := checkKafka(t, c, h)
	t.Logf("%s; %d records in kafka", h, total)
	if dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

// TestSpoolDiskFull runs kproxy_bin under a file-size limit (writes past it
// fail with EFBIG, Go ignores SIGXFSZ) while Kafka has no leader: the spool
// answers 503 once the segment reaches the limit, /health says 503 too, and
// the spool leaves no partial entry (a restart without the limit cuts nothing); every 202 is in Kafka
// once it is back.
func TestSpoolDiskFull(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: spoolTopic, Partitions: 3}})
	p := newSpoolProc(t, c.ListenAddrs()[0], "")
	end := kafkatest.NewFaults(t, c).Outage(int16(kerr.NotLeaderForPartition.Code))
	p.start(512)
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var limit int64
	for _, line := range strings.Split(string(limits), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max file size"); ok {
			limit, _ = strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
		}
	}
	if limit < 128<<10 || limit > 1<<20 {
		t.Fatalf("kproxy_bin's file size limit: %d bytes, want 256 or 512 KiB:\n%s", limit, limits)
	}
	l := startLoad(t, p, 4, 1000)
	l.await(t, 503, 20, "the file size limit")
	if why := l.h.reasons[503]; !strings.Contains(why, "spool write failed") || !strings.Contains(why, "file too large") {
		t.Errorf("503 reason %q", why)
	}
	// Every spooled record is refused: /health says so, and a load
	// balancer sends them elsewhere (it said 200 "degraded: spooling").
	if code, text := p.health(); code != 503 || !strings.Contains(text, "spool cannot write") || !strings.Contains(text, "file too large") {
		t.Errorf("/health while the spool's disk refuses every write: %d %q, want 503 saying why", code, text)
	}
	// Killed while no request is under way: every failed write was taken
	// back (a kill between a failed write and its truncation would leave a
	// torn tail, which the restart rightly cuts).
	l.pause()
	p.kill9()
	seg := lastSegment(t, p.spoolDir())
	starts, size, err := entryStarts(seg)
	if err != nil {
		t.Errorf("after EFBIG: %v", err)
	}
	t.Logf("segment of %d entries, %d bytes, limit %d bytes", len(starts), size, limit)
	if size > limit || size < limit/2 {
		t.Errorf("segment of %d bytes under a limit of %d", size, limit)
	}
	end()
	p.start(0)
	l.resume()
	l.await(t, 200, 50, "no limit, kafka back")
	l.end()
	p.drained()
	if strings.Contains(p.log(), cutLine) {
		t.Errorf("the restart cut a partial entry:\n%s", p.log())
	}
	noDuplicates(t, c, l.h)
}

// TestSpoolCorruptTail damages the spool's last segment while kproxy_bin is
// down, twice: an entry cut in the middle (a torn write), then garbage
// appended. Each restart starts, logs the cut with the file and the offset
// of the damage, and keeps the entries before it; once Kafka is back every
// 202 is in Kafka but the torn one.
func TestSpoolCorruptTail(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: spoolTopic, Partitions: 3}})
	p := newSpoolProc(t, c.ListenAddrs()[0], "")
	end := kafkatest.NewFaults(t, c).Outage(int16(kerr.NotLeaderForPartition.Code))
	p.start(0)
	l := startLoad(t, p, 4, 100)
	l.await(t, 202, 100, "no leader")
	l.end()
	p.kill9()

	seg := lastSegment(t, p.spoolDir())
	starts, size, err := entryStarts(seg)
	if err != nil || len(starts) < 100 {
		t.Fatalf("segment before the damage: %d entries, %v", len(starts), err)
	}
	lastEntry := starts[len(starts)-1]
	tornKey, tornN := entryID(t, seg, lastEntry)
	if err := os.Truncate(seg, lastEntry+(size-lastEntry)/2); err != nil {
		t.Fatal(err)
	}
	p.start(0)
	want := fmt.Sprintf("file=%s offset=%d", seg, lastEntry)
	waitFor(t, 30*time.Second, "the cut's log line", func() bool { return strings.Contains(p.log(), cutLine) })
	if line := grepLine(p.log(), cutLine); !strings.Contains(line, want) {
		t.Errorf("cut line %q lacks %q", line, want)
	}
	if got := p.metric("kproxy_spool_records"); got != float64(len(starts)-1) {
		t.Errorf("%v records in the spool after the cut, want %d", got, len(starts)-1)
	}
	if got, want := p.metric("kproxy_spool_cut_bytes_total"), float64((size-lastEntry)/2); got != want {
		t.Errorf("kproxy_spool_cut_bytes_total %v after the torn entry's cut, want %v", got, want)
	}
	p.kill9()

	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	garbage := append(bin.LittleEndian.AppendUint32(nil, 40), bytes.Repeat([]byte{0xA5}, 44)...)
	f.Write(garbage)
	f.Close()
	p.start(0)
	waitFor(t, 30*time.Second, "the cut's log line", func() bool { return strings.Contains(p.log(), cutLine) })
	if line := grepLine(p.log(), cutLine); !strings.Contains(line, fmt.Sprintf("file=%s offset=%d", seg, lastEntry)) {
		t.Errorf("cut line %q, want the garbage cut at %d", line, lastEntry)
	}
	if got, want := p.metric("kproxy_spool_cut_bytes_total"), float64(len(garbage)); got != want {
		t.Errorf("kproxy_spool_cut_bytes_total %v after the garbage's cut, want %v", got, want)
	}
	end()
	p.drained()

	// The torn entry was answered 202 and then destroyed: it is the one
	// record the check must not ask for.
	l.h.accepted[tornKey] = slices.DeleteFunc(l.h.accepted[tornKey], func(n int) bool { return n == tornN })
	dups, total := checkKafka(t, c, l.h)
	t.Logf("%s; %d records in kafka, torn %s#%d", l.h, total, tornKey, tornN)
	if dups != 0 || total != l.h.count(202)-1 {
		t.Errorf("%d duplicates, %d records in kafka of %d answered 202: want none and all but the torn one", dups, total, l.h.count(202))
	}
}

// entryID decodes the value of the entry at off in a segment (payload:
// int64 time, uvarint length and topic, uvarint length+1 and key, uvarint
// length and value) and returns its key and number.
func entryID(t *testing.T, seg string, off int64) (string, int) {
	t.Helper()
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	p := b[off+8+8:]
	field := func(minus uint64) []byte {
		n, w := bin.Uvarint(p)
		if w <= 0 || n < minus || uint64(len(p)-w) < n-minus {
			t.Fatalf("entry at %d of %s: bad field", off, seg)
		}
		v := p[w : w+int(n-minus)]
		p = p[w+int(n-minus):]
		return v
	}
	field(0) // topic
	field(1) // key
	var s string
	if err := msgpack.Unmarshal(field(0), &s); err != nil {
		t.Fatalf("entry at %d of %s: %v", off, seg, err)
	}
	id, _, _ := strings.Cut(s, "|")
	key, num, _ := strings.Cut(id, "#")
	n, err := strconv.Atoi(num)
	if err != nil {
		t.Fatalf("entry at %d of %s: value %.40q", off, seg, s)
	}
	return key, n
}

// grepLine is the first line of text containing s.
func grepLine(text, s string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// A spool_dir holding a segment the watermark says is acked, whose file
// cannot be removed (a mount point, in kproxy_bin's own mount namespace:
// unlink fails with EBUSY while the directory is writable): kproxy_bin
// starts, logs the file, drains the records after it and counts the file's
// bytes in kproxy_spool_bytes, as it does when a removal fails while it
// runs. Before, the start failed.
func TestSpoolStartsWithUnremovableAckedSegment(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: spoolTopic, Partitions: 3}})
	p := newSpoolProc(t, c.ListenAddrs()[0], "")
	// Two segments of three entries; the first one's entries acked, its
	// file left behind (as by a crash before its removal).
	value := strings.Repeat("v", 1200) // 3 entries a segment
	s, err := spool.Open(spool.Options{Dir: p.spoolDir(), SegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if _, err := s.Append([]spool.Record{{Topic: spoolTopic, Key: []byte("k"), Value: []byte(fmt.Sprintf("%d%s", i, value))}}); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := filepath.Glob(filepath.Join(p.spoolDir(), "*.seg"))
	if len(segs) != 2 {
		t.Fatalf("%d segments, want 2", len(segs))
	}
	first, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	es, err := s.Read(ctx, 3)
	if err != nil || len(es) != 3 {
		t.Fatalf("read: %d entries, %v", len(es), err)
	}
	for _, e := range es {
		s.Ack(e.Seq)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(segs[0], first, 0o644); err != nil {
		t.Fatal(err)
	}
	p.wrap = []string{"unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
		fmt.Sprintf(`mount --bind '%s' '%s' && exec "$0" "$@"`, segs[0], segs[0])}
	p.start(0)
	waitFor(t, 60*time.Second, "the spool to drain", func() bool { return p.metric("kproxy_spool_drained_total") == 3 })
	if line := grepLine(p.log(), segs[0]); !strings.Contains(line, "remove") {
		t.Errorf("no log line names the acked segment kproxy could not remove (%s):\n%s", segs[0], p.log())
	}
	// The drained segment is removed by the spool's loop after the drain's
	// last acknowledgement: a moment later on a loaded machine.
	deadline := time.Now().Add(30 * time.Second)
	for got := p.metric("kproxy_spool_bytes"); got != float64(len(first)); got = p.metric("kproxy_spool_bytes") {
		if time.Now().After(deadline) {
			t.Fatalf("kproxy_spool_bytes %v 30 s after the drain, want the unremoved segment's %d bytes", got, len(first))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
