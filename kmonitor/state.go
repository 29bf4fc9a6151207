package kmonitor

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// partKey names one committed offset: <chroot>/consumers/<module>/offsets/<topic>/<name>.
type partKey struct {
	module, topic, name string
}

// topicPartition names a partition in Kafka.
type topicPartition struct {
	topic     string
	partition int32
}

// offsetEntry is what an offset znode holds, or why it could not be read.
type offsetEntry struct {
	next   int64 // the next offset to push
	err    error
	folder bool      // stands for a folder that may not be listed (deniedFolder)
	epoch  uint64    // the ZooKeeper client that read it (state.epoch then)
	readAt time.Time // when it was first read with this value
	// w is the watcher that set it: a znode deleted and created again
	// gets a new watcher while the old one may still be ending, and the
	// old one drops only what it set.
	w *byte
}

// endEntry is a partition's log-end offset as last polled, with the points
// where it changed, oldest first, to estimate the age of a lag.
type endEntry struct {
	end   int64
	err   error
	at    time.Time // when end was read
	asked time.Time // when the request that read end was sent: end is no older
	// changes[first:] are the changes kept (see kept); those before first
	// are dropped from the array only once they are half of it (see drop):
	// dropping them at every poll would shift the whole array every time.
	changes []sample
	first   int
	thinned int // how many changes the last thin kept
	// newLog is when the topic's ID was seen to change (deleted and
	// created again, see setTopicID): log ends asked for before it may be
	// of the deleted log. fresh: no log end of the new log read yet.
	newLog time.Time
	fresh  bool
	backAt time.Time // when the log end was last read going back
}

// maxChanges is how many log-end changes a partition may hold (40 KiB)
// before they are thinned (see thin).
const maxChanges = 1024

// thinSlices is how many slices of the history thin keeps one change of.
const thinSlices = 512

// kept returns the changes kept, oldest first.
func (e *endEntry) kept() []sample { return e.changes[e.first:] }

// window returns the changes a lag is dated from: those of the history
// before the last read, and the last one before them (the end at the
// window's start).
func (e *endEntry) window(history time.Duration) []sample {
	return e.kept()[e.expired(history):]
}

// lostConn is when the connection to ZooKeeper was lost, while it is
// and the session lives (zero while connected, see cluster.lastContact):
// ZooKeeper last answered at answered, and the loss was seen at seen.
type lostConn struct{ answered, seen time.Time }

// lagFrom is what the lag of a partition whose module is at offset from
// is computed from: the log end, the changes it is dated by and the time
// it is dated at. Now's, unless the connection to ZooKeeper is lost (lc):
// the offsets are then as the connection left them, and commits made
// since are not seen; beside a log end read since, the lag would grow
// with every record produced while the module pushes them. Then: the log
// end as it stood when ZooKeeper last answered (changes it sent before
// were delivered); else a lag of 0 when the first log end kept is no
// higher than from (forget drops the changes below the offsets: the log
// end was no higher then); else, when none was read by then (kmonitor
// just started), the log end when the loss was seen; false when none is
// known, or when the log went back since ZooKeeper last answered.
func (e *endEntry) lagFrom(history time.Duration, now time.Time, from int64, lc lostConn) (int64, []sample, time.Time, bool) {
	w := e.window(history)
	if lc.seen.IsZero() {
		return e.end, w, now, true
	}
	if e.backAt.After(lc.answered) || e.newLog.After(lc.answered) {
		// The log went back (truncated, re-created) since: the log end
		// then says nothing of the log now.
		return 0, nil, lc.answered, false
	}
	before := func(at time.Time) int { return sort.Search(len(w), func(i int) bool { return w[i].at.After(at) }) }
	if i := before(lc.answered); i > 0 {
		return w[i-1].end, w[:i], lc.answered, true
	}
	if len(w) > 0 && w[0].end <= from {
		return w[0].end, nil, lc.answered, true
	}
	if i := before(lc.seen); i > 0 {
		return w[i-1].end, w[:i], lc.seen, true
	}
	return 0, nil, lc.answered, false
}

// setLag sets l's lag and its age, of a module at offset from, from e
// (lagFrom); its error when they are not known. s.mu held.
func (s *state) setLag(l *Lag, e *endEntry, from int64, now time.Time, lc lostConn) {
	end, changes, at, ok := e.lagFrom(s.history, now, from, lc)
	if !ok {
		l.Err = endAtLastAnswerUnknown
		return
	}
	l.Lag = max(0, end-from)
	l.LagSeconds, l.LagSecondsAtLeast = lagAge(changes, from, at)
}

// endAtLastAnswerUnknown is the lag's error when ZooKeeper's connection is
// lost and no log end was read by its last answer (lagFrom).
const endAtLastAnswerUnknown = "zookeeper connection lost and no log-end offset read before: the lag is not known"

// expired counts the changes kept before the window.
func (e *endEntry) expired(history time.Duration) int {
	k := e.kept()
	j := sort.Search(len(k), func(j int) bool { return e.at.Sub(k[j].at) <= history })
	return max(j-1, 0)
}

// drop drops the n oldest changes kept. They leave the array once they
// are at least half of it, the others copied into a fresh one: each change
// is copied about once, and the array a long lag grew is let go once the
// module has caught up.
func (e *endEntry) drop(n int) {
	e.first += n
	if e.first == 0 || 2*e.first < len(e.changes) {
		return
	}
	e.changes, e.first = slices.Clone(e.changes[e.first:]), 0
	e.thinned = min(e.thinned, len(e.changes))
}

// thin keeps, of the window's changes, the last of each slice of
// history/thinSlices (slices aligned on the clock, so that a change kept
// stays kept), the first one, and the two on either side of a log end
// that went back (a run's start, see lagAge); a blind one dropped makes
// the next one kept blind (a lag it dates is a lower bound). A lag is then dated by the
// last change of the slice in which it began rather than by the first
// poll that saw it: later by less than history/thinSlices; one that
// began before the window, by a change before it that may be older than
// the poll before the window: a lower bound still. The others leave the
// array, which is let go when it is 4 times too big.
func (e *endEntry) thin(history time.Duration) {
	c := e.window(history)
	width := int64(max(history/thinSlices, 1))
	slice := func(i int) int64 { return c[i].at.UnixNano() / width }
	kept := e.changes[:0] // written behind what is read: c[i-1] is read before it is overwritten
	carry := false        // a blind change dropped: the next one kept is blind
	for i, s := range c {
		if i == 0 || i == len(c)-1 || slice(i) != slice(i+1) || c[i+1].end < s.end || c[i-1].end > s.end {
			s.blind = s.blind || carry
			carry = false
			kept = append(kept, s)
		} else {
			carry = carry || s.blind
		}
	}
	e.changes, e.first, e.thinned = kept, 0, len(kept)
	if cap(e.changes) > 4*len(e.changes) {
		e.changes = slices.Clone(e.changes)
	}
}

type sample struct {
	at  time.Time
	end int64
	// blind: the log end had not been read for a while before (reads
	// failed, or none was made for longer than state.blindAfter): its
	// records may be older than at, by as long.
	blind bool
}

// state is one cluster's view: offsets from ZooKeeper, log-end offsets
// from the brokers. Lag is computed from it at request time.
type state struct {
	history time.Duration
	// blindAfter is how long a partition's log end may go unread between
	// two reads of a polling that works (two poll intervals and a
	// request's bound); 0: only failed reads count (sample.blind).
	blindAfter time.Duration
	// gen counts changes to what the lag is computed from (not the mere
	// passing of time), so that rendered answers can be reused.
	gen atomic.Uint64

	mu sync.RWMutex
	// epoch counts ZooKeeper clients. A client that is replaced leaves its
	// offsets here (shown as errors while ZooKeeper is away); the next one
	// reads them again, and drops those of an older epoch that its
	// listings no longer find (pruneStale).
	epoch   uint64
	offsets map[partKey]offsetEntry
	ends    map[topicPartition]*endEntry
	// owned are the partitions claimed under owners/, per module and
	// topic, as the watcher w of that folder last listed them. Like the
	// offsets, those listed by a client that was replaced stay until the
	// next client has listed them again or found them gone.
	owned map[moduleTopic]ownedEntry
	// counts are the partition counts the modules' offsets/<topic> nodes
	// record (zklayout.OffsetsTopic), as their watchers last read them:
	// where one is recorded, a partition the brokers list (parts) with no
	// offset znode is one no process has started (see unstored). Kept
	// through a client's replacement as the claims are.
	counts map[moduleTopic]countEntry
	// parts is how many partitions the brokers list for a topic, as the
	// last metadata that answered for it said.
	parts map[string]int32
	// partsLower is when the brokers first answered, in a row, that a
	// topic of parts has fewer partitions or is not there: that is taken
	// (the topic forgotten, or its count lowered) once it lasted the
	// stale bound. A broker whose metadata is behind (a partition added,
	// a topic created) answers so for a moment, and its unstored
	// partitions would vanish from every output while the stored ones,
	// whose log ends turn unknown only once stale, stayed.
	partsLower map[string]time.Time
	// ids are the topics' IDs, as the last metadata that answered for
	// each said (none from brokers before Kafka 2.8), and when.
	ids map[string]topicID
	// starts are the log-start offsets of the unstored partitions, as last
	// polled.
	starts map[topicPartition]startEntry
	// reading marks the module's topics whose offsets/<topic> folder its
	// watcher w has not listed and read every offset znode of yet (the
	// first reading, or one after a client's replacement): a partition
	// with no offset known there may have one not read yet, and is not
	// taken for unstored (see unstored).
	reading map[moduleTopic]*byte
	// listed are the offset znodes the last listing of each module's
	// offsets/<topic> folder found, by the watcher w, and the client that
	// listed it (its epoch). A partition of an earlier client's listing,
	// or of the current one but not read yet, may have an offset written
	// since, or not read yet: it is not taken for unstored (its lag from
	// the log start would be shown as known).
	listed map[moduleTopic]listedEntry
}

type listedEntry struct {
	w     *byte
	names []string
	epoch uint64
}

type countEntry struct {
	w     *byte
	n     int32 // > 0
	epoch uint64
}

type startEntry struct {
	start int64
	at    time.Time // when start was read; zero: never
	err   error     // of the last poll; start is kept beside it until stale
}

type moduleTopic struct{ module, topic string }

type topicID struct {
	id  [16]byte
	at  time.Time  // the last metadata that said it
	old [][16]byte // the IDs it had before, the last few
}

// oldIDs is how many of a topic's earlier IDs are remembered: a broker
// whose metadata is behind may still give one of them for a moment.
const oldIDs = 4

// idSlack is how much older than when it is answered the metadata kgo
// caches may be (MetadataMinAge, 100 ms), with room to spare.
const idSlack = time.Second

type ownedEntry struct {
	w     *byte
	names []string
	epoch uint64 // the ZooKeeper client that listed them (state.epoch then)
}

func newState(history, blindAfter time.Duration) *state {
	return &state{history: history, blindAfter: blindAfter, offsets: map[partKey]offsetEntry{}, ends: map[topicPartition]*endEntry{},
		owned: map[moduleTopic]ownedEntry{}, counts: map[moduleTopic]countEntry{}, parts: map[string]int32{},
		partsLower: map[string]time.Time{}, ids: map[string]topicID{}, starts: map[topicPartition]startEntry{}, reading: map[moduleTopic]*byte{},
		listed: map[moduleTopic]listedEntry{}}
}

// startReading marks mt's offsets as being read by the watcher w: until
// readDone, a partition of it with no offset known is shown as not read
// yet rather than unstored (its znode may be listed and not read yet).
func (s *state) startReading(mt moduleTopic, w *byte) {
	s.mu.Lock()
	s.reading[mt] = w
	s.mu.Unlock()
	s.gen.Add(1)
}

// readDone ends startReading's mark, unless another watcher set it since.
func (s *state) readDone(mt moduleTopic, w *byte) {
	s.mu.Lock()
	done := s.reading[mt] == w
	if done {
		delete(s.reading, mt)
	}
	s.mu.Unlock()
	if done {
		s.gen.Add(1)
	}
}

// partitionNumber reads an offset znode's name as a partition: only its
// canonical decimal form ("7", not "07" or "+7") names one, as ktransfer
// and Kafka's consumers write it; any other name is a malformed znode.
func partitionNumber(name string) (int32, bool) {
	p, err := strconv.ParseInt(name, 10, 32)
	if err != nil || p < 0 || strconv.FormatInt(p, 10) != name {
		return 0, false
	}
	return int32(p), true
}

// setOffset records an offset znode's data and returns the parse error,
// if any (the entry then shows as unknown).
func (s *state) setOffset(live context.Context, k partKey, w *byte, data []byte) error {
	v, err := zklayout.ParseOffset(data)
	if err != nil {
		err = fmt.Errorf("bad offset znode: %w", err)
	}
	s.setEntry(live, k, offsetEntry{next: v, err: err, w: w})
	return err
}

// unreadable records that the offset znode of k cannot be read (its ACL).
func (s *state) unreadable(live context.Context, k partKey, w *byte, err error) {
	s.setEntry(live, k, offsetEntry{err: fmt.Errorf("offset znode unreadable: %w", err), w: w})
}

// deniedFolder records that the folder p, whose offsets k stands for
// ("*" in place of the names it would list), cannot be listed (its ACL).
func (s *state) deniedFolder(live context.Context, k partKey, w *byte, p string, err error) {
	s.setEntry(live, k, offsetEntry{folder: true, err: fmt.Errorf("%s unreadable, its offsets unknown: %w", p, err), w: w})
}

// setEntry records e, set by the watcher whose context is live, unless
// that watcher has been stopped: a watcher stopped while it read (its
// znode deleted and created again) must not record what it read over
// what the watcher started since has. live is read under the lock: a
// watcher is stopped before the next one starts, so either this write
// comes first or it sees live ended.
func (s *state) setEntry(live context.Context, k partKey, e offsetEntry) {
	s.mu.Lock()
	if live.Err() != nil {
		s.mu.Unlock()
		return
	}
	e.epoch, e.readAt = s.epoch, time.Now()
	if o, ok := s.offsets[k]; ok && o.err == nil && e.err == nil && o.next == e.next {
		// Read again unchanged (a claim rewrites the node as it is, a
		// new session reads it again): it has been committed since the
		// first read, and a log end read after that still tells whether
		// it is past it (a committed offset past the log end read as lag
		// 0 until the next poll).
		e.readAt = o.readAt
	}
	s.offsets[k] = e
	s.mu.Unlock()
	s.gen.Add(1)
}

// dropOffset drops the entry k that the watcher w set, not one another
// watcher set since.
func (s *state) dropOffset(k partKey, w *byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.offsets[k]; !ok || o.w != w {
		return
	}
	delete(s.offsets, k)
	s.gen.Add(1)
}

// setOwned records the partitions claimed for module and topic, as the
// watcher w, whose context is live, listed them; names nil drops them,
// unless another watcher of the current client has listed them since. A
// listing by a watcher stopped meanwhile (its folder deleted and created
// again, or its client replaced) is not recorded, as in setEntry.
func (s *state) setOwned(live context.Context, module, topic string, w *byte, names []string) {
	k := moduleTopic{module, topic}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.owned[k]
	switch {
	case names != nil && live.Err() != nil:
		return
	case names != nil:
		s.owned[k] = ownedEntry{w, names, s.epoch}
	case ok && (cur.w == w || cur.epoch < s.epoch):
		delete(s.owned, k)
	default:
		return
	}
	s.gen.Add(1)
}

// pruneOwned drops the claims listed by an earlier client for which gone
// holds: a listing of the current client found no folder for them.
func (s *state) pruneOwned(gone func(moduleTopic) bool) {
	s.mu.Lock()
	n := 0
	for k, o := range s.owned {
		if o.epoch < s.epoch && gone(k) {
			delete(s.owned, k)
			n++
		}
	}
	s.mu.Unlock()
	if n > 0 {
		s.gen.Add(1)
	}
}

// setCount records the partition count (0: none recorded) of module's
// offsets/<topic> node, as the watcher w, whose context is live, read it;
// drop drops it, unless another watcher has set it since. A reading by a
// watcher stopped meanwhile is not recorded, as in setEntry.
func (s *state) setCount(live context.Context, k moduleTopic, w *byte, n int32, drop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.counts[k]
	switch {
	case drop && (!ok || cur.w != w):
		return
	case drop:
		delete(s.counts, k)
	case live.Err() != nil:
		return
	case n <= 0 && !ok:
		return
	case n <= 0:
		delete(s.counts, k)
	case ok && cur == countEntry{w, n, s.epoch}:
		return
	default:
		s.counts[k] = countEntry{w, n, s.epoch}
	}
	s.gen.Add(1)
}

// setListed records the offset znodes the watcher w, whose context is
// live, listed in module's offsets/<topic> folder (none: the folder is
// gone); drop drops the record, unless another watcher has set it since.
func (s *state) setListed(live context.Context, k moduleTopic, w *byte, names []string, drop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.listed[k]
	switch {
	case drop && (!ok || cur.w != w):
		return
	case drop:
		delete(s.listed, k)
	case live.Err() != nil:
		return
	default:
		s.listed[k] = listedEntry{w, slices.Clone(names), s.epoch}
	}
	s.gen.Add(1)
}

// pruneCounts drops the counts read by an earlier client for which gone
// holds: a listing of the current client found no folder for them.
func (s *state) pruneCounts(gone func(moduleTopic) bool) {
	s.mu.Lock()
	n := 0
	for k, c := range s.counts {
		if c.epoch < s.epoch && gone(k) {
			delete(s.counts, k)
			n++
		}
	}
	for k, l := range s.listed {
		if l.epoch < s.epoch && gone(k) {
			delete(s.listed, k)
			n++
		}
	}
	s.mu.Unlock()
	if n > 0 {
		s.gen.Add(1)
	}
}

// setParts records how many partitions the brokers list for topic at now;
// n < 0 says the topic is not there. A count above the one known is taken
// at once; a lower one, or none, only once the brokers have said so for
// longer than staleAfter (see partsLower).
func (s *state) setParts(topic string, n int32, now time.Time, staleAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.parts[topic]
	switch {
	case !ok && n < 0:
		return
	case !ok || n > cur:
		delete(s.partsLower, topic)
		s.parts[topic] = n
	case n == cur:
		delete(s.partsLower, topic)
		return
	default:
		since, lower := s.partsLower[topic]
		if !lower {
			s.partsLower[topic] = now
			return
		}
		if now.Sub(since) <= staleAfter {
			return
		}
		delete(s.partsLower, topic)
		if n < 0 {
			delete(s.parts, topic)
		} else {
			s.parts[topic] = n
		}
	}
	s.gen.Add(1)
}

// setTopicID records the ID the brokers give topic, read at now. Another
// ID than the one recorded is the topic deleted and created again: its
// log end may be past the deleted one's by the time it is read (more
// records written to it), with no log end going back to tell. A
// partition whose log end was seen going back since the old ID was read
// last keeps its changes from there (the new log's, read from its start:
// the metadata told later than the log end). The others' changes are dropped
// (those of the deleted log would date the new one's records), log ends
// asked for before now are ignored (they may be the deleted log's), and
// the first one read after is blind (its records came some time since
// the creation: the age is a bound).
func (s *state) setTopicID(topic string, id [16]byte, now time.Time) {
	if id == ([16]byte{}) {
		return // brokers before Kafka 2.8
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.ids[topic]
	switch {
	case !ok:
		s.ids[topic] = topicID{id: id, at: now}
		return
	case old.id == id:
		s.ids[topic] = topicID{id, now, old.old}
		return
	case slices.Contains(old.old, id):
		return // a broker behind: IDs are never given again
	}
	s.ids[topic] = topicID{id, now, append(slices.Clone(old.old[max(0, len(old.old)-oldIDs+1):]), old.id)}
	for tp, e := range s.ends {
		if tp.topic != topic {
			continue
		}
		if !e.backAt.Before(old.at.Add(-idSlack)) {
			// The log end went back since the old ID was read: the new
			// log's first read, kept from there (forget may have dropped
			// the changes before it already).
			k := e.kept()
			i := len(k) - 1
			for i > 0 && k[i-1].end <= k[i].end {
				i--
			}
			e.changes, e.first, e.thinned = slices.Clone(k[i:]), 0, 0
			continue
		}
		// The deleted log's end is not shown as the new one's (a lag of
		// age 0) until the new log's is read.
		e.changes, e.first, e.thinned = nil, 0, 0
		e.newLog, e.fresh, e.at = now, true, time.Time{}
	}
	// Nor its start, the lag of a partition no process has started
	// counting from it (a deleted log's start past the new log's end was
	// lag 0, known), unless read since the new log was (its end seen
	// going back).
	for tp, st := range s.starts {
		if tp.topic != topic {
			continue
		}
		newLog := now
		if e := s.ends[tp]; e != nil && !e.backAt.Before(old.at.Add(-idSlack)) {
			newLog = e.backAt
		}
		if st.at.Before(newLog) {
			delete(s.starts, tp)
		}
	}
	s.gen.Add(1)
}

// setStart records a polled log-start offset of an unstored partition,
// asked for at asked and read at now, or the error that kept it: the last
// start read is kept beside the error, and used until it is stale, as a
// log end is (one failed answer does not turn the partition's lag into an
// error). One asked for before the partition's new log was known
// (endEntry.newLog: the topic's new ID seen) is ignored: it may be the
// deleted log's (setTopicID).
func (s *state) setStart(tp topicPartition, start int64, err error, asked, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.ends[tp]; e != nil && asked.Before(e.newLog) {
		return
	}
	cur, ok := s.starts[tp]
	if err != nil {
		if ok && cur.err != nil && cur.err.Error() == err.Error() {
			return
		}
		cur.err = err
		s.starts[tp] = cur
		s.gen.Add(1)
		return
	}
	changed := !ok || cur.start != start || cur.err != nil
	s.starts[tp] = startEntry{start: start, at: now}
	if changed {
		s.gen.Add(1)
	}
}

// unstored lists, under s.mu, the partitions no process has started:
// those the brokers list for the topic of a module whose offsets/<topic>
// node records a partition count, and that have no offset znode. ktransfer
// creates a partition's offset znode at its first claim, before it pushes
// any of its records: one without is pushed by no one, whether it was
// added to the topic since the module started on it (at or above the
// count), never claimed, or had its znode deleted by hand. Not where the
// folder of offsets that would hold them cannot be listed: its entry says
// so already. A node without a count (hand-made, or written by an older
// ktransfer) tells nothing: its offsets may be sparse.
func (s *state) unstored() []partKey {
	var out []partKey
	for mt := range s.counts {
		if s.offsets[partKey{mt.module, mt.topic, "*"}].folder || s.offsets[partKey{mt.module, "*", "*"}].folder ||
			s.offsets[partKey{"*", "*", "*"}].folder {
			continue
		}
		for id := range s.parts[mt.topic] {
			k := partKey{mt.module, mt.topic, strconv.Itoa(int(id))}
			if _, ok := s.offsets[k]; !ok {
				out = append(out, k)
			}
		}
	}
	return out
}

// newEpoch starts the epoch of a new ZooKeeper client.
func (s *state) newEpoch() {
	s.mu.Lock()
	s.epoch++
	s.mu.Unlock()
}

// pruneStale drops the offsets read by an earlier client for which gone
// holds: a listing of the current client found no znode for them.
func (s *state) pruneStale(gone func(partKey) bool) {
	s.mu.Lock()
	n := 0
	for k, o := range s.offsets {
		if o.epoch < s.epoch && gone(k) {
			delete(s.offsets, k)
			n++
		}
	}
	s.mu.Unlock()
	if n > 0 {
		s.gen.Add(1)
	}
}

// wanted lists the partitions whose log-end offsets are needed.
func (s *state) wanted() map[string][]int32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string][]int32{}
	seen := map[topicPartition]bool{}
	for k, o := range s.offsets {
		p, ok := partitionNumber(k.name)
		if !ok || o.err != nil {
			continue
		}
		tp := topicPartition{k.topic, p}
		if !seen[tp] {
			seen[tp] = true
			out[k.topic] = append(out[k.topic], int32(p))
		}
	}
	// The topics whose nodes record a partition count: their partitions
	// without an offset are polled once the metadata has listed them.
	for mt := range s.counts {
		if _, ok := out[mt.topic]; !ok {
			out[mt.topic] = nil
		}
	}
	for _, k := range s.unstored() {
		p, _ := partitionNumber(k.name)
		tp := topicPartition{k.topic, p}
		if !seen[tp] {
			seen[tp] = true
			out[k.topic] = append(out[k.topic], p)
		}
	}
	// Claimed partitions without an offset show their log end too
	// (lags): a topic whose node records no count lists them nowhere else.
	keeps := s.keepers()
	for mt, o := range s.owned {
		if !keeps[mt.module] {
			continue // not shown
		}
		for _, name := range o.names {
			p, ok := partitionNumber(name)
			if tp := (topicPartition{mt.topic, p}); ok && !seen[tp] {
				seen[tp] = true
				out[mt.topic] = append(out[mt.topic], p)
			}
		}
	}
	return out
}

// keepers are the modules that keep offsets in ZooKeeper: only their
// claims under owners/ are shown (lags); nil when nothing is claimed.
// s.mu held.
func (s *state) keepers() map[string]bool {
	if len(s.owned) == 0 {
		return nil
	}
	keeps := map[string]bool{}
	for k := range s.offsets {
		keeps[k.module] = true
	}
	return keeps
}

// needStarts lists the partitions whose log-start offsets are needed: the
// unstored ones.
func (s *state) needStarts() map[topicPartition]bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[topicPartition]bool{}
	for _, k := range s.unstored() {
		p, _ := partitionNumber(k.name)
		out[topicPartition{k.topic, p}] = true
	}
	return out
}

// setEnd records a polled log-end offset, or the error that kept it.
// asked is when the request that read it was sent, now when its answer
// came.
func (s *state) setEnd(tp topicPartition, end int64, asked time.Time, err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.ends[tp]
	if e == nil {
		e = &endEntry{}
		s.ends[tp] = e
	}
	if err != nil {
		if e.err == nil || e.err.Error() != err.Error() {
			s.gen.Add(1)
		}
		e.err = err
		return
	}
	if asked.Before(e.newLog) {
		return // maybe the deleted log's (setTopicID)
	}
	if e.err != nil || e.end != end || e.at.IsZero() {
		s.gen.Add(1)
	}
	blind := e.err != nil // (tests without a poll interval)
	if s.blindAfter > 0 {
		blind = !e.at.IsZero() && now.Sub(e.at) > s.blindAfter // a failed read soon made good tells little
	}
	if e.fresh {
		blind, e.fresh = true, false
	}
	if !e.at.IsZero() && end < e.end {
		e.backAt = now
		// The log start read before is not used with it: a log that went
		// back may be a new one (the topic created again, its new ID not
		// seen yet), its start below the deleted log's. Read again right
		// after (pollLeader).
		if st, ok := s.starts[tp]; ok && st.at.Before(now) {
			delete(s.starts, tp)
		}
	}
	e.end, e.err, e.at, e.asked = end, nil, now, asked
	if k := e.kept(); len(k) == 0 || k[len(k)-1].end != end {
		e.changes = append(e.changes, sample{now, end, blind})
	}
	e.drop(e.expired(s.history))
	// A lag that lasts holds a change per poll: 36,000 for an hour of
	// polls every 100 ms. Thinned when they have doubled since the last
	// thinning (a partition whose log end keeps going back holds more
	// than maxChanges after it), so each change is looked at a few times.
	if len(e.changes) > max(maxChanges, 2*e.thinned) {
		e.thin(s.history)
	}
}

// forget drops log-end entries no offset refers to any more, and the
// changes of the others that no lag can need: those before the last change
// at or below the lowest offset committed for the partition (a lag is
// dated by the first change past its committed offset). Without that, a
// busy partition whose modules keep up would keep a change for every poll
// of history_minutes.
func (s *state) forget(wanted map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tp := range s.ends {
		found := false
		for _, p := range wanted[tp.topic] {
			if p == tp.partition {
				found = true
				break
			}
		}
		if !found {
			delete(s.ends, tp)
			s.gen.Add(1)
		}
	}
	for topic := range s.parts {
		if _, ok := wanted[topic]; !ok {
			delete(s.parts, topic)
			delete(s.partsLower, topic)
			s.gen.Add(1)
		}
	}
	for topic := range s.ids {
		if _, ok := wanted[topic]; !ok {
			delete(s.ids, topic)
		}
	}
	low := make(map[topicPartition]int64, len(s.ends))
	need := map[topicPartition]bool{}
	for _, k := range s.unstored() { // dated from where they start
		p, _ := partitionNumber(k.name)
		tp := topicPartition{k.topic, p}
		need[tp] = true
		if st, ok := s.starts[tp]; ok && !st.at.IsZero() {
			low[tp] = st.start
		}
	}
	for tp := range s.starts {
		if !need[tp] {
			delete(s.starts, tp)
		}
	}
	for k, o := range s.offsets {
		p, ok := partitionNumber(k.name)
		if !ok || o.err != nil {
			continue
		}
		tp := topicPartition{k.topic, p}
		if v, ok := low[tp]; !ok || o.next < v {
			low[tp] = o.next
		}
	}
	for tp, e := range s.ends {
		next, ok := low[tp]
		if !ok {
			continue
		}
		k := e.kept()
		cut := len(k) - 1
		for cut > 0 && k[cut].end > next {
			cut--
		}
		e.drop(max(cut, e.expired(s.history)))
	}
}

// Lag is one partition's delay, as served.
type Lag struct {
	Cluster, Module, Topic string
	Partition              string // the znode's name: a partition number unless the znode is malformed
	Lag                    int64  // messages, >= 0; meaningful when Err is empty
	Committed, LogEnd      int64  // -1 when unknown
	LagSeconds             float64
	LagSecondsAtLeast      bool // the lag is older than the history kept
	Err                    string

	pnum   int64 // Partition as a number, -1 when it is not one (for sorting)
	folder bool  // stands for a folder kmonitor may not list: Topic or Partition is "*"
	// topics is how many topics the module keeps offsets of
	// (offsetFolders), inFolder whether Topic is one (moduleKeys).
	topics   int
	inFolder bool
	// cause names Err's kind when nothing else logs it (logUnknown does):
	// its text can change while the kind stays (a log end that grows).
	cause string
	// undecided: what snapshot shows may change at the next poll without
	// the partition's state changing (an offset read again after the log
	// end it is compared with, or not yet read in a new session):
	// logUnknown leaves the cause it logged as it is.
	undecided bool
}

// The causes of an unknown lag that only logUnknown logs (Lag.cause); the
// others are logged where they are found: ZooKeeper away, a bad offset
// znode, log-end offsets not read.
const (
	causeNotPartition = "not a partition"
	causePastEnd      = "past the log end"
	causeClaimed      = "claimed, no offset"
	causeNoStart      = "log start unknown"
)

// snapshot computes the lag of every partition at now. staleAfter is how
// old a log-end offset may be before it counts as unknown; zkErr, when set,
// marks every partition (ZooKeeper unreachable for longer than a session).
func (s *state) snapshot(cluster string, now time.Time, staleAfter time.Duration, zkErr string, lc lostConn) []Lag {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Lag, 0, len(s.offsets))
	for k, o := range s.offsets {
		l := Lag{Cluster: cluster, Module: k.module, Topic: k.topic, Partition: k.name, Committed: -1, LogEnd: -1, pnum: -1}
		p, isNum := partitionNumber(k.name)
		if isNum {
			l.pnum = int64(p)
		}
		switch {
		case zkErr != "":
			l.Err = zkErr
		case o.err != nil:
			l.Err = o.err.Error()
		case o.epoch < s.epoch:
			// Read by a client since replaced, or in a session since
			// expired: it has not been read again (yet, or its folder
			// cannot be listed).
			l.Err = "offset not read again since the zookeeper client was replaced or its session expired"
			l.undecided = true
		case !isNum:
			l.Err, l.cause = fmt.Sprintf("offset znode name %q is not a partition number", k.name), causeNotPartition
		}
		l.folder = o.folder
		if o.err == nil && zkErr == "" && o.epoch >= s.epoch {
			// Only as read now: one read before ZooKeeper went away, or
			// under a client since replaced, is shown beside a log end
			// read now, and their difference would be a lag that grows
			// with the records produced while the module pushes them.
			l.Committed = o.next
		}
		if l.Err == "" {
			e := s.ends[topicPartition{k.topic, p}]
			switch {
			case endUnknown(e, now, staleAfter) != "":
				l.Err = endUnknown(e, now, staleAfter)
			case o.next > e.end && e.asked.After(o.readAt):
				// Records below the offset were in the log when it was
				// committed (ktransfer reads no further than the log
				// end), and the log end was read after the offset: they
				// are gone. A log end read before is lower for a while
				// (records produced, pushed and committed meanwhile).
				l.LogEnd = e.end
				l.Err = fmt.Sprintf("committed offset %d past the log end %d: topic re-created or log truncated", o.next, e.end)
				l.cause = causePastEnd
			default:
				l.LogEnd = e.end
				s.setLag(&l, e, o.next, now, lc)
				// Past a log end read before the offset: the next poll
				// tells whether records were produced or the log is gone.
				l.undecided = o.next > e.end
			}
		}
		if isNum {
			l.LogEnd = s.knownEnd(topicPartition{k.topic, p}, l.LogEnd, now, staleAfter)
		}
		out = append(out, l)
	}
	// Claimed partitions without an offset: the module has them to push,
	// from where it will start. Not where the folder of offsets that would
	// hold them cannot be listed: its entry says so already. Only of a
	// module that keeps offsets in ZooKeeper: consumer groups of other
	// tools claim partitions under owners/ too, and may keep their offsets
	// in Kafka, or commit their first ones only a minute later.
	keeps := s.keepers()
	claimed := map[partKey]bool{}
	for mt, o := range s.owned {
		if !keeps[mt.module] {
			continue
		}
		for _, name := range o.names {
			k := partKey{mt.module, mt.topic, name}
			if _, ok := s.offsets[k]; ok || s.offsets[partKey{mt.module, mt.topic, "*"}].folder ||
				s.offsets[partKey{mt.module, "*", "*"}].folder || s.offsets[partKey{"*", "*", "*"}].folder {
				continue
			}
			claimed[k] = true
			l := Lag{Cluster: cluster, Module: mt.module, Topic: mt.topic, Partition: name, Committed: -1, LogEnd: -1, pnum: -1,
				Err: cmp.Or(zkErr, "claimed in owners/, no offset committed yet")}
			if zkErr == "" {
				l.cause = causeClaimed
			}
			if p, ok := partitionNumber(name); ok {
				l.pnum = int64(p)
				l.LogEnd = s.knownEnd(topicPartition{mt.topic, p}, l.LogEnd, now, staleAfter)
			}
			out = append(out, l)
		}
	}
	// Partitions no process has started (unstored): the module has all
	// their records to push, from their log start, where ktransfer starts
	// a partition added to the topic (start_from oldest starts every
	// partition there; newest starts one below the count at its newest
	// record, and the lag is what it would skip). A claimed one is
	// reported as claimed, above.
	for _, k := range s.unstored() {
		if claimed[k] {
			continue
		}
		p, _ := partitionNumber(k.name)
		tp := topicPartition{k.topic, p}
		l := Lag{Cluster: cluster, Module: k.module, Topic: k.topic, Partition: k.name, Committed: -1, LogEnd: -1, pnum: int64(p)}
		e := s.ends[tp]
		st, known := s.starts[tp]
		switch {
		case zkErr != "":
			l.Err = zkErr
		case s.reading[moduleTopic{k.module, k.topic}] != nil:
			l.Err = "offset not read yet"
		case s.listed[moduleTopic{k.module, k.topic}].epoch < s.epoch:
			// Its folder not listed again since the client was replaced
			// or its session expired: an offset may have been stored
			// meanwhile (as for a stored offset not read again).
			l.Err = "offset not read again since the zookeeper client was replaced or its session expired"
			l.undecided = true
		case slices.Contains(s.listed[moduleTopic{k.module, k.topic}].names, k.name):
			l.Err = "offset not read yet" // listed, its watcher's first read to come
		case endUnknown(e, now, staleAfter) != "":
			l.Err = endUnknown(e, now, staleAfter)
		case st.err != nil && (st.at.IsZero() || now.Sub(st.at) > staleAfter):
			l.Err, l.cause = "no offset stored; log-start offset unknown: "+st.err.Error(), causeNoStart
		case !known || st.at.IsZero():
			l.Err = "no offset stored; log-start offset not known yet"
		default:
			l.LogEnd = e.end
			s.setLag(&l, e, st.start, now, lc)
		}
		l.LogEnd = s.knownEnd(tp, l.LogEnd, now, staleAfter)
		out = append(out, l)
	}
	folders := s.offsetFolders()
	for i := range out {
		f := folders[out[i].Module]
		out[i].topics, out[i].inFolder = len(f), f[out[i].Topic]
	}
	return out
}

// offsetFolders gives, by module, the topics it keeps offsets of, as
// read: those with offsets (or their folder found unreadable) and those
// whose offsets/<topic> node records a partition count (ktransfer writes
// it when it starts the topic). Not an empty folder, nor the module's
// folder of offsets when unreadable, nor a topic whose partitions are only
// claimed in owners/. s.mu held.
func (s *state) offsetFolders() map[string]map[string]bool {
	out := map[string]map[string]bool{}
	add := func(module, topic string) {
		if topic == "*" {
			return
		}
		if out[module] == nil {
			out[module] = map[string]bool{}
		}
		out[module][topic] = true
	}
	for k := range s.offsets {
		add(k.module, k.topic)
	}
	for k := range s.counts {
		add(k.module, k.topic)
	}
	return out
}

// knownEnd is tp's log end when it is known (read, not stale), else
// dflt: it is shown while the lag is unknown for another reason
// (ZooKeeper away, an offset not read again, a claimed partition without
// one), so that the produce rate stays on the dashboards. s.mu held.
func (s *state) knownEnd(tp topicPartition, dflt int64, now time.Time, staleAfter time.Duration) int64 {
	if e := s.ends[tp]; endUnknown(e, now, staleAfter) == "" {
		return e.end
	}
	return dflt
}

// endUnknown says why e, a partition's log end, cannot be used at now,
// or "" when it can.
func endUnknown(e *endEntry, now time.Time, staleAfter time.Duration) string {
	switch {
	case e == nil || e.at.IsZero():
		if e != nil && e.err != nil {
			return "log-end offset unknown: " + e.err.Error()
		}
		return "log-end offset not known yet"
	case e.err != nil && now.Sub(e.at) > staleAfter:
		return "log-end offset unknown: " + e.err.Error()
	case now.Sub(e.at) > staleAfter:
		return fmt.Sprintf("log-end offset not read for %s", now.Sub(e.at).Truncate(time.Second))
	}
	return ""
}

// lagAge estimates how long ago the oldest unpushed record (offset next)
// was produced: the time of the first poll of the last run of polls that
// saw the log end past it. A log end that went back (a topic deleted and
// created again) starts a new run: its records are new ones, produced
// after the change before, whether or not it went back below next. The
// estimate is late by at most one poll interval. When that run starts with
// the oldest change kept, or with a log end that went back but not below
// next (its first records were produced before it was seen), the age is
// at least that old; so it is when that run starts with a change seen
// after the log end went unread for a while (blind: the records may have
// come any time since the read before). A poll that ended after now (it held the state while
// now's reader waited) dates a lag 0 s old, not a negative age.
func lagAge(changes []sample, next int64, now time.Time) (float64, bool) {
	if len(changes) == 0 || changes[len(changes)-1].end <= next {
		return 0, false
	}
	i := len(changes) - 1
	for i > 0 && changes[i-1].end > next && changes[i-1].end <= changes[i].end {
		i--
	}
	return max(0, now.Sub(changes[i].at).Seconds()), i == 0 || changes[i-1].end > next || changes[i].blind
}
