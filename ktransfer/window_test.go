package ktransfer

import (
	"math/rand/v2"
	"testing"
)

func TestTrackerInOrder(t *testing.T) {
	tr := newTracker(10)
	if _, _, ok := tr.toCommit(); ok {
		t.Fatal("nothing to commit at start")
	}
	for o := int64(10); o < 15; o++ {
		tr.dispatch(o)
	}
	steps := []struct {
		ack        int64
		moved      int
		commit     int64
		records    int
		wantCommit bool
	}{
		{12, 0, 0, 0, false}, // 10 and 11 still out
		{10, 1, 11, 1, true}, // frontier 11
		{11, 2, 13, 3, true}, // 11 and 12 below the frontier now
		{11, 0, 13, 3, true}, // a repeated ack changes nothing
		{14, 0, 13, 3, true},
		{13, 2, 15, 5, true},
	}
	for i, s := range steps {
		if moved := tr.ack(s.ack); moved != s.moved {
			t.Fatalf("step %d: ack %d moved %d, want %d", i, s.ack, moved, s.moved)
		}
		off, recs, ok := tr.toCommit()
		if ok != s.wantCommit || off != s.commit || recs != s.records {
			t.Fatalf("step %d: toCommit = %d %d %v, want %d %d %v", i, off, recs, ok, s.commit, s.records, s.wantCommit)
		}
	}
	tr.committedAt(15, 5)
	if _, _, ok := tr.toCommit(); ok {
		t.Fatal("commit again after committing everything")
	}
}

func TestTrackerGapsAndRandomAcks(t *testing.T) {
	// A compacted topic has gaps between offsets.
	rng := rand.New(rand.NewPCG(3, 4))
	tr := newTracker(100)
	var offsets []int64
	o := int64(100)
	for range 5000 {
		o += 1 + int64(rng.IntN(3))
		offsets = append(offsets, o)
		tr.dispatch(o)
	}
	acked := map[int64]bool{}
	order := rng.Perm(len(offsets))
	total := 0
	for _, i := range order {
		total += tr.ack(offsets[i])
		acked[offsets[i]] = true
		// The frontier is just past the longest acknowledged prefix (the
		// first dispatched offset while none is acknowledged).
		off, _, _ := tr.toCommit()
		want := offsets[0]
		for _, x := range offsets {
			if !acked[x] {
				break
			}
			want = x + 1
		}
		if off != want {
			t.Fatalf("after acking %d of %d: frontier %d, want %d", len(acked), len(offsets), off, want)
		}
	}
	if total != len(offsets) {
		t.Fatalf("%d records moved below the frontier, want %d", total, len(offsets))
	}
	off, recs, _ := tr.toCommit()
	if off != o+1 || recs != len(offsets) {
		t.Fatalf("final commit %d covering %d, want %d covering %d", off, recs, o+1, len(offsets))
	}
}

// TestDropFreesEverySlot: a released partition gives back one slot per
// record dispatched and not committed — in flight, acknowledged below the
// frontier, and acknowledged above it (behind a slower one), which the old
// count missed: every release leaked those slots until the window stayed
// full for good.
func TestDropFreesEverySlot(t *testing.T) {
	tr := newTracker(10)
	for o := int64(10); o < 15; o++ {
		tr.dispatch(o) // five slots taken
	}
	tr.ack(10)            // below the frontier
	tr.committedAt(11, 1) // its slot freed by the commit
	tr.ack(12)            // acknowledged above the frontier: 11 is still out
	tr.ack(14)
	held, ready := tr.drop()
	if held != 4 || ready != 0 {
		t.Fatalf("drop = %d slots, %d ready; want 4 slots (11, 12, 13, 14), 0 ready", held, ready)
	}
	if moved := tr.ack(11); moved != 0 {
		t.Fatalf("an acknowledgement after the drop moved %d records", moved)
	}
}
