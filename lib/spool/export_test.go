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
