package ktransfer

import (
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestQuietTopicRestartsOnlyOnAnotherIDFoundTwice attacks the look-ups of
// a quiet topic's id: one answer naming another id than the one the topic
// is read by (a broker whose metadata is not up to date) must not restart
// every partition from the new topic's first record, which pushed them
// all again; nor must an answer of a look-up made before records came
// with an id. Only the same other id twice in a row is a topic created
// again, and the topic is read by it from then on.
func TestQuietTopicRestartsOnlyOnAnotherIDFoundTwice(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1")) // never dialled here
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	m := &module{cfg: Module{Topic: "t"}, log: slog.New(slog.DiscardHandler), parts: map[int32]*partition{}}
	r := newReader(m, cl)
	gone := 0
	hook := func(*reader) { gone++ }
	beforeTopicGone.Store(&hook)
	defer beforeTopicGone.Store(nil)

	a, b, c := [16]byte{'a'}, [16]byte{'b'}, [16]byte{'c'}
	r.idAnswered(idAnswer{id: a, base: true})
	if r.readID != a {
		t.Fatalf("no id known, a base look-up finding %x: read by %x, want it", a, r.readID)
	}
	r.idAnswered(idAnswer{id: b, base: true})
	if r.readID != a || r.suspect != ([16]byte{}) {
		t.Fatalf("an id known, a late base look-up finding another: read by %x, suspect %x; want %x and none", r.readID, r.suspect, a)
	}

	steps := []struct {
		found [16]byte
		gone  int
	}{
		{b, 0}, // once: not up to date, maybe
		{a, 0}, // the id read by again: the suspicion ends
		{b, 0}, // another once more
		{c, 0}, // and yet another: neither twice in a row
		{c, 1}, // c twice in a row: created again
		{c, 1}, // read by c now
	}
	for i, s := range steps {
		r.checkedID = time.Now()
		r.idAnswered(idAnswer{id: s.found})
		if gone != s.gone {
			t.Fatalf("step %d, finding %x: the topic handled as created again %d times, want %d", i, s.found, gone, s.gone)
		}
		if r.suspect != ([16]byte{}) {
			if due := time.Until(r.quietDue()); due > topicCheckEvery {
				t.Errorf("step %d: another id found, looked up again in %v, want within %v", i, due, topicCheckEvery)
			}
		}
	}
	if r.readID != c {
		t.Errorf("after the topic found created again with id %x, read by %x", c, r.readID)
	}

	r.looking = true
	if due := r.quietDue(); !due.IsZero() {
		t.Errorf("a look-up under way, the next due at %v: want none (a due in the past made the poll loop spin)", due)
	}
}
