package spool

// Fsyncs counts the fsyncs of group commits since the process started.
func Fsyncs() int64 { return fsyncs.Load() }

// DataSyncs counts the group commits synced with fdatasync, inside the
// zeros written ahead of the entries.
func DataSyncs() int64 { return dataSyncs.Load() }

// EntryLen is the bytes r takes in a segment.
func EntryLen(r Record) int { return len(appendEntry(nil, &r, 0)) }

// OnDirSynced has f told every directory the package syncs, until the
// test ends.
func OnDirSynced(t interface{ Cleanup(func()) }, f func(dir string)) {
	dirSynced = f
	t.Cleanup(func() { dirSynced = nil })
}

// SealAfterNextWrite has the next group commit's segment sealed once it is
// written and synced, before its entries are published (as Read seals a
// segment it finds corrupt), and then f called (nil: none), in this
// process for good: child processes only.
func SealAfterNextWrite(f func()) {
	written = func(s *Spool) {
		written = nil
		s.mu.Lock()
		s.activeSeg.sealed = true
		s.mu.Unlock()
		if f != nil {
			f()
		}
	}
}

// KnownTopics is how many topic names s holds (interned).
func KnownTopics(s *Spool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.topics)
}

// WriteBufCap is the capacity of the buffer s keeps for its next group
// commit. Read once the appends have returned.
func WriteBufCap(s *Spool) int { return cap(s.wbuf) }

// WriteBufKeep is the largest capacity that buffer keeps.
const WriteBufKeep = wbufKeep

// FailMetaWrites has every write of the watermark fail with err (nil:
// they work again).
func FailMetaWrites(err error) {
	if err == nil {
		metaFault.Store(nil)
		return
	}
	metaFault.Store(&err)
}
