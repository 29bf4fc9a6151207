// Package spool is a crash-safe local queue of Kafka records: kproxy
// appends the records Kafka cannot take now and drains them, in order,
// when it can.
//
// # On disk
//
// A spool directory holds
//
//	lock                      flock'ed (exclusive) while a Spool has the directory open
//	acked                     the watermark: uint64 acked (every seq below it is acknowledged),
//	                          uint64 next (no seq below it is appended again), CRC32C of those 16 bytes
//	acked-ranges              written by Close: the entries acked above the watermark (acknowledged
//	                          after an older one that was not): uint64 acked and uint64 next, as in
//	                          acked when it was written, then for each segment on disk holding such
//	                          an entry: uint64 its base, uint32 its entry count, one bit per entry
//	                          (1: acked); CRC32C of all that. Open takes it only when acked holds
//	                          the same two numbers. Its size follows the entries on disk
//	topic-floors              written by SaveTopic (kproxy: as a topic's records go to Kafka directly
//	                          again): per topic, uvarint length, name, uint64 floor (every entry of
//	                          the topic below it is acked; no seq below it is appended again);
//	                          CRC32C of all that. Written whole as topic-floors.tmp, synced,
//	                          renamed over it, the directory synced. Open takes it whatever the
//	                          watermark: what it says stays true
//	acked-above               the same as written by earlier versions (one bit per seq from acked
//	                          on, the segments removed since included: it grew with every record
//	                          sent since the oldest one not acked), read when acked-ranges is
//	                          missing; Close removes it
//	00000000000000000042.seg  a segment: the entries with seqs 42, 43, ... (its name is its first
//	                          seq in 20 digits, so that lexical order is append order)
//
// A segment is a sequence of entries, each
//
//	uint32  payload length
//	uint32  CRC32C (Castagnoli) of the payload
//	payload int64 appended time (Unix ns): the record's Time, else the Append's
//	        uvarint length, topic
//	        uvarint length+1, key (0: no key, which is distinct from an empty key)
//	        uvarint length, value
//	        uvarint header count, then per header: uvarint length, key, uvarint length, value
//
// Integers are little-endian. An entry's seq is not stored: it is its
// segment's first seq plus its index in the segment.
//
// # Writing
//
// Append encodes its records in the caller's goroutine and queues them;
// one goroutine takes everything queued, writes it with one pwrite, syncs
// once and wakes every caller (group commit). A write or sync that fails
// (ENOSPC, EFBIG, EIO) is truncated away before the callers hear of it.
// When that truncate fails too, the segment takes no more entries and the
// next one is created at once: a segment's entries end at the next
// segment's first seq, and Open cuts what follows them (see undo).
//
// The active segment's file runs ahead of its entries: each write that
// passes the end of the file also writes zeros after its entries, up to
// reserveAhead bytes further (never past the roll size, nor past
// Options.MaxBytes for all segments), and fsyncs the file. A write that
// lands inside those zeros changes neither the file's size nor its
// blocks, so fdatasync makes it durable without a journal commit of the
// file system (ext4, xfs): on a busy host that commit waits for the file
// system's journal thread, and took 3 to 10 times as long as the data's
// own sync. Zeros are never an entry (no entry has a length of 0): Open
// drops a tail of zeros without a warning (Stats.Trimmed), and a segment
// is cut back to its entries when it is closed. Open logs a tail of zeros
// at Info with the file and offset: lost entries would look the same.
// Writing zeros ahead that
// fails (ENOSPC, EFBIG) is given up for that segment; the entries are
// written as before.
// Segments roll at Options.SegmentBytes; the directory is fsynced when a
// segment is created or removed. A segment is removed once all its
// entries are acked, after the watermark file says so.
//
// # Replay
//
// Open scans every segment. The first entry that is short (a torn tail),
// fails its CRC or does not decode ends its segment: the rest of the
// segment is truncated away and logged with the file and the byte offset.
// This holds for a segment that is not the last one too: an entry corrupt
// in the middle of a segment cuts every later entry of that segment (the
// length of a corrupt entry cannot be trusted to find the next one), while
// the later segments are kept. An empty segment file whose seqs were
// appended and not acked (a file truncated to zero: only the last segment
// is empty, before its first write) is logged with the count of its lost
// entries. Entries below the persisted watermark are
// acknowledged already and are not returned again; every other entry is
// pending, in seq order, except the entries acked-ranges (or an earlier
// version's acked-above) says Kafka acknowledged (after a clean Close),
// and those under their topic's floor (topic-floors, after a crash too):
// those are acked, and Read skips them. A file of the directory that is
// neither a segment, the watermark, acked-ranges, acked-above nor the lock
// is left alone and logged at Warn
// with its name; so is an entry named like a segment that is not a
// regular file or a link to one (a directory, a pipe). A link named like a
// segment whose target cannot be looked at fails the start. One named like
// the segment created next is left alone too: create skips its seq.
package spool

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
)

// Record is one spooled record: what kproxy would have produced.
type Record struct {
	Topic   string
	Key     []byte // nil: no key (kept distinct from an empty key)
	Value   []byte
	Headers []Header
	// Time is stored as the entry's Appended time (the record's time, for
	// a record that waited before it was appended); zero: the Append's.
	Time time.Time
}

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// Entry is a record read back from the spool.
type Entry struct {
	Seq      uint64    // position in the spool, increasing across segments and restarts
	Appended time.Time // Record.Time as appended, or when it was appended (stored in the entry)
	Record
}

// Options configure a Spool.
type Options struct {
	Dir          string       // created when missing
	MaxBytes     int64        // all segments' bytes; an Append that would pass it fails with ErrFull, nothing written; <= 0: no bound
	SegmentBytes int64        // roll size; default 64 MiB
	Log          *slog.Logger // torn/corrupt tails are logged here (file and byte offset)
}

// ErrFull is Append's error when the records would take the spool past
// Options.MaxBytes.
var ErrFull = errors.New("spool full")

// ErrMaybeAppended is wrapped in an Append's error when the failed write
// could be neither cut from its segment nor closed off by the next one:
// a restart before the spool's next write may replay its records.
var ErrMaybeAppended = errors.New("the failed write could not be cut from the spool; a restart may replay it")

// ErrClosed is the error of Append and Read after Close.
var ErrClosed = errors.New("spool closed")

const (
	defaultSegmentBytes = 64 << 20
	persistEvery        = 100 * time.Millisecond
	reserveAhead        = 1 << 20
	wbufKeep            = 8 << 20 // the largest group buffer kept for the next group (see write)
	metaLogEvery        = 10 * time.Second
	maxGather           = 2 * time.Millisecond
	readArena           = 64 << 10
	lockName            = "lock"
	metaName            = "acked"
	aboveName           = "acked-above" // written by earlier versions; read, then removed
	rangesName          = "acked-ranges"
	floorsName          = "topic-floors"
	floorsTmp           = floorsName + ".tmp" // written, synced, then renamed over floorsName
	metaLen             = 20
	segSuffix           = ".seg"
	segDigits           = 20
	maxSkipped          = 1000 // segment names taken in a row that create skips
)

// fsyncs counts the syncs of group commits, dataSyncs those of them that
// were fdatasyncs inside the zeros written ahead (tests read them).
var fsyncs, dataSyncs atomic.Int64

// Spool is a directory of segments; see the package documentation.
type Spool struct {
	dir  string
	max  int64
	roll int64
	log  *slog.Logger
	lock *dirLock
	meta *os.File

	// Owned by the loop goroutine.
	active    *os.File // the last segment, open for writing; nil: the next commit creates one
	activeSeg *segment
	wbuf      []byte
	lastGroup int           // requests in the last commit
	lastSync  time.Duration // the last write and fsync's time
	// The watermark's failed writes since the last that worked, and when
	// one was logged last (metaFailed); the loop's and Open's.
	metaFails  int
	metaLogged time.Time
	// The active segment's file is on disk (blocks and size, fsynced) up
	// to reserved: its entries, then zeros (see Writing). noReserve: writing
	// zeros ahead failed in this segment, and is not tried again in it.
	reserved   int64
	noReserve  bool
	zeros      []byte
	savedAcked uint64
	savedNext  uint64
	closeErr   error
	unremoved  []*segment // acked segments whose file's removal failed: removeLeft
	uncut      *segment   // closed with a failed write not cut: the next segment created marks its end

	wake chan struct{} // queue or collect set (capacity 1)
	quit chan struct{} // closed by Close
	done chan struct{} // closed when the loop returned

	mu       sync.Mutex
	closed   bool
	queue    []*request
	collect  bool       // some segment is fully acked: the loop removes it
	segs     []*segment // in seq order
	next     uint64     // the seq of the next entry committed
	bytes    int64
	records  int64
	pending  map[string]int
	maybe    map[string]int // per topic, records of writes failed with ErrMaybeAppended, until the next write (Pending)
	topics   []string
	topicIdx map[string]int32
	data     chan struct{} // closed and replaced when entries are committed
	// ackedTop is, per topic (its index in topics), the seq after the
	// highest of its entries acked since Open; diskAcked the watermark on
	// disk; floors the topics' floors on disk (topic-floors: every entry
	// of the topic below its floor is acked). An entry acked at or above
	// both would be replayed after a crash (TopicState).
	ackedTop  []uint64
	diskAcked uint64
	floors    map[string]uint64
	fmu       sync.Mutex // SaveTopic's writes of topic-floors

	appended, acked, replayed, cut int64    // for Stats
	dropped                        int64    // for Stats: entries cut as corrupt by Read and ReadTopic
	trimmed                        int64    // for Stats: zeros ahead dropped by Open
	ahead                          int64    // for Stats: where aheadSeg's file ends, zeros ahead included
	aheadSeg                       *segment // for Stats: the active segment with zeros ahead, or nil

	rmu   sync.Mutex // Read's state below
	rseg  *segment
	rfile *os.File
	roff  int64  // offset in rseg of the entry rseq-rskip
	rseq  uint64 // the next seq Read returns
	rskip uint64 // entries at roff below rseq, to skip
	rbuf  *bufio.Reader
	rtop  string // the last topic decoded, reused

	// Entries acked above the watermark when the spool was closed last
	// (acked-ranges), and the topics' floors then (topic-floors): set by
	// Open, read only after.
	skips      []skipRange
	openFloors map[string]uint64

	tmu  sync.Mutex         // ReadTopic's state below
	tpos map[string]readPos // per topic, where its last ReadTopic stopped
}

type segment struct {
	base  uint64
	path  string
	size  int64 // committed bytes
	ents  []entMeta
	acked int // entries acked
	first int // every entry before it is acked
	// Read cut it at a corrupt entry: the entries from there on are
	// dropped, and no entry is appended to it any more.
	sealed bool
	// Owned by the loop. uncut: a failed write's bytes are in the file
	// after the entries (its cut failed, see undo). marks: the segment
	// before this one, uncut when this one was created: this one's name
	// is where that one's entries end, and its file stays while that one
	// is uncut on disk. removed: the file is gone.
	uncut   bool
	marks   *segment
	removed bool
}

type entMeta struct {
	appended int64
	topic    int32 // index in Spool.topics
	acked    bool
}

type request struct {
	buf      []byte
	topics   []string // one per entry
	times    []int64  // one per entry: its Appended time
	appended int64
	first    uint64
	err      error
	done     chan struct{}
}

// Open takes the directory (an exclusive lock: a second process or Spool
// on the same dir gets an error naming the dir), replays the existing
// segments (every entry past the persisted acked watermark is pending
// again, in order), cuts a torn or corrupt tail with a log line naming the
// file and byte offset (never a crash, never an error for that), and
// returns the spool.
func Open(o Options) (*Spool, error) {
	return OpenContext(context.Background(), o)
}

// OpenContext is Open that gives up when ctx ends (a stop during start-up)
// before it reads the next segment: a large spool takes seconds to read.
// The spool is left as it was — no watermark written, no segment removed,
// nothing cut but what the segments already read had to be — for the next
// Open to read it all.
func OpenContext(ctx context.Context, o Options) (*Spool, error) {
	if o.Dir == "" {
		return nil, errors.New("spool: no directory")
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = defaultSegmentBytes
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := mkdirAll(o.Dir, o.Log); err != nil {
		return nil, err
	}
	if err := CheckDir(o.Dir); err != nil {
		return nil, err
	}
	lock, err := lockDir(o.Dir)
	if err != nil {
		return nil, err
	}
	s := &Spool{
		dir: o.Dir, max: o.MaxBytes, roll: o.SegmentBytes, log: o.Log, lock: lock,
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
		pending: map[string]int{}, topicIdx: map[string]int32{}, data: make(chan struct{}), floors: map[string]uint64{},
		rbuf: bufio.NewReaderSize(nil, 256<<10),
	}
	if err := s.replay(ctx); err != nil {
		for _, f := range []*os.File{s.active, s.meta} {
			if f != nil {
				_ = f.Close()
			}
		}
		_ = s.lock.Close()
		return nil, err
	}
	go s.loop()
	return s, nil
}

// CheckDir tells whether dir can be a spool's directory: a directory this
// process may create files in (an error wrapping fs.ErrNotExist: dir is
// missing, and Open can create it: the nearest directory above it that
// exists is one this process may create entries in). A spool that opened a directory it may
// not write to would refuse every record it has to take later.
func CheckDir(dir string) error {
	if err := config.WritableDir(dir); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// dirLock holds a spool's directory: the directory itself, locked, and
// the lock file in it, locked too (what earlier versions lock alone). The
// file alone was not enough: once it was deleted (an rm, a cleaner of old
// files: it is never written after its creation), another process created
// it again and opened the spool beside the first.
type dirLock struct{ dir, file *os.File }

func (l *dirLock) Close() error {
	err := l.file.Close()
	if l.dir != nil {
		err = errors.Join(err, l.dir.Close())
	}
	return err
}

// lockDir locks dir, or fails naming it. A file system that locks no
// directory (NFS emulates flock with record locks, which need a file
// open for writing) leaves the lock file alone, as before.
func lockDir(dir string) (*dirLock, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = d.Close()
		d = nil
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errInUse(dir)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err == nil {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		if d != nil {
			_ = d.Close()
		}
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errInUse(dir)
		}
		return nil, fmt.Errorf("lock spool %s: %w", dir, err)
	}
	return &dirLock{dir: d, file: f}, nil
}

func errInUse(dir string) error {
	return fmt.Errorf("spool %s: in use by another process or Spool", dir)
}

// replay reads the watermark and scans every segment, unless ctx ends
// first.
func (s *Spool) replay(ctx context.Context) error {
	acked, next, whole, err := s.openMeta()
	if err != nil {
		return err
	}
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if whole {
		s.skips = s.readSkips(acked, next)
	}
	if err := s.readFloors(acked); err != nil {
		return err
	}
	s.openFloors = maps.Clone(s.floors)
	var drop []*segment
	var end uint64     // the seq after the last scanned segment
	var empty *segment // the last scanned segment, when it holds no entry
	// The segments' bases, in order: a segment's entries end at the next
	// one's base at the latest (see undo).
	var bases []uint64
	for _, de := range des {
		if base, ok := segBase(de.Name()); ok && s.isFile(de) {
			bases = append(bases, base)
		}
	}
	for _, de := range des {
		base, ok := segBase(de.Name())
		ok = ok && s.isFile(de) // a directory, a pipe is not a segment, whatever its name
		if ok {
			bases = bases[1:]
		}
		if !ok {
			if name := de.Name(); name != lockName && name != metaName && name != aboveName && name != rangesName && name != floorsName && name != floorsTmp {
				// Not the spool's: junk, or a segment copied in under
				// another name. Left alone, but said.
				s.log.Warn("spool: unknown file in the spool directory, ignored", "file", filepath.Join(s.dir, name))
			}
			continue
		}
		if base < end {
			return fmt.Errorf("spool: segment %s starts at seq %d, inside the previous segment (ends at %d)", de.Name(), base, end)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("spool %s: stopped while reading segment %s: %w", s.dir, de.Name(), context.Cause(ctx))
		}
		cut := s.cut + s.trimmed
		stop := uint64(math.MaxUint64)
		if len(bases) > 0 {
			stop = bases[0]
		}
		g, err := s.scan(filepath.Join(s.dir, de.Name()), base, stop)
		if err != nil {
			return err
		}
		s.lostEmpty(empty, base, acked)
		empty = nil
		if len(g.ents) == 0 && s.cut+s.trimmed == cut { // an empty file (a cut is logged by scan)
			empty = g
		}
		end = g.base + uint64(len(g.ents))
		if len(g.ents) == 0 || end <= acked { // empty or fully acked
			drop = append(drop, g)
			continue
		}
		for i := range g.ents {
			if g.base+uint64(i) < acked {
				g.ents[i].acked = true
				g.acked++
				continue
			}
			if len(s.floors) > 0 && g.base+uint64(i) < s.floors[s.topics[g.ents[i].topic]] {
				g.ents[i].acked = true
				g.acked++
				continue
			}
			if s.skipped(g.base + uint64(i)) {
				// Acked, but only for as long as the watermark on disk is
				// the one acked-ranges was written with: unsaved, as an
				// ack of this run's (TopicState).
				g.ents[i].acked = true
				g.acked++
				s.raiseAckedTop(g.ents[i].topic, g.base+uint64(i)+1)
				continue
			}
			s.pending[s.topics[g.ents[i].topic]]++
			s.records++
		}
		if g.acked == len(g.ents) {
			s.collect = true // acked above the watermark: the loop removes it
		}
		s.segs = append(s.segs, g)
		s.bytes += g.size
	}
	s.next = max(acked, next, end)
	s.lostEmpty(empty, s.next, acked)
	for _, f := range s.floors {
		s.next = max(s.next, f) // no seq below a floor is another entry's
	}
	s.replayed = s.records
	s.rseq = acked
	s.savedAcked, s.savedNext, s.diskAcked = acked, next, acked
	if !whole {
		// Written now, while there is room: later writes of the
		// watermark overwrite its bytes and need no new block. Its first
		// write on a disk the segments filled would fail, and no acked
		// segment could be removed to give the space back. A disk full
		// already does not stop the start (kproxy serves Kafka directly
		// meanwhile): the write is tried again with the first ack.
		if err := s.writeMeta(acked, s.next); err != nil {
			s.log.Warn("spool: watermark not written at start; written with the first ack", "file", filepath.Join(s.dir, metaName), "err", err)
		}
	}
	for _, g := range drop {
		if err := os.Remove(g.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			if len(g.ents) == 0 && g.base == s.next {
				// Empty, and named for the next seq: the next entries
				// go into it (create could not make it again).
				s.segs = append(s.segs, g)
				continue
			}
			// As while running (removeAcked): the spool works without
			// removing it; its bytes count until its file is gone.
			s.log.Warn("spool: remove acked segment; retried every 100 ms", "file", g.path, "err", err)
			s.unremoved = append(s.unremoved, g)
			s.bytes += g.size
		}
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	if n := len(s.segs); n > 0 && s.segs[n-1].base+uint64(len(s.segs[n-1].ents)) == s.next {
		g := s.segs[n-1]
		if s.active, err = os.OpenFile(g.path, os.O_WRONLY, 0); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.activeSeg = g
	}
	return nil
}

// isFile tells whether de, an entry of the spool directory, is a regular
// file, or a symbolic link to one: what a segment can be. A directory, a
// pipe or a link to one is not the spool's, whatever its name. A link
// whose target cannot be looked at (gone, or on a disk not mounted) is
// taken for a segment, which fails the start naming it: left out, its
// entries would not be replayed while the watermark passed their seqs,
// and they would be dropped as acked once the target is back.
func (s *Spool) isFile(de fs.DirEntry) bool {
	if de.Type().IsRegular() {
		return true
	}
	if de.Type()&fs.ModeSymlink == 0 {
		return false
	}
	fi, err := os.Stat(filepath.Join(s.dir, de.Name()))
	return err != nil || fi.Mode().IsRegular()
}

// lostEmpty logs g, a segment that holds no entry, when seqs from its base
// up to after (the next segment's base, or the next seq) were appended and
// not all acked: only the last segment is ever empty, before its first
// write, so g's entries were lost (a file truncated to zero). nil: nothing.
func (s *Spool) lostEmpty(g *segment, after, acked uint64) {
	if g == nil || after <= max(g.base, acked) {
		return
	}
	s.log.Warn("spool: segment lost its entries (empty file)", "file", g.path, "offset", 0,
		"first_seq", max(g.base, acked), "entries", after-max(g.base, acked))
}

// openMeta opens the watermark file, creating it when missing. An
// unreadable one is logged and read as 0, 0: every entry is replayed.
// whole: the file holds a watermark (not new, not unreadable).
func (s *Spool) openMeta() (acked, next uint64, whole bool, err error) {
	path := filepath.Join(s.dir, metaName)
	if s.meta, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return 0, 0, false, fmt.Errorf("spool: %w", err)
	}
	var b [metaLen]byte
	n, err := s.meta.ReadAt(b[:], 0)
	switch {
	case n == 0 && err == io.EOF:
		return 0, 0, false, nil
	case n == metaLen && crc32.Checksum(b[:16], castagnoli) == binary.LittleEndian.Uint32(b[16:]):
		return binary.LittleEndian.Uint64(b[:]), binary.LittleEndian.Uint64(b[8:]), true, nil
	case err != nil && err != io.EOF:
		return 0, 0, false, fmt.Errorf("spool: read %s: %w", path, err)
	}
	s.log.Warn("spool watermark unreadable, replaying every entry", "file", path, "bytes", n)
	return 0, 0, false, nil
}

func (s *Spool) writeMeta(acked, next uint64) error {
	var b [metaLen]byte
	binary.LittleEndian.PutUint64(b[:], acked)
	binary.LittleEndian.PutUint64(b[8:], next)
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	if e := metaFault.Load(); e != nil {
		return fmt.Errorf("spool: write watermark: %w", *e)
	}
	if _, err := s.meta.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("spool: write watermark: %w", err)
	}
	if err := s.meta.Sync(); err != nil {
		return fmt.Errorf("spool: sync watermark: %w", err)
	}
	s.savedAcked, s.savedNext = acked, next
	if s.metaFails > 0 {
		s.log.Info("spool: watermark written again", "failures", s.metaFails)
		s.metaFails = 0
	}
	s.mu.Lock()
	s.diskAcked = acked
	s.mu.Unlock()
	return nil
}

// skipRange is the entries of one segment, from seq base on, of which
// bits tells (1: acked) those acked above the watermark at the last Close.
type skipRange struct {
	base uint64
	n    uint64 // entries the bits cover
	bits []byte
}

// skipped tells whether seq was acked above the watermark when the spool
// was closed last (acked-ranges).
func (s *Spool) skipped(seq uint64) bool {
	i, _ := slices.BinarySearchFunc(s.skips, seq, func(r skipRange, seq uint64) int {
		switch {
		case r.base+r.n <= seq:
			return -1
		case r.base > seq:
			return 1
		}
		return 0
	})
	if i == len(s.skips) || s.skips[i].base > seq || seq-s.skips[i].base >= s.skips[i].n {
		return false
	}
	k := seq - s.skips[i].base
	return s.skips[i].bits[k/8]&(1<<(k%8)) != 0
}

// readSkips reads acked-ranges, or an earlier version's acked-above when
// it is missing or was written with another watermark: the entries acked
// above the watermark, nil when the file
// is missing, unreadable or not written with this watermark (acked,
// next): its seqs may then be another run's.
func (s *Spool) readSkips(acked, next uint64) []skipRange {
	b, path := s.readWithWatermark(rangesName, acked, next)
	if b == nil {
		// Missing, or stale: an earlier version, run since (it ignores
		// acked-ranges), may have written acked-above at its stop.
		b, _ = s.readWithWatermark(aboveName, acked, next)
		if len(b) == 0 {
			return nil
		}
		return []skipRange{{base: acked, n: uint64(len(b)) * 8, bits: b}}
	}
	var skips []skipRange
	for len(b) > 0 {
		if len(b) < 12 {
			s.log.Warn("spool: entries acked above the watermark unreadable; they are replayed", "file", path, "err", "a range cut short")
			return nil
		}
		r := skipRange{base: binary.LittleEndian.Uint64(b), n: uint64(binary.LittleEndian.Uint32(b[8:]))}
		size := int((r.n + 7) / 8)
		if len(b)-12 < size || len(skips) > 0 && r.base < skips[len(skips)-1].base+skips[len(skips)-1].n {
			s.log.Warn("spool: entries acked above the watermark unreadable; they are replayed", "file", path, "err", "ranges out of order or cut short")
			return nil
		}
		r.bits = b[12 : 12+size]
		skips = append(skips, r)
		b = b[12+size:]
	}
	return skips
}

// readWithWatermark reads the file name of the spool's directory written
// with the watermark acked, next (16 bytes of them, a body, a CRC32C of
// both): its body, or nil when it is missing (path "") or unreadable or
// written with another watermark (path set).
func (s *Spool) readWithWatermark(name string, acked, next uint64) (body []byte, path string) {
	path = filepath.Join(s.dir, name)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, ""
	case err != nil:
		s.log.Warn("spool: entries acked above the watermark unreadable; they are replayed", "file", path, "err", err)
		return nil, path
	case len(b) < 20 || crc32.Checksum(b[:len(b)-4], castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]):
		s.log.Warn("spool: entries acked above the watermark unreadable; they are replayed", "file", path, "bytes", len(b))
		return nil, path
	case binary.LittleEndian.Uint64(b) != acked || binary.LittleEndian.Uint64(b[8:]) != next:
		return nil, path // written before the watermark moved: Close writes it again
	}
	return b[16 : len(b)-4], path
}

// saveAbove writes acked-ranges at Close: which entries above the
// watermark are acked, so that the next Open does not replay them (Kafka
// acknowledged them after an older entry it has not: another topic's, or
// another partition's), for each segment still on disk that holds one:
// its size follows the entries on disk, not the seqs since the oldest
// entry not acked. The watermark is written first with the spool's next
// seq, which the file names, so that Open takes it only while no seq of it
// can be another entry's. Without entries acked there, the file goes. An
// earlier version's acked-above goes in any case.
func (s *Spool) saveAbove() {
	s.mu.Lock()
	acked, next := s.watermark(), s.next
	var out []byte
	// The acked segments whose file's removal failed (unremoved) are no
	// longer in segs, but their files are: the next Open reads them.
	gs := slices.Concat(s.segs, s.unremoved)
	slices.SortFunc(gs, func(a, b *segment) int { return cmp.Compare(a.base, b.base) })
	for _, g := range gs {
		var bits []byte
		for k := range g.ents {
			if q := g.base + uint64(k); q >= acked && g.ents[k].acked {
				if bits == nil {
					if out == nil {
						out = make([]byte, 16, 64)
					}
					out = binary.LittleEndian.AppendUint64(out, g.base)
					out = binary.LittleEndian.AppendUint32(out, uint32(len(g.ents)))
					at := len(out)
					out = append(out, make([]byte, (len(g.ents)+7)/8)...)
					bits = out[at:]
				}
				bits[k/8] |= 1 << (k % 8)
			}
		}
	}
	s.mu.Unlock()
	if acked != s.savedAcked || next != s.savedNext {
		if err := s.writeMeta(acked, next); err != nil {
			s.log.Warn("spool: watermark not written at close", "err", err)
			return
		}
	}
	// The directory is synced after the file is written or removed: the
	// file's own sync does not make its name durable. A power loss before
	// costs duplicates only: a file lost lists nothing, and one removed
	// that comes back lists only entries acked, or seqs of no segment.
	removed := false
	for _, name := range []string{aboveName, rangesName} {
		if name == rangesName && out != nil {
			continue
		}
		path := filepath.Join(s.dir, name)
		err := os.Remove(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			s.log.Warn("spool: remove the entries acked above the watermark", "file", path, "err", err)
			continue
		}
		removed = true
	}
	if out == nil {
		if removed {
			if err := syncDir(s.dir); err != nil {
				s.log.Warn("spool: remove the entries acked above the watermark", "dir", s.dir, "err", err)
			}
		}
		return
	}
	path := filepath.Join(s.dir, rangesName)
	binary.LittleEndian.PutUint64(out, acked)
	binary.LittleEndian.PutUint64(out[8:], next)
	out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, castagnoli))
	err := writeSynced(path, out)
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		s.log.Warn("spool: entries acked above the watermark not written; the next start writes them to Kafka again", "file", path, "err", err)
	}
}

// writeSynced writes b to the file at path, replacing it, and syncs it.
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

func segBase(name string) (uint64, bool) {
	num, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(num) != segDigits {
		return 0, false
	}
	base, err := strconv.ParseUint(num, 10, 64)
	return base, err == nil
}

func segName(base uint64) string {
	return fmt.Sprintf("%0*d%s", segDigits, base, segSuffix)
}

// scan reads a segment's entries and cuts it at the first bad one, or at
// seq stop (the next segment's base: entries from there on are a failed
// write whose cut failed, see undo).
func (s *Spool) scan(path string, base, stop uint64) (*segment, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	g := &segment{base: base, path: path}
	size := fi.Size()
	br := bufio.NewReaderSize(f, 1<<20)
	var buf []byte
	for g.size < size {
		if g.base+uint64(len(g.ents)) >= stop {
			if zeros, err := zeroTail(f, g.size, size); err == nil && zeros {
				stop = math.MaxUint64 // zeros written ahead: dropped below
				continue
			}
			s.log.Warn("spool: cut entries past the next segment's first seq (a failed write whose cut failed)", "file", path, "offset", g.size, "cut_bytes", size-g.size, "next_seq", stop)
			if err := cutAt(f, path, g.size); err != nil {
				return nil, err
			}
			s.cut += size - g.size
			break
		}
		p, n, err := readEntry(br, buf, size-g.size)
		if err == nil {
			buf = p
			var d payload
			if d, err = decodePayload(p); err == nil {
				g.ents = append(g.ents, entMeta{appended: d.appended, topic: intern(s, d.topic)})
				g.size += n
				continue
			}
		}
		if !errors.Is(err, errCorrupt) {
			return nil, fmt.Errorf("spool: read %s at offset %d: %w", path, g.size, err)
		}
		zeros, zerr := zeroTail(f, g.size, size)
		if zerr != nil {
			return nil, fmt.Errorf("spool: read %s at offset %d: %w", path, g.size, zerr)
		}
		if zeros {
			// Written ahead of the entries (see Writing) and left by a
			// stop without Close. Not data — unless the disk lost entries
			// it said were synced, which looks the same: said, with the
			// place, at the normal level.
			s.log.Info("spool: dropped the zeros after the last entry (written ahead of the entries, left by a stop without close)", "file", path, "offset", g.size, "bytes", size-g.size)
		} else {
			s.log.Warn("spool: cut torn or corrupt tail", "file", path, "offset", g.size, "cut_bytes", size-g.size, "reason", err)
		}
		if err := cutAt(f, path, g.size); err != nil {
			return nil, err
		}
		if zeros {
			s.trimmed += size - g.size
		} else {
			s.cut += size - g.size
		}
		break
	}
	return g, nil
}

// cutAt truncates f (at path) to off, synced.
func cutAt(f *os.File, path string, off int64) error {
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("spool: cut %s at offset %d: %w", path, off, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("spool: cut %s at offset %d: %w", path, off, err)
	}
	return nil
}

// zeroTail tells whether f holds only zero bytes from off to size.
func zeroTail(f *os.File, off, size int64) (bool, error) {
	buf := make([]byte, 64<<10)
	for off < size {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		for _, b := range buf[:n] {
			if b != 0 {
				return false, nil
			}
		}
		off += int64(n)
		if err != nil && !(err == io.EOF && off >= size) {
			return false, err
		}
	}
	return true, nil
}

// intern returns topic's index in s.topics, adding it when new.
func intern[T string | []byte](s *Spool, topic T) int32 {
	if i, ok := s.topicIdx[string(topic)]; ok {
		return i
	}
	i := int32(len(s.topics))
	s.topics = append(s.topics, string(topic))
	s.topicIdx[string(topic)] = i
	return i
}

// mkdirAll creates dir and the directories above it that are missing,
// then syncs every directory above dir on its file system, up to that
// file system's root: a new directory's entry is on disk only once the
// directory holding it is synced, and without that a power loss soon
// after the first start could take the whole spool away, records answered
// 202 with it. Every Open syncs them, not only the one that created them:
// a first start that failed or was killed after creating them leaves them
// to the next. A sync that fails (a directory this process may search but
// not read, a file system without directory syncs) is logged, not an
// error: a start that worked before must still.
func mkdirAll(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err == nil {
		real, err = filepath.Abs(real)
	}
	var st unix.Stat_t
	if err == nil {
		err = unix.Stat(real, &st)
	}
	if err != nil {
		return fmt.Errorf("spool: %s: %w", dir, err)
	}
	for p := filepath.Dir(real); ; p = filepath.Dir(p) {
		var ps unix.Stat_t
		if unix.Stat(p, &ps) != nil || ps.Dev != st.Dev {
			return nil // above the spool's file system: it holds none of its entries
		}
		if err := syncDir(p); err != nil {
			log.Warn("spool: cannot sync a directory above spool_dir: a new directory's entry may not survive a power loss until the system writes it", "dir", p, "err", err)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// dirSynced, when set (by tests), is told each directory synced.
var dirSynced func(dir string)

// errSealed is what undo is told when a segment Read sealed takes back a
// chunk written to it, to be written again in the next segment.
var errSealed = errors.New("spool: segment sealed by a read")

// written, set by tests, is called after a group commit's write and sync,
// before its entries are published.
var written func(s *Spool)

// metaFault, set by tests, fails every write of the watermark with its
// error: a disk that refuses the file's block (EIO).
var metaFault atomic.Pointer[error]

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: sync dir %s: %w", dir, err)
	}
	if dirSynced != nil {
		dirSynced(dir)
	}
	return nil
}

// Append writes recs as consecutive entries and returns when they are on
// disk (fsync; concurrent Append calls are grouped so that one fsync covers
// many). All-or-nothing: on any error (ErrFull, ENOSPC/EFBIG, I/O) none of
// recs is in the spool and no partial entry is left on disk. Returns the
// first Seq.
func (s *Spool) Append(recs []Record) (first uint64, err error) {
	if len(recs) == 0 {
		return 0, errors.New("spool: append of no records")
	}
	size := 0
	for i := range recs {
		size += maxEntryLen(&recs[i])
	}
	r := &request{
		buf: make([]byte, 0, size), appended: time.Now().UnixNano(),
		topics: make([]string, len(recs)), times: make([]int64, len(recs)), done: make(chan struct{}),
	}
	for i := range recs {
		start := len(r.buf)
		r.times[i] = r.appended
		if !recs[i].Time.IsZero() {
			r.times[i] = recs[i].Time.UnixNano()
		}
		r.buf = appendEntry(r.buf, &recs[i], r.times[i])
		if len(r.buf)-start-headerLen > maxPayload {
			return 0, fmt.Errorf("spool: record of %d bytes too large", len(r.buf)-start)
		}
		r.topics[i] = recs[i].Topic
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, ErrClosed
	}
	s.queue = append(s.queue, r)
	s.mu.Unlock()
	s.signal()
	<-r.done
	return r.first, r.err
}

func (s *Spool) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// loop is the one goroutine that writes: it commits what Append queued,
// removes fully acked segments and persists the watermark.
func (s *Spool) loop() {
	defer close(s.done)
	tick := time.NewTicker(persistEvery)
	defer tick.Stop()
	fill := time.NewTimer(0)
	defer fill.Stop()
	for {
		quit, ticked := false, false
		select {
		case <-s.wake:
		case <-tick.C:
			ticked = true
		case <-s.quit:
			quit = true
		}
		if !quit {
			s.gather(fill)
		}
		s.mu.Lock()
		reqs, collect := s.queue, s.collect
		s.queue, s.collect = nil, false
		s.mu.Unlock()
		if len(reqs) > 0 {
			s.lastGroup = len(reqs)
		}
		if collect {
			s.removeAcked() // first: it may make room for reqs
		}
		s.commit(reqs)
		if ticked || quit {
			s.persist()
			s.removeLeft()
		}
		if ticked && s.active == nil && len(s.maybe) > 0 {
			// Not waiting for the next write: Pending counts the
			// failed write's records until then.
			_ = s.activate()
		}
		if quit {
			// Close: Append refuses new records since closed was set, and
			// the queue is empty now. Save the acks above the watermark,
			// close the files the loop owns.
			s.saveAbove()
			if s.active != nil {
				s.trimAhead()
				s.closeErr = s.active.Close()
			}
			s.closeErr = errors.Join(s.closeErr, s.meta.Close())
			return
		}
	}
}

// gather lets the queue fill up to the size of the last group, waiting at
// most half the last write and fsync's time. Without it, callers woken by a
// commit come back while the loop is already in the next fsync with the few
// that were queued, and groups alternate between many and few.
func (s *Spool) gather(fill *time.Timer) {
	fill.Reset(min(s.lastSync/2, maxGather))
	defer fill.Stop()
	for {
		s.mu.Lock()
		n := len(s.queue)
		s.mu.Unlock()
		if n == 0 || n >= s.lastGroup {
			return
		}
		select {
		case <-s.wake:
		case <-fill.C:
			return
		case <-s.quit:
			return
		}
	}
}

// commit writes reqs, each whole into one segment, rolling before a request
// that would pass the roll size.
func (s *Spool) commit(reqs []*request) {
	var chunk []*request
	var chunkBytes int64
	for _, r := range reqs {
		n := int64(len(r.buf))
		if s.max > 0 && s.bytes+chunkBytes+n > s.max {
			r.err = ErrFull
			close(r.done)
			continue
		}
		if s.activeSeg != nil && s.activeSeg.size+chunkBytes > 0 && s.activeSeg.size+chunkBytes+n > s.roll {
			s.flush(chunk)
			chunk, chunkBytes = nil, 0
			// Roll only a segment holding entries. A new segment whose
			// first write failed (ENOSPC, EFBIG) is empty: closed, its
			// file would keep the name (its base, s.next) the next
			// segment needs, and every later create would fail.
			// (activeSeg is nil when flush could not create one.)
			if s.activeSeg != nil && s.activeSeg.size > 0 {
				s.closeActive()
			}
		}
		chunk = append(chunk, r)
		chunkBytes += n
	}
	s.flush(chunk)
}

// flush writes chunk to the active segment, fsyncs, publishes the entries
// and wakes the callers.
func (s *Spool) flush(chunk []*request) {
	if len(chunk) == 0 {
		return
	}
	err := s.write(chunk)
	if written != nil && err == nil {
		written(s)
	}
	var left *segment // a sealed segment that may keep a copy of the chunk
	for err == nil && !s.publish(chunk) {
		// Read sealed the segment while the chunk was written: take the
		// bytes back, write them to a new segment (never sealed: unread).
		g := s.activeSeg
		if errors.Is(s.undo(errSealed), ErrMaybeAppended) {
			// Neither cut nor marked: a restart replays that copy
			// unless a later segment marks where g's entries end.
			left = g
		}
		if s.active != nil && s.activeSeg == g { // undo did not close it
			s.closeActive()
		}
		err = s.write(chunk)
	}
	// Still unmarked (a segment created since marks it, and a cut
	// retried since takes the copy out: either clears s.uncut).
	if left != nil && s.uncut == left && err != nil && !errors.Is(err, ErrMaybeAppended) {
		err = fmt.Errorf("%w: %w", ErrMaybeAppended, err)
	}
	if errors.Is(err, ErrMaybeAppended) {
		s.mu.Lock()
		if s.maybe == nil {
			s.maybe = map[string]int{}
		}
		for _, r := range chunk {
			for _, t := range r.topics {
				s.maybe[t]++
			}
		}
		s.mu.Unlock()
	}
	for _, r := range chunk {
		r.err = err
		close(r.done)
	}
}

func (s *Spool) write(chunk []*request) error {
	if s.active != nil {
		s.mu.Lock()
		sealed := s.activeSeg.sealed
		s.mu.Unlock()
		if sealed {
			s.closeActive()
		}
	}
	if s.active == nil {
		if err := s.activate(); err != nil {
			return err
		}
	}
	// One request's entries are written from its own buffer; a group's are
	// gathered into s.wbuf, kept for the next group up to wbufKeep: a
	// group larger than that (a group can reach the roll size, 64 MiB) is
	// gathered into a buffer of its own size, let go after, or a burst of
	// large batches would keep its memory for the life of the process.
	buf := chunk[0].buf
	if len(chunk) > 1 {
		total := 0
		for _, r := range chunk {
			total += len(r.buf)
		}
		switch {
		case total > wbufKeep:
			buf = make([]byte, 0, total)
		case cap(s.wbuf) < total:
			buf = make([]byte, 0, min(wbufKeep, max(total, 2*cap(s.wbuf))))
		default:
			buf = s.wbuf[:0]
		}
		for _, r := range chunk {
			buf = append(buf, r.buf...)
		}
		if total <= wbufKeep {
			s.wbuf = buf
		}
	}
	g := s.activeSeg
	start := time.Now()
	defer func() { s.lastSync = time.Since(start) }()
	if _, err := s.active.WriteAt(buf, g.size); err != nil {
		return s.undo(fmt.Errorf("spool: write %s: %w", g.path, err))
	}
	fsyncs.Add(1)
	end := g.size + int64(len(buf))
	if end <= s.reserved {
		// The file's blocks and size are on disk past these entries
		// already: their bytes are all there is to sync.
		dataSyncs.Add(1)
		if err := fdatasync(s.active); err != nil {
			return s.undo(fmt.Errorf("spool: sync %s: %w", g.path, err))
		}
		return nil
	}
	ahead := s.writeAhead(end)
	if err := s.active.Sync(); err != nil {
		if ahead > end {
			// A file system that reports a full disk at the sync (NFS,
			// thin provisioning): the next writes go without zeros.
			s.noReserve = true
		}
		return s.undo(fmt.Errorf("spool: sync %s: %w", g.path, err))
	}
	s.reserved = ahead
	s.mu.Lock()
	s.ahead, s.aheadSeg = ahead, g
	s.mu.Unlock()
	return nil
}

// writeAhead writes zeros after the entries ending at end (see Writing)
// and returns where the file ends: up to reserveAhead further, not past
// the roll size nor Options.MaxBytes. When that fails, the file is cut back
// to end, and no zeros are written ahead in this segment any more.
func (s *Spool) writeAhead(end int64) int64 {
	to := min(end+reserveAhead, max(end, s.roll))
	if s.max > 0 {
		// All segments' bytes once this write is published, zeros included.
		to = min(to, end+s.max-s.bytes-(end-s.activeSeg.size))
	}
	if s.noReserve || to <= end {
		return end
	}
	if s.zeros == nil {
		s.zeros = make([]byte, reserveAhead)
	}
	if _, err := s.active.WriteAt(s.zeros[:to-end], end); err != nil {
		s.noReserve = true
		s.log.Warn("spool: cannot write ahead of the entries; this segment's writes are fsynced one by one", "file", s.activeSeg.path, "err", err)
		if terr := s.active.Truncate(end); terr != nil {
			// Zeros after the entries are not data: Open drops them.
			s.log.Warn("spool: cannot cut the zeros written ahead", "file", s.activeSeg.path, "err", terr)
		}
		return end
	}
	return to
}

// fdatasync syncs f's data (and the size, when it changed), retrying on
// EINTR as os.File.Sync does.
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return os.NewSyscallError("fdatasync", err)
			}
			return nil
		}
	}
}

// trimAhead cuts the active segment's file back to its entries (after a
// failed writeAhead whose cut failed too, zeros may be there though none
// are counted).
func (s *Spool) trimAhead() {
	if s.reserved > s.activeSeg.size || s.noReserve {
		if err := s.active.Truncate(s.activeSeg.size); err != nil {
			// Zeros after the entries are not data: Open drops them.
			s.log.Warn("spool: cannot cut the zeros written ahead", "file", s.activeSeg.path, "err", err)
		}
	}
	s.reserved, s.noReserve = 0, false
	s.mu.Lock()
	s.ahead, s.aheadSeg = 0, nil
	s.mu.Unlock()
}

// undo truncates the active segment back to its committed size after a
// failed write or fsync, and returns err. When the cut fails (or its
// sync), the failed write's bytes stay in the file, and a restart would
// find its whole entries there, answered as not written: the segment is
// closed (nothing is appended after them) and the next one is created at
// once, at the next seq. Its name, synced in the directory, is where the
// closed segment's entries end: Open cuts that segment there. The new
// segment's file is not removed while the closed one's is there uncut
// (see unmarked). Should that fail too, err also wraps ErrMaybeAppended.
func (s *Spool) undo(err error) error {
	g := s.activeSeg
	cerr := s.active.Truncate(g.size)
	if cerr == nil {
		// The cut is on disk only once synced: a power loss before the
		// next write's sync could bring back whole entries of the failed
		// write, answered as not written, and the drain would send them.
		cerr = s.active.Sync()
	}
	// Nothing past the entries is known to be on disk now: the next write
	// fsyncs the file's size too.
	s.reserved = g.size
	s.mu.Lock()
	s.ahead, s.aheadSeg = 0, nil
	s.mu.Unlock()
	if cerr == nil {
		return err
	}
	s.log.Error("spool: cannot cut a failed write; its segment takes no more entries", "file", g.path, "offset", g.size, "err", cerr)
	s.noReserve = false // nothing of the zeros is counted: closeActive cuts nothing
	s.closeActive()
	g.uncut, s.uncut = true, g
	if len(g.ents) == 0 && !s.unmarked(g) {
		// It marks where the segment before it ends, whose failed write
		// could not be cut either: it stays, and so does the failed write
		// in it (ErrMaybeAppended); the next write cuts it first (see
		// reopen), or fails.
		cerr = errors.New("it marks where the segment before it ends")
	} else if len(g.ents) == 0 {
		// Its name is the next seq's: the file goes instead, and the
		// next write creates the segment again (durable once the
		// directory is synced).
		if cerr = os.Remove(g.path); cerr == nil {
			g.removed, s.uncut = true, nil
			s.mu.Lock()
			s.segs = slices.DeleteFunc(s.segs, func(x *segment) bool { return x == g })
			s.mu.Unlock()
			if cerr = syncDir(s.dir); cerr == nil {
				return err
			}
		}
	} else if cerr = s.create(); cerr == nil {
		return err
	}
	s.log.Error("spool: cannot mark where a failed write's segment ends; a restart may replay the failed write", "file", g.path, "offset", g.size, "err", cerr)
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrMaybeAppended, err)
}

// recut cuts g's file back to its entries after a failed write whose cut
// failed (see undo), and tells whether g's file holds no failed write now.
func (s *Spool) recut(g *segment) bool {
	if g.removed || !g.uncut {
		return true
	}
	f, err := os.OpenFile(g.path, os.O_WRONLY, 0)
	if err != nil {
		return false
	}
	err = cutAt(f, g.path, g.size)
	_ = f.Close()
	if err != nil {
		return false
	}
	g.uncut = false
	s.log.Info("spool: cut a failed write", "file", g.path, "offset", g.size)
	return true
}

// unmarked tells whether g's file may go: g does not mark where the
// segment before it ends (see undo), or that segment's failed write is cut
// now, or its file is gone (the removal synced first: a restart must not
// find it without g).
func (s *Spool) unmarked(g *segment) bool {
	if g.marks == nil {
		return true
	}
	if g.marks.removed {
		if syncDir(s.dir) != nil {
			return false
		}
	} else if !s.recut(g.marks) {
		return false
	}
	g.marks = nil
	return true
}

// activate makes a segment the active one: the last one again (reopen),
// else a new one. A failed write answered maybe appended left no active
// segment: reopen cut it from its segment, or create synced the name that
// marks where its segment ends. No restart replays it now (see Pending).
func (s *Spool) activate() error {
	if ok, err := s.reopen(); err != nil {
		return err
	} else if !ok {
		if err := s.create(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	clear(s.maybe)
	s.mu.Unlock()
	return nil
}

// reopen makes the last segment the active one again when it is empty and
// named for the next seq: kept after a failed write whose cut failed,
// since it marks where the segment before it ends (see undo). The failed
// write is cut first. False: no such segment.
func (s *Spool) reopen() (bool, error) {
	s.mu.Lock()
	var g *segment
	if n := len(s.segs); n > 0 && len(s.segs[n-1].ents) == 0 && s.segs[n-1].base == s.next {
		g = s.segs[n-1]
	}
	s.mu.Unlock()
	if g == nil {
		return false, nil
	}
	if !s.recut(g) {
		return true, fmt.Errorf("spool: segment %s holds a failed write that cannot be cut", g.path)
	}
	f, err := os.OpenFile(g.path, os.O_WRONLY, 0)
	if err != nil {
		return true, fmt.Errorf("spool: %w", err)
	}
	s.active, s.activeSeg = f, g
	s.reserved, s.noReserve = 0, false
	return true, nil
}

// create starts a new segment whose first seq is s.next. A name taken by
// an entry that is not the spool's (a directory an operator made: the
// spool's own segments are all below s.next) is left alone and its seq
// skipped — never while the new segment must mark where a failed write's
// segment ends (see undo) and that write cannot be cut: a later name
// would keep the failed write's first entries at a restart.
func (s *Spool) create() error {
	path := filepath.Join(s.dir, segName(s.next))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	for skipped := 0; errors.Is(err, fs.ErrExist) && skipped < maxSkipped; skipped++ {
		if s.uncut != nil {
			if !s.recut(s.uncut) {
				break
			}
			s.uncut = nil // no failed write left to mark
		}
		s.log.Warn("spool: a segment's name is taken by a file that is not the spool's; left alone, its seq skipped", "file", path)
		s.mu.Lock()
		s.next++
		s.mu.Unlock()
		path = filepath.Join(s.dir, segName(s.next))
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	}
	if err != nil {
		return fmt.Errorf("spool: create segment: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return err
	}
	// After a failed write whose cut failed, this segment's name is where
	// that write's segment ends, even when created by a later write.
	g := &segment{base: s.next, path: path, marks: s.uncut}
	s.uncut = nil
	s.mu.Lock()
	s.segs = append(s.segs, g)
	s.mu.Unlock()
	s.active, s.activeSeg = f, g
	s.reserved, s.noReserve = 0, false
	return nil
}

// closeActive closes the active segment: the next write creates one.
func (s *Spool) closeActive() {
	s.trimAhead()
	if err := s.active.Close(); err != nil {
		s.log.Warn("spool: close segment", "file", s.activeSeg.path, "err", err)
	}
	s.active, s.activeSeg = nil, nil
}

// publish makes the written chunk visible: seqs, counts, Read. False,
// nothing done: the active segment is sealed.
func (s *Spool) publish(chunk []*request) bool {
	g := s.activeSeg
	s.mu.Lock()
	defer s.mu.Unlock()
	if g.sealed {
		return false
	}
	// A run of entries of one topic looks it up once.
	var last string
	var idx int32
	run := 0
	for _, r := range chunk {
		r.first = s.next
		for i, t := range r.topics {
			if run == 0 || t != last {
				if run > 0 {
					s.pending[last] += run
				}
				last, idx, run = t, intern(s, t), 0
			}
			g.ents = append(g.ents, entMeta{appended: r.times[i], topic: idx})
			run++
		}
		n := int64(len(r.topics))
		s.next += uint64(n)
		s.records += n
		s.appended += n
		g.size += int64(len(r.buf))
		s.bytes += int64(len(r.buf))
	}
	if run > 0 {
		s.pending[last] += run
	}
	close(s.data)
	s.data = make(chan struct{})
	return true
}

// removeAcked removes the segments whose entries are all acked, after
// persisting the watermark (and the next seq, so that seqs keep
// increasing when the last segment goes).
func (s *Spool) removeAcked() {
	s.mu.Lock()
	var gone []*segment
	for _, g := range s.segs {
		if len(g.ents) > 0 && g.acked == len(g.ents) {
			gone = append(gone, g)
		}
	}
	acked, next := s.watermark(), s.next
	s.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	if err := s.writeMeta(acked, next); err != nil {
		s.metaFailed(err)
		s.mu.Lock()
		s.collect = true // retried at the next tick
		s.mu.Unlock()
		return
	}
	// Only the segments in gone: one fully acked while the watermark was
	// written is not covered by it (and may be the active segment, which
	// must stay in segs while it takes entries). The next collect takes it.
	s.mu.Lock()
	keep, i := s.segs[:0], 0
	for _, g := range s.segs {
		if i < len(gone) && g == gone[i] { // both in seq order
			if g == s.aheadSeg { // its zeros go with it (closeActive below)
				s.ahead, s.aheadSeg = 0, nil
			}
			i++
			continue
		}
		keep = append(keep, g)
	}
	clear(s.segs[len(keep):])
	s.segs = keep
	if len(s.segs) == 0 {
		s.forgetTopicsLocked()
	}
	s.mu.Unlock()
	// A segment's bytes count (Stats.Bytes, MaxBytes) until its file is
	// gone: one the directory refuses to remove still takes them on disk.
	for _, g := range gone {
		if g == s.activeSeg {
			s.closeActive()
		}
		if !s.unmarked(g) {
			s.log.Warn("spool: keep acked segment while the failed write before it cannot be cut; retried every 100 ms", "file", g.path, "marks", g.marks.path)
			s.unremoved = append(s.unremoved, g)
			continue
		}
		if err := os.Remove(g.path); err != nil {
			s.log.Warn("spool: remove acked segment; retried every 100 ms", "file", g.path, "err", err)
			s.unremoved = append(s.unremoved, g)
			continue
		}
		g.removed = true
		s.mu.Lock()
		s.bytes -= g.size
		s.mu.Unlock()
	}
	if err := syncDir(s.dir); err != nil {
		s.log.Warn("spool: remove acked segments", "err", err)
	}
}

// removeLeft removes again the files of acked segments whose removal
// failed (the directory refused it): their space is given back once it
// can be, not at the next start.
func (s *Spool) removeLeft() {
	if len(s.unremoved) == 0 {
		return
	}
	left := s.unremoved[:0]
	for _, g := range s.unremoved {
		if !s.unmarked(g) {
			left = append(left, g)
			continue
		}
		if err := os.Remove(g.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			left = append(left, g)
			continue
		}
		g.removed = true
		s.mu.Lock()
		s.bytes -= g.size
		s.mu.Unlock()
	}
	if len(left) < len(s.unremoved) {
		if err := syncDir(s.dir); err != nil {
			s.log.Warn("spool: remove acked segments", "err", err)
		}
	}
	clear(s.unremoved[len(left):])
	s.unremoved = left
}

// persist writes the watermark when it moved.
func (s *Spool) persist() {
	s.mu.Lock()
	acked, next := s.watermark(), s.next
	s.mu.Unlock()
	if acked == s.savedAcked {
		return
	}
	if err := s.writeMeta(acked, next); err != nil {
		s.metaFailed(err)
	}
}

// metaFailed logs a failed write of the watermark by the loop, which
// tries again every 100 ms while it moved or acked segments wait for it
// to be removed: the first failure, then at most one line every
// metaLogEvery, with the count of failures since the first (writeMeta
// logs at Info once a write works again).
func (s *Spool) metaFailed(err error) {
	s.metaFails++
	if now := time.Now(); s.metaFails == 1 || now.Sub(s.metaLogged) >= metaLogEvery {
		s.log.Warn("spool: watermark not written; acked segments kept, retried every 100 ms", "failures", s.metaFails, "err", err)
		s.metaLogged = now
	}
}

// watermark is the lowest seq not acked (s.next when all are); s.mu held.
func (s *Spool) watermark() uint64 {
	if g := s.oldest(); g != nil {
		return g.base + uint64(g.first)
	}
	return s.next
}

// oldest returns the first segment with an unacked entry, its first field
// advanced to that entry; s.mu held.
func (s *Spool) oldest() *segment {
	for _, g := range s.segs {
		for g.first < len(g.ents) && g.ents[g.first].acked {
			g.first++
		}
		if g.first < len(g.ents) {
			return g
		}
	}
	return nil
}

// Read returns up to n entries not yet returned by Read, in append order,
// waiting until there is at least one or ctx is done. One reader (kproxy's
// drainer); n < 1 reads one.
//
// An entry that no longer passes its checksum (the disk changed it after
// Open) is not an error: as Open would, Read cuts its segment there,
// dropping that entry and the rest of the segment (the length of a corrupt
// entry cannot be trusted to find the next one), logs the file, byte
// offset and count at Error, adds the bytes to Stats.Cut and the unacked
// entries to Stats.Dropped, and goes on with the next segment; the dropped
// entries leave Pending and Stats.Records.
//
// Errors: ctx.Err(); ErrClosed after Close (stop reading); any other error
// is an I/O error reading or opening a segment (EIO, EMFILE, ...): the
// reader's position has not moved and no entry was skipped, so the caller
// keeps reading after a pause (with backoff: it may last), logging it.
func (s *Spool) Read(ctx context.Context, n int) ([]Entry, error) {
	return s.ReadAppend(ctx, nil, n)
}

// ReadAppend is Read appending the entries to dst (the caller's slice,
// reused from read to read: no slice per Read) and returning it; on an
// error, dst with what was read before it.
func (s *Spool) ReadAppend(ctx context.Context, dst []Entry, n int) ([]Entry, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return dst, ErrClosed
		}
		g, err := s.readable()
		var avail uint64
		var limit int64
		if g != nil {
			avail, limit = g.base+uint64(len(g.ents))-s.rseq, g.size
		}
		data := s.data
		s.mu.Unlock()
		if err != nil {
			return dst, err
		}
		if g == nil && s.rfile != nil {
			// Nothing to read: the segment read last goes once its
			// entries are acked, and its disk space only once no file
			// of it is open. readable opens it again if it grows.
			_ = s.rfile.Close()
			s.rfile = nil
		}
		if g != nil {
			had := len(dst)
			es, err := s.readFrom(dst, min(avail, uint64(max(n, 1))), limit)
			if errors.Is(err, errCorrupt) {
				s.cutCorrupt(err)
				continue
			}
			if err == nil && len(es) == had {
				dst = es
				continue // every entry read was acked before the restart (skipped)
			}
			return es, err
		}
		select {
		case <-ctx.Done():
			return dst, ctx.Err()
		case <-s.quit:
			return dst, ErrClosed
		case <-data:
		}
	}
}

// readable returns the segment holding s.rseq, switching the reader to it;
// nil when no entry is there to read. s.mu and s.rmu held.
func (s *Spool) readable() (*segment, error) {
	for _, g := range s.segs {
		if g.base+uint64(len(g.ents)) <= s.rseq {
			continue
		}
		if g != s.rseg {
			f, err := os.Open(g.path)
			if err != nil {
				return nil, fmt.Errorf("spool: read: %w", err)
			}
			if s.rfile != nil {
				_ = s.rfile.Close()
			}
			s.rseg, s.rfile, s.roff = g, f, 0
			s.rseq = max(s.rseq, g.base)
			s.rskip = s.rseq - g.base // after Open: the segment holding the watermark
		} else if s.rfile == nil { // closed by Read while nothing was to read
			f, err := os.Open(g.path)
			if err != nil {
				return nil, fmt.Errorf("spool: read: %w", err)
			}
			s.rfile = f
		}
		return g, nil
	}
	return nil, nil
}

// readFrom decodes n entries of s.rseg, which has limit bytes committed,
// appending them to es: on an error before the first, es as it was.
func (s *Spool) readFrom(es []Entry, n uint64, limit int64) ([]Entry, error) {
	s.rbuf.Reset(io.NewSectionReader(s.rfile, s.roff, limit-s.roff))
	var scratch []byte
	for ; s.rskip > 0; s.rskip-- {
		p, size, err := readEntry(s.rbuf, scratch, limit-s.roff)
		if err != nil {
			return es, fmt.Errorf("spool: read %s at offset %d: %w", s.rseg.path, s.roff, err)
		}
		scratch = p
		s.roff += size
	}
	start := len(es)
	if es == nil {
		es = make([]Entry, 0, n)
	}
	// The payloads share buffers of readArena bytes (one allocation for
	// many entries); a larger one gets its own.
	var arena []byte
	for range n {
		if cap(arena)-len(arena) < 64 {
			arena = make([]byte, 0, readArena)
		}
		p, size, err := readEntry(s.rbuf, arena[len(arena):], limit-s.roff)
		if err == nil && s.skipped(s.rseq) {
			s.roff += size // acked before the restart (acked-above)
			s.rseq++
			continue
		}
		if err == nil && len(p) <= cap(arena)-len(arena) {
			arena = arena[:len(arena)+len(p)]
		}
		if err == nil {
			var d payload
			if d, err = decodePayload(p); err == nil {
				if string(d.topic) != s.rtop {
					s.rtop = string(d.topic)
				}
				if len(s.openFloors) > 0 && s.rseq < s.openFloors[s.rtop] {
					s.roff += size // acked before the restart (topic-floors)
					s.rseq++
					continue
				}
				es = append(es, Entry{Seq: s.rseq, Appended: time.Unix(0, d.appended), Record: Record{
					Topic: s.rtop, Key: d.key, Value: d.value, Headers: d.headers,
				}})
				s.roff += size
				s.rseq++
				continue
			}
		}
		if len(es) > start {
			return es, nil // the error comes again at the next Read
		}
		return es, fmt.Errorf("spool: read %s at offset %d: %w", s.rseg.path, s.roff, err)
	}
	return es, nil
}

// cutCorrupt drops the entries of s.rseg from the reader's position on:
// the entry there is corrupt (readFrom's error err). s.rmu held.
func (s *Spool) cutCorrupt(err error) {
	g := s.rseg
	s.mu.Lock()
	dropped := 0
	for k := s.rseq - s.rskip - g.base; k < uint64(len(g.ents)); k++ {
		if s.ackLocked(g, k) {
			dropped++
		}
	}
	s.cut += g.size - s.roff
	s.dropped += int64(dropped)
	g.sealed = true
	s.rseq, s.rskip = g.base+uint64(len(g.ents)), 0
	s.mu.Unlock()
	s.log.Error("spool: cut corrupt entry and the rest of its segment", "file", g.path, "offset", s.roff, "entries", dropped, "reason", err)
}

// Ack marks entries as acknowledged by Kafka (any order). A segment whose
// entries are all acked is deleted; the contiguous acked watermark is
// persisted (at least every 100 ms while it moves) so a restart replays
// only entries after it: duplicates after a crash are limited to entries
// acked out of order or not yet persisted. Unknown or repeated seqs are
// ignored.
func (s *Spool) Ack(seqs ...uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range seqs {
		i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].base > q }) - 1
		if i < 0 {
			continue
		}
		if g := s.segs[i]; q-g.base < uint64(len(g.ents)) && s.ackLocked(g, q-g.base) {
			s.acked++
		}
	}
}

// ackLocked marks g's entry k acked, false when it was; a segment all
// acked is collected. s.mu held.
func (s *Spool) ackLocked(g *segment, k uint64) bool {
	if g.ents[k].acked {
		return false
	}
	g.ents[k].acked = true
	g.acked++
	s.raiseAckedTop(g.ents[k].topic, g.base+k+1)
	t := s.topics[g.ents[k].topic]
	if s.pending[t]--; s.pending[t] == 0 {
		delete(s.pending, t)
	}
	s.records--
	if g.acked == len(g.ents) {
		s.collect = true
		s.signal()
	}
	return true
}

// forgetTopicsLocked drops the topic names, once no segment is left: no
// entry refers to their indexes, and none of them has an entry acked
// above what is on disk (the watermark was written before the segments
// went). Without it every name spooled stayed for the life of the process.
// s.mu held.
func (s *Spool) forgetTopicsLocked() {
	for i, t := range s.topics {
		if i < len(s.ackedTop) && s.ackedTop[i] > max(s.diskAcked, s.floors[t]) {
			return // unsaved: TopicState must go on seeing it
		}
	}
	clear(s.topics)
	s.topics = s.topics[:0]
	s.topicIdx = map[string]int32{}
	s.ackedTop = s.ackedTop[:0]
}

// raiseAckedTop notes that topic's entry below seq is acked (ackedTop);
// s.mu held, or Open.
func (s *Spool) raiseAckedTop(topic int32, seq uint64) {
	if i := int(topic); i >= len(s.ackedTop) {
		s.ackedTop = append(s.ackedTop, make([]uint64, i+1-len(s.ackedTop))...)
	}
	s.ackedTop[topic] = max(s.ackedTop[topic], seq)
}

// Pending is how many entries of topic are appended and not acked (0: the
// topic may go to Kafka directly again). Includes entries replayed by Open,
// and the records of an Append that failed with ErrMaybeAppended until a
// segment marks where they end (the next write's, or one the spool creates
// on its own, tried every 100 ms): a restart before may replay them, and a
// later record of their key must not be in Kafka first.
func (s *Spool) Pending(topic string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending[topic] + s.maybe[topic]
}

// TopicState is Pending, and whether a crash now would replay entries of
// topic that were acked (unsaved): acked since the watermark on disk was
// written, above it (behind an older entry not acked, of any topic) and
// above the topic's floor. A topic whose new records go to Kafka directly
// while it has any would have them written again after those records,
// out of order, by the drain after a restart: SaveTopic first.
func (s *Spool) TopicState(topic string) (pending int, unsaved bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending[topic] + s.maybe[topic], s.unsavedLocked(topic)
}

func (s *Spool) unsavedLocked(topic string) bool {
	i, ok := s.topicIdx[topic]
	if !ok || int(i) >= len(s.ackedTop) {
		return false
	}
	return s.ackedTop[i] > max(s.diskAcked, s.floors[topic])
}

// SaveTopic writes to disk that every entry of topic is acked, when it is
// (Pending 0; else it does nothing): its floor, the seq below which no
// entry of it is pending, in topic-floors (written whole, synced, renamed
// over the last one, the directory synced), which Open reads. Afterwards
// TopicState reports nothing unsaved of it until one of its entries is
// acked again. The floors at or below the watermark on disk say nothing
// more than it, and go.
func (s *Spool) SaveTopic(topic string) error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.pending[topic]+s.maybe[topic] > 0 || !s.unsavedLocked(topic) {
		s.mu.Unlock()
		return nil
	}
	floors := make(map[string]uint64, len(s.floors)+1)
	for t, f := range s.floors {
		if f > s.diskAcked {
			floors[t] = f
		}
	}
	floors[topic] = s.next // committed entries of topic are all acked; later ones come after next
	s.mu.Unlock()
	var b []byte
	for _, t := range slices.Sorted(maps.Keys(floors)) {
		b = binary.AppendUvarint(b, uint64(len(t)))
		b = append(b, t...)
		b = binary.LittleEndian.AppendUint64(b, floors[t])
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	tmp := filepath.Join(s.dir, floorsTmp)
	err := writeSynced(tmp, b)
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, floorsName))
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		return fmt.Errorf("spool: save the floor of topic %q: %w", topic, err)
	}
	s.mu.Lock()
	s.floors = floors
	s.mu.Unlock()
	return nil
}

// readFloors reads topic-floors into s.floors, those above acked (the
// watermark read): a file that fails its checksum is logged, and its
// topics' acked entries are replayed; one that cannot be read (an I/O
// error) fails the start. A temporary file of a write cut short goes.
func (s *Spool) readFloors(acked uint64) error {
	if err := os.Remove(filepath.Join(s.dir, floorsTmp)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("spool: remove the temporary file of topic floors", "file", filepath.Join(s.dir, floorsTmp), "err", err)
	}
	path := filepath.Join(s.dir, floorsName)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		// Not started without them, as without the watermark: the seqs
		// below a floor would be given to new entries, which a later
		// start reading the file would take for acked (never drained).
		return fmt.Errorf("spool: read %s: %w", path, err)
	case len(b) < 4 || crc32.Checksum(b[:len(b)-4], castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]):
		s.log.Warn("spool: topic floors unreadable; entries acked above the watermark are replayed", "file", path, "bytes", len(b))
		return nil
	}
	floors := map[string]uint64{}
	for b = b[:len(b)-4]; len(b) > 0; {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n+8 {
			s.log.Warn("spool: topic floors unreadable; entries acked above the watermark are replayed", "file", path, "err", "an entry cut short")
			return nil
		}
		t := string(b[k : k+int(n)])
		if f := binary.LittleEndian.Uint64(b[k+int(n):]); f > acked {
			floors[t] = f
		}
		b = b[k+int(n)+8:]
	}
	s.floors = floors
	return nil
}

// Stats are a Spool's counts.
type Stats struct {
	Records  int64     // appended and not acked
	Bytes    int64     // the entries' bytes in all segment files, acked ones not removed yet included (the zeros written ahead are Ahead)
	Oldest   time.Time // Appended of the oldest unacked entry; zero when empty
	Appended int64     // entries appended since Open
	Acked    int64     // entries acked since Open
	Replayed int64     // entries Open found pending
	Cut      int64     // bytes cut from torn/corrupt tails by Open, and from corrupt entries by Read
	Dropped  int64     // unacked entries Read and ReadTopic cut as corrupt since Open: appended, never to be read (Appended+Replayed = Acked+Dropped+Records)
	Trimmed  int64     // bytes of zeros written ahead of the entries (see Writing) that Open dropped
	Ahead    int64     // bytes of zeros now written ahead of the entries in the active segment's file
}

// Stats returns the current counts.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Records: s.records, Bytes: s.bytes, Appended: s.appended, Acked: s.acked, Replayed: s.replayed, Cut: s.cut, Dropped: s.dropped, Trimmed: s.trimmed}
	if s.aheadSeg != nil {
		st.Ahead = max(0, s.ahead-s.aheadSeg.size)
	}
	if g := s.oldest(); g != nil {
		st.Oldest = time.Unix(0, g.ents[g.first].appended)
	}
	return st
}

// Close persists the watermark and closes files; Append/Read after Close
// return an error. Appends queued before Close are committed first.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	// 0. A SaveTopic under way ends before the lock goes; later ones
	//    see closed.
	s.fmu.Lock()
	s.fmu.Unlock() //nolint:staticcheck // a barrier
	// 1. The loop commits what is queued, persists the watermark and
	//    closes the segment and watermark files.
	close(s.quit)
	<-s.done
	// 2. Read sees closed (a blocked Read returned on quit); its file goes.
	s.rmu.Lock()
	if s.rfile != nil {
		_ = s.rfile.Close()
	}
	s.rmu.Unlock()
	// 3. The lock goes last: another process may take the directory now.
	return errors.Join(s.closeErr, s.lock.Close())
}
