package main

// The chaos test's checker: invariants over the whole history, and the
// figures it prints.

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// verdict is what the checker found.
type verdict struct {
	delivered map[string]int // module → records delivered at least once
	pushes    int
	byStatus  map[int]int
	noEpoch   int
	staleBy   map[string]int // kinds of the faults active → 409 answers
	// Records delivered again: under another epoch (moved), under the same
	// (a retry after a lost answer).
	dupMoved, dupRetried int
	faults               []faultFigures
	// Pushes that arrived with an epoch below one already arrived, sent
	// by a process just resumed from SIGSTOP (it was sending them when
	// it was stopped).
	lateAfterStop int
}

// lateSlack is how soon after SIGCONT a push from the stopped process may
// arrive with a lost epoch: it was being sent when the process stopped.
const lateSlack = 300 * time.Millisecond

// oneOwner checks, in the order the pushes arrived at the sink, that no
// push arrives with an epoch below one that already arrived for its
// module's partition: a process that lost a partition never starts a push
// of it afterwards. (The sink's 409s hide such pushes from the delivery
// checks; this is the check that a process stops pushing.) The one
// excuse: a push already being sent when its process was stopped with
// SIGSTOP, arriving right after SIGCONT.
func oneOwner(h *history, pushes []push, zw *zkWatch, v *verdict) {
	byArrival := slices.Clone(pushes)
	slices.SortStableFunc(byArrival, func(a, b push) int { return cmp.Compare(a.arrived, b.arrived) })
	highest := map[mpKey]int64{}
	for _, p := range byArrival {
		if p.bad != "" || !p.hasEpoch {
			continue
		}
		k := mpKey{p.module, p.partition}
		if p.epoch >= highest[k] {
			highest[k] = p.epoch
			continue
		}
		if resumedJustBefore(h, zw, p) {
			v.lateAfterStop++
			continue
		}
		h.violate(violation{at: p.arrived, module: p.module, partition: p.partition, key: p.key, what: fmt.Sprintf(
			"push with epoch %d arrived at %s after epoch %d had arrived: a process pushed a partition it had lost: %v",
			p.epoch, secs(p.arrived), highest[k], p)})
	}
}

// resumedJustBefore reports whether p's epoch belongs to a process that
// got SIGCONT at most lateSlack before p arrived.
func resumedJustBefore(h *history, zw *zkWatch, p push) bool {
	pid := 0
	for _, o := range zw.ownerLog {
		if o.module == p.module && o.partition == p.partition && o.epoch == p.epoch && o.pid != 0 {
			pid = o.pid
		}
	}
	for _, f := range h.faults {
		if f.kind == "sigstop" && pid != 0 && f.victimPid == pid && f.resumed > 0 &&
			p.arrived >= f.resumed && p.arrived-f.resumed <= lateSlack {
			return true
		}
	}
	return false
}

// faultFigures are one fault's measurements.
type faultFigures struct {
	f     *fault
	moves []time.Duration // per moved partition: signal → first push by its next owner; -1 if none seen
	dups  map[string]int  // module → records delivered again while it was active
	stale int             // 409 answers while it was active
}

// check runs the checker over the history and adds what it finds to h's
// violations.
func check(h *history, pushes []push, recs map[poKey]rec, zw *zkWatch, modules []string) verdict {
	v := verdict{delivered: map[string]int{}, byStatus: map[int]int{}, staleBy: map[string]int{}, pushes: len(pushes)}
	first := map[string]map[poKey]push{} // module → record → first delivery
	for _, m := range modules {
		first[m] = map[poKey]push{}
	}
	deliveries := map[mpKey]map[int64]int{}
	maxEpoch := map[mpKey]int64{}
	var malformed []push
	var noEpoch []push
	var wrongBody []push
	epochs := false
	for _, p := range pushes { // in the order of the answers
		v.byStatus[p.status]++
		if p.bad != "" {
			malformed = append(malformed, p)
			continue
		}
		if p.hasEpoch {
			epochs = true
		} else {
			noEpoch = append(noEpoch, p)
		}
		k := mpKey{p.module, p.partition}
		if p.status == http.StatusConflict {
			v.staleBy[h.kindsAt(p.answered)]++
			continue
		}
		// (4) A 2xx (or 500) to an epoch below one seen before: the sink
		// refuses those, so this checks the sink.
		if p.epoch < maxEpoch[k] {
			h.violate(violation{at: p.answered, module: p.module, partition: p.partition, key: p.key, what: fmt.Sprintf(
				"push answered %d with epoch %d after epoch %d was seen: %v", p.status, p.epoch, maxEpoch[k], p)})
		}
		maxEpoch[k] = max(maxEpoch[k], p.epoch)
		if p.status/100 != 2 {
			continue
		}
		po := poKey{p.partition, p.offset}
		if r, ok := recs[po]; ok && (p.key != r.key || p.body != fmt.Sprintf("%s|%d", r.key, r.seq)) {
			wrongBody = append(wrongBody, p)
		}
		if _, seen := first[p.module][po]; !seen {
			first[p.module][po] = p
		}
		if deliveries[k] == nil {
			deliveries[k] = map[int64]int{}
		}
		deliveries[k][p.offset]++
	}
	end := h.since()
	for _, group := range []struct {
		pushes []push
		what   string
	}{
		{malformed, "malformed pushes (answered 400)"},
		{wrongBody, "pushes whose key or body is not the record's at that partition and offset"},
	} {
		if len(group.pushes) > 0 {
			p := group.pushes[0]
			h.violate(violation{at: p.answered, module: p.module, partition: p.partition, key: p.key, what: fmt.Sprintf(
				"%d %s; first: %v %s", len(group.pushes), group.what, p, p.bad)})
		}
	}
	oneOwner(h, pushes, zw, &v)
	v.noEpoch = len(noEpoch)
	if len(noEpoch) > 0 {
		p := noEpoch[0]
		h.violate(violation{at: p.answered, module: p.module, partition: p.partition, what: fmt.Sprintf(
			"%d of %d pushes carry no X-Ktransfer-Epoch header (counted as epoch 0); first: %v", len(noEpoch), len(pushes), p)})
	}

	// (1) Every record Kafka acknowledged is delivered to each module.
	for _, m := range modules {
		var missing []poKey
		for po := range recs {
			if _, ok := first[m][po]; ok {
				v.delivered[m]++
			} else {
				missing = append(missing, po)
			}
		}
		if len(missing) > 0 {
			slices.SortFunc(missing, func(a, b poKey) int {
				if a.partition != b.partition {
					return int(a.partition - b.partition)
				}
				return int(a.offset - b.offset)
			})
			var ex []string
			for _, po := range missing[:min(8, len(missing))] {
				ex = append(ex, fmt.Sprintf("p%d@%d (%s, produced at %s)", po.partition, po.offset, recs[po].key, secs(recs[po].at)))
			}
			h.violate(violation{at: end, module: m, partition: missing[0].partition, what: fmt.Sprintf(
				"%s: %d of %d records never delivered: %s", m, len(missing), len(recs), strings.Join(ex, ", "))})
		}
	}

	// (2) Per module, partition and key, records are first delivered in
	// offset order. (A key's records in two partitions, after partitions
	// were added, have no order between them.)
	type pk struct {
		partition int32
		key       string
	}
	byKey := map[pk][]int64{}
	for po, r := range recs {
		byKey[pk{po.partition, r.key}] = append(byKey[pk{po.partition, r.key}], po.offset)
	}
	for _, m := range modules {
		for k, offs := range byKey {
			slices.Sort(offs)
			var latest push // the newest first delivery so far, in offset order
			have := false
			for _, o := range offs {
				p, ok := first[m][poKey{k.partition, o}]
				if !ok {
					continue
				}
				if have && p.seq < latest.seq {
					h.violate(violation{at: p.answered, module: m, partition: k.partition, key: k.key, what: fmt.Sprintf(
						"%s key %s p%d: offset %d first delivered at %s, before the older offset %d (first delivered at %s)",
						m, k.key, k.partition, o, secs(p.answered), latest.offset, secs(latest.answered))})
					continue
				}
				latest, have = p, true
			}
		}
	}

	// Figures per fault: takeover/handover times, records delivered again,
	// stale pushes refused.
	h.mu.Lock()
	faults := slices.Clone(h.faults)
	h.mu.Unlock()
	for _, f := range faults {
		ff := faultFigures{f: f, dups: map[string]int{}}
		for _, o := range f.moved {
			ff.moves = append(ff.moves, firstPushByNext(o, f, pushes, zw, epochs))
		}
		v.faults = append(v.faults, ff)
	}
	// A record delivered again by the process that delivered it first (same
	// epoch) is a retry of a push whose answer was lost: it counts for the
	// sink faults active then. One delivered again under another epoch was
	// moved: it counts for the process faults. Without epochs, for all.
	again := map[mpKey]map[int64]int{}
	firstEpoch := map[mpKey]map[int64]int64{}
	for _, p := range pushes {
		if p.bad != "" {
			continue
		}
		for i := range v.faults {
			f := v.faults[i].f
			if p.answered < f.start || (f.end >= 0 && p.answered > f.end) {
				continue
			}
			if p.status == http.StatusConflict {
				v.faults[i].stale++
			}
		}
		if p.status/100 != 2 {
			continue
		}
		k := mpKey{p.module, p.partition}
		if again[k] == nil {
			again[k], firstEpoch[k] = map[int64]int{}, map[int64]int64{}
		}
		again[k][p.offset]++
		if again[k][p.offset] == 1 {
			firstEpoch[k][p.offset] = p.epoch
			continue
		}
		moved := p.epoch != firstEpoch[k][p.offset]
		if moved {
			v.dupMoved++
		} else {
			v.dupRetried++
		}
		for i := range v.faults {
			f := v.faults[i].f
			if p.answered < f.start || (f.end >= 0 && p.answered > f.end) {
				continue
			}
			if !epochs || moved == isProcessFault(f.kind) {
				v.faults[i].dups[p.module]++
			}
		}
	}
	return v
}

// firstPushByNext is the time from the fault's signal to the first push of
// o's partition by the process that holds it next: the first owner node of
// another process seen during the fault, then its first push (with epochs:
// the first push with that epoch or a higher one; without: the first push
// once the node was seen, less a poll). stayed when no other process took
// the partition during the fault (after a ZooKeeper cut it keeps its
// owner, and may move later for another reason).
func firstPushByNext(o owned, f *fault, pushes []push, zw *zkWatch, epochs bool) time.Duration {
	from, until := f.signalled, f.end
	zw.mu.Lock()
	var next *ownerChange
	for i, c := range zw.ownerLog {
		if c.module == o.module && c.partition == o.partition && c.at >= from && c.at <= until && c.id != "" && c.pid != f.victimPid {
			next = &zw.ownerLog[i]
			break
		}
	}
	zw.mu.Unlock()
	if next == nil {
		return stayed
	}
	cond := func(q push) bool {
		if q.module != o.module || q.partition != o.partition || q.arrived < from {
			return false
		}
		if epochs {
			return q.epoch >= next.epoch
		}
		// The owner is seen up to a poll (50 ms) late: a push up to then
		// may be the new owner's already.
		return q.arrived >= next.at-50*time.Millisecond
	}
	for _, p := range pushes { // by answer; take the earliest arrival
		if cond(p) {
			return earliestArrival(pushes, p, cond) - from
		}
	}
	return neverPushed
}

// Outcomes of firstPushByNext other than a time.
const (
	stayed      time.Duration = -1
	neverPushed time.Duration = -2
)

// earliestArrival is the earliest arrival among the pushes matching cond
// answered up to a few seconds after p (held pushes are answered late).
func earliestArrival(pushes []push, p push, cond func(push) bool) time.Duration {
	best := p.arrived
	for _, q := range pushes {
		if q.answered > p.answered+5*time.Second {
			break
		}
		if cond(q) && q.arrived < best {
			best = q.arrived
		}
	}
	return best
}

// summary is the table of figures the test prints.
func summary(v verdict, h *history, modules []string, recs int, failed int, window int, session time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "records: %d produced and acknowledged (%d refused to the producer)", recs, failed)
	for _, m := range modules {
		fmt.Fprintf(&b, "; %s delivered %d", m, v.delivered[m])
	}
	codes := make([]int, 0, len(v.byStatus))
	for c := range v.byStatus {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	fmt.Fprintf(&b, "\npushes: %d (", v.pushes)
	for i, c := range codes {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d: %d", c, v.byStatus[c])
	}
	fmt.Fprintf(&b, "); without an epoch: %d; ", v.noEpoch)
	if v.noEpoch == 0 {
		fmt.Fprintf(&b, "records delivered again: %d by their next owner, %d by the same one (retry after a lost answer)\n",
			v.dupMoved, v.dupRetried)
	} else {
		fmt.Fprintf(&b, "records delivered again: %d (no epochs to tell moves from retries)\n", v.dupMoved+v.dupRetried)
	}
	fmt.Fprintf(&b, "session timeout %v; takeover target after kill -9: %v; handover target after SIGTERM: 0.5s\n",
		session, session+time.Second)
	fmt.Fprintf(&b, "%3s %8s %6s %-9s %-10s %5s  %-34s %-16s %5s  %s\n",
		"#", "at", "lasted", "kind", "target", "moved", "first push by next owner min/med/max", "dups "+strings.Join(modules, "/"), "409s", "note")
	for _, ff := range v.faults {
		f := ff.f
		lasted := "-"
		if f.end >= 0 {
			lasted = fmt.Sprintf("%.1fs", (f.end - f.start).Seconds())
		}
		moves := "-"
		if len(ff.moves) > 0 {
			moves = moveFigures(ff.moves, f.kind, session)
		}
		var dups []string
		over := false
		for _, m := range modules {
			dups = append(dups, fmt.Sprint(ff.dups[m]))
			over = over || ff.dups[m] > window*f.affected
		}
		d := strings.Join(dups, "/")
		if isProcessFault(f.kind) {
			d += fmt.Sprintf(" (<=%d)", window*f.affected)
			if over {
				d += " OVER"
			}
		}
		note := f.note
		if with := overlapping(f, v.faults); len(with) > 0 {
			note += " (during " + strings.Join(with, ", ") + ")"
		}
		fmt.Fprintf(&b, "%3d %8s %6s %-9s %-10s %5d  %-34s %-16s %5d  %s\n",
			f.id, secs(f.start), lasted, f.kind, f.target, len(f.moved), moves, d, ff.stale, note)
	}
	kinds := make([]string, 0, len(v.staleBy))
	for k := range v.staleBy {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	fmt.Fprintf(&b, "pushes that arrived with a lost epoch: %d, all sent as their process was stopped (SIGSTOP) and arriving within %v of SIGCONT\n", v.lateAfterStop, lateSlack)
	b.WriteString("stale-epoch pushes refused (409) by the faults active then:")
	if len(kinds) == 0 {
		b.WriteString(" none")
	}
	for _, k := range kinds {
		fmt.Fprintf(&b, " %s %d;", k, v.staleBy[k])
	}
	b.WriteString("\n")
	// Takeover and handover over all faults of each kind.
	for _, kind := range []string{"kill9", "sigterm", "sigstop", "zkfreeze"} {
		var all []time.Duration
		for _, ff := range v.faults {
			if ff.f.kind == kind {
				all = append(all, ff.moves...)
			}
		}
		if len(all) > 0 {
			fmt.Fprintf(&b, "%s: first push of a moved partition by its next owner, min/med/max over %d moves: %s\n",
				kind, len(all), moveFigures(all, kind, session))
		}
	}
	return b.String()
}

// overlapping names the other faults active during a process fault
// ("#3 5xx"), whose effects its figures include.
func overlapping(f *fault, all []faultFigures) []string {
	if !isProcessFault(f.kind) {
		return nil
	}
	var out []string
	for _, o := range all {
		g := o.f
		if g == f || g.kind == "shuffle" {
			continue
		}
		if g.start <= f.end && (g.end < 0 || g.end >= f.start) {
			out = append(out, fmt.Sprintf("#%d %s", g.id, g.kind))
		}
	}
	return out
}

func isProcessFault(kind string) bool {
	switch kind {
	case "kill9", "sigterm", "sigstop", "zkfreeze", "zkcut", "zkrestart", "join":
		return true
	}
	return false
}

// moveFigures prints min/median/max of the moves seen, how many were
// not seen, and the target's verdict.
func moveFigures(moves []time.Duration, kind string, session time.Duration) string {
	var seen []time.Duration
	nStayed, nNever := 0, 0
	for _, d := range moves {
		switch {
		case d >= 0:
			seen = append(seen, d)
		case d == stayed:
			nStayed++
		default:
			nNever++
		}
	}
	var extra []string
	if nStayed > 0 {
		extra = append(extra, fmt.Sprintf("%d stayed", nStayed))
	}
	if nNever > 0 {
		extra = append(extra, fmt.Sprintf("%d never pushed", nNever))
	}
	if len(seen) == 0 {
		return strings.Join(extra, ", ")
	}
	slices.Sort(seen)
	s := fmt.Sprintf("%s/%s/%s", secs(seen[0]), secs(seen[len(seen)/2]), secs(seen[len(seen)-1]))
	if len(extra) > 0 {
		s += " (" + strings.Join(extra, ", ") + ")"
	}
	switch kind {
	case "kill9":
		if seen[len(seen)-1] > session+time.Second {
			s += " OVER"
		}
	case "sigterm":
		if seen[len(seen)-1] > 500*time.Millisecond {
			s += " OVER"
		}
	}
	return s
}

// explain is a violation with the seed and the history around it.
func explain(v violation, h *history, pushes []push, seed uint64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos seed %d: at %s: %s\n  history around it:\n", seed, secs(v.at), v.what)
	for _, line := range h.excerpt(v.at, 16) {
		b.WriteString("    " + line + "\n")
	}
	if v.module != "" && v.partition >= 0 {
		var near []push
		for _, p := range pushes {
			if p.module == v.module && p.partition == v.partition && (v.key == "" || p.key == v.key) &&
				p.answered >= v.at-2*time.Second && p.answered <= v.at+time.Second {
				near = append(near, p)
			}
		}
		if len(near) > 12 { // those closest to the violation
			slices.SortStableFunc(near, func(a, b push) int { return int(abs(a.answered-v.at) - abs(b.answered-v.at)) })
			near = near[:12]
			slices.SortStableFunc(near, func(a, b push) int { return int(a.seq - b.seq) })
		}
		if len(near) > 0 {
			fmt.Fprintf(&b, "  pushes of %s p%d", v.module, v.partition)
			if v.key != "" {
				fmt.Fprintf(&b, " key %s", v.key)
			}
			b.WriteString(" around it:\n")
			for _, p := range near {
				b.WriteString("    " + p.String() + "\n")
			}
		}
	}
	return b.String()
}

// TestChaosCheckerFindsViolations feeds the checker a made-up history with
// one violation of each kind it checks, and a clean one.
func TestChaosCheckerFindsViolations(t *testing.T) {
	ms := time.Millisecond
	recs := map[poKey]rec{
		{0, 0}: {key: "k00", seq: 1}, {0, 1}: {key: "k00", seq: 2}, {0, 2}: {key: "k00", seq: 3},
		{1, 0}: {key: "k01", seq: 1},
	}
	var seq int64
	p := func(module string, partition int32, offset, epoch int64, status int, at time.Duration) push {
		seq++
		r := recs[poKey{partition, offset}]
		return push{seq: seq, arrived: at, answered: at, module: module, partition: partition, offset: offset,
			key: r.key, body: fmt.Sprintf("%s|%d", r.key, r.seq), epoch: epoch, hasEpoch: true, status: status}
	}
	// held is a push that arrived at and was answered later (the sink
	// held it).
	held := func(p push, arrived time.Duration) push { p.arrived = arrived; return p }
	clean := []push{
		p("m1", 0, 0, 5, 200, 100*ms), p("m1", 0, 1, 5, 200, 110*ms), p("m1", 1, 0, 5, 200, 120*ms),
		// The owner of p0 changes (epoch 9): the old one is refused.
		p("m1", 0, 1, 9, 200, 3000*ms), held(p("m1", 0, 2, 5, 409, 3010*ms), 2950*ms), p("m1", 0, 2, 9, 200, 3020*ms),
		p("m2", 0, 0, 5, 200, 100*ms), p("m2", 0, 1, 5, 200, 110*ms), p("m2", 0, 2, 5, 200, 120*ms), p("m2", 1, 0, 5, 200, 130*ms),
	}
	zw := &zkWatch{ownerLog: []ownerChange{{at: 2900 * ms, module: "m1", partition: 0, id: "h-2-1-0", pid: 2, epoch: 9}}}
	h := newHistory()
	f := &fault{id: 1, kind: "kill9", target: "p1", start: 900 * ms, signalled: time.Second, end: 4 * time.Second, affected: 1,
		victimPid: 1, moved: []owned{{module: "m1", partition: 0, epoch: 5}}}
	h.faults = []*fault{f}
	v := check(h, clean, recs, zw, []string{"m1", "m2"})
	for _, vi := range h.violations {
		t.Errorf("clean history: %s", vi.what)
	}
	if got := v.faults[0].moves; len(got) != 1 || got[0] != 2*time.Second {
		t.Errorf("takeover %v, want [2s] (signal at 1s, first push with the new epoch at 3s)", got)
	}
	if v.faults[0].dups["m1"] != 1 || v.faults[0].stale != 1 || v.staleBy["kill9"] != 1 {
		t.Errorf("dups %v, stale %d, by kind %v; want 1 record of m1 again, 1 refused push", v.faults[0].dups, v.faults[0].stale, v.staleBy)
	}
	if s := summary(v, h, []string{"m1", "m2"}, len(recs), 0, 50, 2*time.Second); !strings.Contains(s, "2.00s/2.00s/2.00s") {
		t.Errorf("summary lacks the takeover:\n%s", s)
	}

	bad := []push{
		// m1: offset 2 of k00 first delivered before offset 1.
		p("m1", 0, 0, 5, 200, 100*ms), p("m1", 0, 2, 5, 200, 110*ms), p("m1", 0, 1, 5, 200, 120*ms), p("m1", 1, 0, 5, 200, 130*ms),
		// m2: p1@0 never delivered; a 2xx to an epoch below one seen.
		p("m2", 0, 0, 7, 200, 100*ms), p("m2", 0, 1, 6, 200, 110*ms), p("m2", 0, 2, 7, 200, 120*ms),
		// m1 p1: a push of epoch 4 arrives after epoch 5's (refused by the
		// sink, but the old owner should not have sent it).
		p("m1", 1, 0, 4, 409, 140*ms),
	}
	noEpoch := p("m2", 1, 0, 0, 500, 140*ms)
	noEpoch.hasEpoch = false
	wrong := p("m2", 0, 2, 7, 200, 150*ms)
	wrong.body = "k00|9"
	malformed := p("m2", 1, 0, 5, 400, 160*ms)
	malformed.bad = "X-Kafka-Offset \"\""
	bad = append(bad, noEpoch, wrong, malformed)
	h = newHistory()
	check(h, bad, recs, &zkWatch{}, []string{"m1", "m2"})
	want := []string{
		"m1 key k00 p0: offset 2 first delivered at 0.11s, before the older offset 1",
		"m2: 1 of 4 records never delivered: p1@0",
		"with epoch 6 after epoch 7 was seen",
		"a process pushed a partition it had lost", // m2 p0's epoch 6 too
		"a process pushed a partition it had lost",
		"carry no X-Ktransfer-Epoch",
		"key or body is not the record's",
		"malformed pushes",
	}
	var got []string
	for _, vi := range h.violations {
		got = append(got, vi.what)
	}
	if len(got) != len(want) {
		t.Errorf("%d violations, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("no violation %q among:\n%s", w, strings.Join(got, "\n"))
		}
	}
}
