package spool_test

import (
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestOpenSyncsTheDirectoriesAboveIt attacks "a record answered 202 is on
// disk": a spool_dir that does not exist yet is created by Open, with the
// directories above it that are missing. Each new directory's entry is on
// disk only once the directory holding it is synced; before the first
// Append returns, every one of them must be, or a power loss could take
// the whole spool away with the records it answered for. The same holds
// when a first start created them and failed or was killed before it
// synced them: the next Open finds them there, and must sync them too.
func TestOpenSyncsTheDirectoriesAboveIt(t *testing.T) {
	for _, made := range []bool{false, true} {
		name := "created by Open"
		if made {
			name = "created by a start killed before it synced them"
		}
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "a", "b", "spool")
			if made {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			var mu sync.Mutex
			var synced []string
			spool.OnDirSynced(t, func(d string) {
				mu.Lock()
				defer mu.Unlock()
				synced = append(synced, filepath.Clean(d))
			})
			s := open(t, spool.Options{Dir: dir})
			appendOne(t, s, rec("t", "v"))
			mu.Lock()
			defer mu.Unlock()
			for _, d := range []string{root, filepath.Join(root, "a"), filepath.Join(root, "a", "b"), dir} {
				if !slices.Contains(synced, d) {
					t.Errorf("%s not synced before the first Append returned (synced: %q)", d, synced)
				}
			}
		})
	}
}

// TestOpenThroughADirectoryThatCannotBeSynced: a spool_dir that exists and
// is writable, reached through a directory whose file system has no sync
// for directories (procfs here; squashfs, erofs, iso9660 alike). -check
// passes it; the start must too: the sync of the directories above
// spool_dir makes a new directory durable, and must not refuse a spool
// that worked before it existed.
func TestOpenThroughADirectoryThatCannotBeSynced(t *testing.T) {
	dir := "/proc/self/root" + t.TempDir()
	if err := spool.CheckDir(dir); err != nil {
		t.Fatalf("CheckDir (-check): %v", err)
	}
	s := open(t, spool.Options{Dir: dir})
	appendOne(t, s, rec("t", "v"))
}
