package main

// The chaos test's records: what happened (history: faults, processes,
// owners, offsets), what reached the far end (the sink's pushes with their
// answers and epochs) and what was written to Kafka (the producer's
// acknowledged records). chaos_check_test.go checks them.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// history is the test's record of what happened, in time since the start.
type history struct {
	start time.Time

	mu         sync.Mutex
	events     []event
	faults     []*fault
	violations []violation
	// backwards: committed offsets seen moving backwards; a violation
	// unless ktransfer logged, for that module and partition, that Kafka
	// lost records it had read (see excuseBackwards).
	backwards []violation
}

type event struct {
	at   time.Duration
	text string
}

// fault is one fault of the schedule, from its start to the end of its
// settling time (a SIGSTOP's fault lasts past the SIGCONT: the stopped
// process's late pushes and commits happen then).
type fault struct {
	id     int
	kind   string
	target string
	start  time.Duration
	end    time.Duration // -1 while active

	// Process faults: the victim and the partitions it owned when the
	// fault began, with their epochs (the owner nodes' creation zxids).
	victimPid int
	moved     []owned
	signalled time.Duration // when the signal was sent (kill -9, SIGTERM, SIGSTOP)
	resumed   time.Duration // SIGSTOP: when SIGCONT was sent
	// affected is how many processes' partitions may move (the bound on
	// the records pushed again is window_size per process and module).
	affected int
	note     string
}

// owned is a partition of a module held by a process, with its epoch.
type owned struct {
	module    string
	partition int32
	epoch     int64
}

type violation struct {
	at        time.Duration
	what      string
	module    string // "" when not about one module
	partition int32  // -1 when not about one partition
	key       string // "" when not about one key
}

func newHistory() *history { return &history{start: time.Now()} }

func (h *history) since() time.Duration { return time.Since(h.start) }

func (h *history) logf(format string, args ...any) {
	e := event{at: h.since(), text: fmt.Sprintf(format, args...)}
	h.mu.Lock()
	h.events = append(h.events, e)
	h.mu.Unlock()
}

func (h *history) violate(v violation) {
	if v.at == 0 {
		v.at = h.since()
	}
	h.mu.Lock()
	h.violations = append(h.violations, v)
	h.mu.Unlock()
}

func (h *history) begin(kind, target string) *fault {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := &fault{id: len(h.faults) + 1, kind: kind, target: target, start: h.since(), end: -1, affected: 1}
	h.faults = append(h.faults, f)
	h.events = append(h.events, event{at: f.start, text: fmt.Sprintf("fault #%d %s %s begins", f.id, kind, target)})
	return f
}

func (h *history) finish(f *fault, format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f.end = h.since()
	if format != "" {
		f.note = fmt.Sprintf(format, args...)
	}
	h.events = append(h.events, event{at: f.end, text: fmt.Sprintf("fault #%d %s %s ends %s", f.id, f.kind, f.target, f.note)})
}

// activeAt is the faults active at time at.
func (h *history) activeAt(at time.Duration) []*fault {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*fault
	for _, f := range h.faults {
		if f.start <= at && (f.end < 0 || at <= f.end) {
			out = append(out, f)
		}
	}
	return out
}

// kindsAt names the faults active at time at ("none" when there is none).
func (h *history) kindsAt(at time.Duration) string {
	var kinds []string
	for _, f := range h.activeAt(at) {
		if !slices.Contains(kinds, f.kind) {
			kinds = append(kinds, f.kind)
		}
	}
	if len(kinds) == 0 {
		return "none"
	}
	slices.Sort(kinds)
	return strings.Join(kinds, "+")
}

// excerpt is the events around time at, at most n of them.
func (h *history) excerpt(at time.Duration, n int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var near []event
	for _, e := range h.events {
		if e.at >= at-5*time.Second && e.at <= at+time.Second {
			near = append(near, e)
		}
	}
	if len(near) > n { // keep those closest to at
		slices.SortStableFunc(near, func(a, b event) int { return int(abs(a.at-at) - abs(b.at-at)) })
		near = near[:n]
		slices.SortStableFunc(near, func(a, b event) int { return int(a.at - b.at) })
	}
	out := make([]string, len(near))
	for i, e := range near {
		out[i] = fmt.Sprintf("%8s %s", secs(e.at), e.text)
	}
	return out
}

// write writes the whole history and the pushes to file.
func (h *history) write(file string, pushes []push) error {
	var b strings.Builder
	h.mu.Lock()
	for _, e := range h.events {
		fmt.Fprintf(&b, "%8s %s\n", secs(e.at), e.text)
	}
	h.mu.Unlock()
	b.WriteString("pushes, in the order of their answers:\n")
	for _, p := range pushes {
		b.WriteString(p.String() + "\n")
	}
	return os.WriteFile(file, []byte(b.String()), 0o644)
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// secs prints a duration as seconds with two decimals.
func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// mpKey names a partition of a module.
type mpKey struct {
	module    string
	partition int32
}

// poKey names a record of the topic.
type poKey struct {
	partition int32
	offset    int64
}

// push is one request that reached the sink, and its answer.
type push struct {
	seq       int64 // order of the answers
	arrived   time.Duration
	answered  time.Duration
	module    string
	partition int32
	offset    int64
	key       string // from the URI ({#KEY})
	body      string
	epoch     int64
	hasEpoch  bool
	status    int
	bad       string // what was malformed
}

func (p push) String() string {
	epoch := strconv.FormatInt(p.epoch, 10)
	if !p.hasEpoch {
		epoch = "none"
	}
	return fmt.Sprintf("%8s %s p%d@%d key %s epoch %s -> %d (arrived %s)", secs(p.answered), p.module, p.partition, p.offset,
		p.key, epoch, p.status, secs(p.arrived))
}

// sink is the backend of both modules. It refuses with 409 a push whose
// epoch is lower than the highest it has seen for the module's partition
// (a fencing backend), answers 500 during a burst and holds requests
// during a hang; any other push is delivered (200).
type sink struct {
	h       *history
	srv     *httptest.Server
	release chan struct{} // closed at the end: held requests return

	mu        sync.Mutex
	seq       int64
	maxEpoch  map[mpKey]int64
	pushes    []push
	delivered map[string]map[poKey]int // module → record → 2xx answers
	failUntil time.Time
	hangUntil time.Time
	hangFor   time.Duration
	held      atomic.Int32
}

func startSink(t *testing.T, h *history, modules []string) *sink {
	t.Helper()
	s := &sink{h: h, release: make(chan struct{}), maxEpoch: map[mpKey]int64{}, delivered: map[string]map[poKey]int{}}
	for _, m := range modules {
		s.delivered[m] = map[poKey]int{}
	}
	s.srv = httptest.NewServer(s)
	t.Cleanup(func() {
		s.stopHolding()
		s.srv.Close()
	})
	return s
}

func (s *sink) addr() string { return strings.TrimPrefix(s.srv.URL, "http://") }

// stopHolding ends any hang and lets held requests return; idempotent.
func (s *sink) stopHolding() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hangUntil, s.failUntil = time.Time{}, time.Time{}
	select {
	case <-s.release:
	default:
		close(s.release)
	}
}

// fail500 answers 500 to every push for d.
func (s *sink) fail500(d time.Duration) {
	s.mu.Lock()
	s.failUntil = time.Now().Add(d)
	s.mu.Unlock()
}

// hang holds every push arriving within d for hold before answering it.
func (s *sink) hang(d, hold time.Duration) {
	s.mu.Lock()
	s.hangUntil, s.hangFor = time.Now().Add(d), hold
	s.mu.Unlock()
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	p := push{arrived: s.h.since(), module: strings.TrimPrefix(r.URL.Path, "/"), key: r.URL.Query().Get("key"), body: string(body)}
	var bad []string
	if err != nil {
		bad = append(bad, "body: "+err.Error())
	}
	if _, ok := s.delivered[p.module]; !ok { // the map's keys never change
		bad = append(bad, "unknown module path "+r.URL.Path)
	}
	if v := r.Header.Get("X-Kafka-Topic"); v != chaosTopic {
		bad = append(bad, fmt.Sprintf("X-Kafka-Topic %q", v))
	}
	if v, err := strconv.ParseInt(r.Header.Get("X-Kafka-Partition"), 10, 32); err != nil {
		bad = append(bad, fmt.Sprintf("X-Kafka-Partition %q", r.Header.Get("X-Kafka-Partition")))
	} else {
		p.partition = int32(v)
	}
	if v, err := strconv.ParseInt(r.Header.Get("X-Kafka-Offset"), 10, 64); err != nil {
		bad = append(bad, fmt.Sprintf("X-Kafka-Offset %q", r.Header.Get("X-Kafka-Offset")))
	} else {
		p.offset = v
	}
	// A push without an epoch counts as epoch 0 here; the checker fails
	// the test for it.
	if v := r.Header.Get("X-Ktransfer-Epoch"); v != "" {
		if e, err := strconv.ParseInt(v, 10, 64); err != nil {
			bad = append(bad, fmt.Sprintf("X-Ktransfer-Epoch %q", v))
		} else {
			p.epoch, p.hasEpoch = e, true
		}
	}
	p.bad = strings.Join(bad, "; ")

	s.mu.Lock()
	var hold time.Duration
	if time.Now().Before(s.hangUntil) {
		hold = s.hangFor
	}
	s.mu.Unlock()
	if hold > 0 {
		s.held.Add(1)
		select {
		case <-time.After(hold):
		case <-s.release:
		}
		s.held.Add(-1)
	}

	s.mu.Lock()
	s.seq++
	p.seq, p.answered = s.seq, s.h.since()
	k := mpKey{p.module, p.partition}
	switch {
	case p.bad != "":
		p.status = http.StatusBadRequest
	case p.epoch < s.maxEpoch[k]:
		p.status = http.StatusConflict
	default:
		s.maxEpoch[k] = p.epoch
		if time.Now().Before(s.failUntil) {
			p.status = http.StatusInternalServerError
		} else {
			p.status = http.StatusOK
			s.delivered[p.module][poKey{p.partition, p.offset}]++
		}
	}
	s.pushes = append(s.pushes, p)
	s.mu.Unlock()
	if p.status == http.StatusBadRequest {
		http.Error(w, p.bad, p.status)
		return
	}
	w.WriteHeader(p.status)
}

// missing counts, per module, the records of recs not delivered yet.
func (s *sink) missing(recs map[poKey]rec) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for m, got := range s.delivered {
		for k := range recs {
			if got[k] == 0 {
				out[m]++
			}
		}
	}
	return out
}

// snapshot copies the pushes.
func (s *sink) snapshot() []push {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pushes)
}

// producer writes keyed records to the topic at a steady rate, acks=all,
// and keeps every record Kafka acknowledged. A value is "<key>|<seq>".
type producer struct {
	cl   *kgo.Client
	h    *history
	stop context.CancelFunc
	done chan struct{}

	mu      sync.Mutex
	recs    map[poKey]rec
	failed  int
	lastErr error
	keySeq  []int
}

// rec is a record Kafka acknowledged.
type rec struct {
	key string
	seq int
	at  time.Duration
}

func chaosKey(i int) string { return fmt.Sprintf("k%02d", i) }

func startProducer(cl *kgo.Client, h *history, keys, perSecond int) *producer {
	ctx, cancel := context.WithCancel(context.Background())
	p := &producer{cl: cl, h: h, stop: cancel, done: make(chan struct{}), recs: map[poKey]rec{}, keySeq: make([]int, keys)}
	const tick = 25 * time.Millisecond
	perTick := max(1, perSecond*int(tick)/int(time.Second))
	go func() {
		defer close(p.done)
		t := time.NewTicker(tick)
		defer t.Stop()
		next := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for range perTick {
				k := next % keys
				next++
				p.mu.Lock()
				p.keySeq[k]++
				seq := p.keySeq[k]
				p.mu.Unlock()
				key := chaosKey(k)
				r := &kgo.Record{Topic: chaosTopic, Key: []byte(key), Value: fmt.Appendf(nil, "%s|%d", key, seq)}
				// Not ctx: stopping the producer does not abort what
				// was handed to the client; Flush waits for it.
				cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
					p.mu.Lock()
					defer p.mu.Unlock()
					if err != nil {
						p.failed++
						p.lastErr = err
						return
					}
					p.recs[poKey{r.Partition, r.Offset}] = rec{key: key, seq: seq, at: h.since()}
				})
			}
		}
	}()
	return p
}

// finish stops producing and waits for every record handed to the client.
func (p *producer) finish(t *testing.T) {
	t.Helper()
	p.stop()
	<-p.done
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.cl.Flush(ctx); err != nil {
		t.Errorf("flush the producer: %v", err)
	}
}

func (p *producer) records() map[poKey]rec {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[poKey]rec, len(p.recs))
	for k, v := range p.recs {
		out[k] = v
	}
	return out
}

// zkWatch polls the module's layout in ZooKeeper every 50 ms, through a
// session of its own (no proxy): the owner nodes (who holds each
// partition, and its epoch: the node's creation zxid), the committed
// offsets (which must never move backwards) and the ids/ registrations
// (process id and admin address of each instance).
type zkWatch struct {
	h       *history
	conn    *zk.Conn
	modules []string
	stop    context.CancelFunc
	done    chan struct{}

	mu         sync.Mutex
	negotiated time.Duration // the session timeout the server granted
	owners     map[mpKey]owner
	ownerLog   []ownerChange
	instances  map[string]instance  // ids/ node name → registration
	offsets    map[mpKey]offsetSeen // the latest seen
	polls      int
}

type owner struct {
	id    string
	czxid int64
}

type ownerChange struct {
	at        time.Duration
	module    string
	partition int32
	id        string // "" when the node went away
	pid       int
	epoch     int64
}

// instance is an ids/ registration.
type instance struct {
	Host    string `json:"host"`
	Pid     int    `json:"pid"`
	Version string `json:"version"`
	Started int64  `json:"started"`
	Admin   string `json:"admin"`
}

type offsetSeen struct {
	at    time.Duration
	value int64
}

var timeoutLine = regexp.MustCompile(`timeout=(\d+)`)

// zkLogger reads the negotiated session timeout from the client's log.
type zkLogger struct{ w *zkWatch }

func (l zkLogger) Printf(format string, args ...any) {
	if m := timeoutLine.FindStringSubmatch(fmt.Sprintf(format, args...)); m != nil {
		ms, _ := strconv.Atoi(m[1])
		l.w.mu.Lock()
		l.w.negotiated = time.Duration(ms) * time.Millisecond
		l.w.mu.Unlock()
	}
}

// startZKWatch asks for the session timeout the processes ask for, so the
// one it is granted is theirs too.
func startZKWatch(t *testing.T, h *history, addr string, modules []string, sessionMs int) *zkWatch {
	t.Helper()
	w := &zkWatch{h: h, modules: modules, done: make(chan struct{}), owners: map[mpKey]owner{},
		instances: map[string]instance{}, offsets: map[mpKey]offsetSeen{}}
	conn, events, err := zk.Connect([]string{addr}, time.Duration(sessionMs)*time.Millisecond, zk.WithLogger(zkLogger{w}))
	if err != nil {
		t.Fatalf("connect to zookeeper %s: %v", addr, err)
	}
	w.conn = conn
	go func() {
		for range events {
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	go func() {
		defer close(w.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			w.poll()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(w.close)
	return w
}

// close stops polling and closes the session; idempotent.
func (w *zkWatch) close() {
	w.stop()
	<-w.done
	w.conn.Close()
}

func (w *zkWatch) poll() {
	if w.conn.State() != zk.StateHasSession {
		return
	}
	for _, m := range w.modules {
		w.pollIDs(m)
		w.pollOwners(m)
		w.pollOffsets(m)
	}
	w.mu.Lock()
	w.polls++
	w.mu.Unlock()
}

func (w *zkWatch) pollIDs(module string) {
	dir := zklayout.ConsumerIDs(chaosChroot, module)
	names, _, err := w.conn.Children(dir)
	if err != nil {
		return
	}
	for _, n := range names {
		w.mu.Lock()
		_, known := w.instances[n]
		w.mu.Unlock()
		if known {
			continue
		}
		data, _, err := w.conn.Get(path.Join(dir, n))
		if err != nil {
			continue
		}
		var in instance
		if err := json.Unmarshal(data, &in); err != nil {
			w.h.violate(violation{what: fmt.Sprintf("ids/%s: not the documented JSON: %q: %v", n, data, err), partition: -1})
			in.Pid = -1
		}
		w.mu.Lock()
		w.instances[n] = in
		w.mu.Unlock()
	}
}

func (w *zkWatch) pollOwners(module string) {
	dir := zklayout.Owners(chaosChroot, module, chaosTopic)
	names, _, err := w.conn.Children(dir)
	if err != nil {
		return
	}
	now := map[int32]owner{}
	for _, n := range names {
		p, err := strconv.ParseInt(n, 10, 32)
		if err != nil {
			continue
		}
		data, st, err := w.conn.Get(path.Join(dir, n))
		if err != nil {
			continue // released meanwhile
		}
		now[int32(p)] = owner{id: string(data), czxid: st.Czxid}
	}
	at := w.h.since()
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, o := range w.owners {
		if k.module != module {
			continue
		}
		if _, ok := now[k.partition]; !ok {
			delete(w.owners, k)
			w.ownerLog = append(w.ownerLog, ownerChange{at: at, module: module, partition: k.partition})
			w.h.logf("owner of %s p%d: none (was pid %d)", module, k.partition, w.pidLocked(o.id))
		}
	}
	for p, o := range now {
		k := mpKey{module, p}
		if w.owners[k] == o {
			continue
		}
		w.owners[k] = o
		pid := w.pidLocked(o.id)
		w.ownerLog = append(w.ownerLog, ownerChange{at: at, module: module, partition: p, id: o.id, pid: pid, epoch: o.czxid})
		w.h.logf("owner of %s p%d: pid %d, epoch %d", module, p, pid, o.czxid)
	}
}

func (w *zkWatch) pollOffsets(module string) {
	dir := zklayout.Offsets(chaosChroot, module, chaosTopic)
	names, _, err := w.conn.Children(dir)
	if err != nil {
		return
	}
	for _, n := range names {
		p, err := strconv.ParseInt(n, 10, 32)
		if err != nil {
			continue
		}
		data, _, err := w.conn.Get(path.Join(dir, n))
		if err != nil {
			continue
		}
		v, err := zklayout.ParseOffset(data)
		k := mpKey{module, int32(p)}
		if err != nil {
			w.h.violate(violation{what: fmt.Sprintf("offset node %s/%s: %v", dir, n, err), module: module, partition: int32(p)})
			continue
		}
		at := w.h.since()
		w.mu.Lock()
		last, seen := w.offsets[k]
		if !seen || v != last.value {
			w.offsets[k] = offsetSeen{at, v}
		}
		w.mu.Unlock()
		if seen && v < last.value {
			w.h.logf("committed offset of %s p%d: %d -> %d (backwards)", module, p, last.value, v)
			w.h.mu.Lock()
			w.h.backwards = append(w.h.backwards, violation{at: at, module: module, partition: int32(p), what: fmt.Sprintf(
				"committed offset %s/%s moved backwards: %d (seen at %s) -> %d", dir, n, last.value, secs(last.at), v)})
			w.h.mu.Unlock()
		}
	}
}

// pidLocked is the process id of instance id: from its ids/ registration,
// else from the id itself (host-pid-millis-random).
func (w *zkWatch) pidLocked(id string) int {
	if in, ok := w.instances[id]; ok && in.Pid > 0 {
		return in.Pid
	}
	parts := strings.Split(id, "-")
	if len(parts) >= 4 {
		if pid, err := strconv.Atoi(parts[len(parts)-3]); err == nil {
			return pid
		}
	}
	return -1
}

// registration is the ids/ registration of process pid, if one was seen.
func (w *zkWatch) registration(pid int) (instance, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, in := range w.instances {
		if in.Pid == pid {
			return in, true
		}
	}
	return instance{}, false
}

// ownedBy is what process pid holds now.
func (w *zkWatch) ownedBy(pid int) []owned {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []owned
	for k, o := range w.owners {
		if w.pidLocked(o.id) == pid {
			out = append(out, owned{module: k.module, partition: k.partition, epoch: o.czxid})
		}
	}
	slices.SortFunc(out, func(a, b owned) int {
		if c := strings.Compare(a.module, b.module); c != 0 {
			return c
		}
		return int(a.partition - b.partition)
	})
	return out
}

// ownersNow is every module partition's owner pid (absent: none).
func (w *zkWatch) ownersNow() map[mpKey]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[mpKey]int{}
	for k, o := range w.owners {
		out[k] = w.pidLocked(o.id)
	}
	return out
}

// pollsAfter waits until two polls started after now have finished, so
// what it reports is at least as new as now (bounded: 5 s).
func (w *zkWatch) pollsAfter() {
	w.mu.Lock()
	want := w.polls + 2
	w.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		n := w.polls
		w.mu.Unlock()
		if n >= want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.h.logf("zookeeper watcher: no two polls finished within 5 s (state %v): what it saw may be older", w.conn.State())
}

// sessionTimeout is the negotiated session timeout, or the one asked for
// when the client did not log it (negotiated is then false).
func (w *zkWatch) sessionTimeout(asked time.Duration) (d time.Duration, negotiated bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.negotiated == 0 {
		return asked, false
	}
	return w.negotiated, true
}

// truncationLogged matches ktransfer's error lines for a partition whose
// log Kafka cut below the records read (franz-go's ErrDataLoss, or the
// client reading again below them): ktransfer then stores the lower
// offset on purpose, so that the records written at the reused offsets
// are pushed (README, Delivery).
var truncationLogged = regexp.MustCompile(`level=ERROR msg="kafka (lost records the module had read|client went back below the records read)[^"]*".* module=(\S+) .*partition=(\d+)`)

// excuseBackwards turns each committed offset seen moving backwards into
// a violation, unless ktransfer's log (log, the processes' shared file)
// says Kafka lost records of that module's partition: a leader shuffle
// of the test's brokers can report one.
func (h *history) excuseBackwards(log []byte) {
	lost := map[mpKey]bool{}
	for _, m := range truncationLogged.FindAllSubmatch(log, -1) {
		if p, err := strconv.ParseInt(string(m[3]), 10, 32); err == nil {
			lost[mpKey{string(m[2]), int32(p)}] = true
		}
	}
	h.mu.Lock()
	backwards := h.backwards
	h.mu.Unlock()
	for _, v := range backwards {
		if lost[mpKey{v.module, v.partition}] {
			h.logf("%s: excused, ktransfer logged that Kafka lost records of %s p%d it had read", v.what, v.module, v.partition)
			continue
		}
		h.violate(v)
	}
}

// TestExcuseBackwards: a committed offset moving backwards is a violation
// unless ktransfer logged that Kafka lost records of that very module and
// partition.
func TestExcuseBackwards(t *testing.T) {
	h := &history{start: time.Now()}
	for _, k := range []mpKey{{"m2", 1}, {"m1", 1}, {"m2", 11}, {"m2", 3}} {
		h.backwards = append(h.backwards, violation{module: k.module, partition: k.partition, what: "backwards"})
	}
	log := []byte(`time=2026-12-01T07:00:00.000Z level=ERROR msg="kafka lost records the module had read (a leader's log ends below them); reading again from the new log end" module=m2 topic=chaos partition=1 consumed_to=963 reset_to=962 next=963
time=2026-12-01T07:00:01.000Z level=WARN msg="kafka client went back below the records read (a new leader without their history); reading again from there" module=m2 topic=chaos partition=3 offset=5 next=9
`)
	h.excuseBackwards(log)
	var got []mpKey
	for _, v := range h.violations {
		got = append(got, mpKey{v.module, v.partition})
	}
	want := []mpKey{{"m1", 1}, {"m2", 11}, {"m2", 3}} // another module, another partition, not an error line
	if !slices.Equal(got, want) {
		t.Errorf("violations for %v, want %v", got, want)
	}
}
