package spool_test

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestOpenSyncsTheDirectoriesItCreates attacks "a record answered 202 is
// on disk": a spool_dir that does not exist yet is created by Open, with
// the directories above it that are missing. Each new directory's entry
// is on disk only once the directory holding it is synced; before the
// first Append returns, every one of them must be, or a power loss could
// take the whole spool away with the records it answered for.
func TestOpenSyncsTheDirectoriesItCreates(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b", "spool")
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
}
