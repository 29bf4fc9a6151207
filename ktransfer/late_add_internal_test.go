package ktransfer

import (
	"context"
	"log/slog"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestLateAddOfAReleasedClaimLeavesTheNewerClaimRead: claim a of
// partition 0 is released (its context done) while its goroutine is about
// to hand the reader a new cursor (after a restart, or reading on after a
// stall); the partition is claimed again here meanwhile (claim b), whose
// cursor the reader applies first. a's late add must not replace b: a's
// goroutine then unassigns a, which removed b's cursor with it, and b,
// holding the owner node, was never read again, its lag growing without a
// word until it was released.
func TestLateAddOfAReleasedClaimLeavesTheNewerClaimRead(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1")) // never dialled here
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	m := &module{cfg: Module{Topic: "t"}, log: slog.New(slog.DiscardHandler)}
	r := newReader(m, cl)
	released, cancel := context.WithCancel(context.Background())
	cancel()
	a, b := newPartition(m, 0, released), newPartition(m, 0, context.Background())
	for _, c := range []change{
		{p: b, add: true, at: 5},               // b's claim starts reading
		{p: a, add: true, at: 3, resume: true}, // a's late read-on
		{p: a},                                 // a's goroutine ends: unassign
	} {
		c.done = make(chan struct{})
		r.pending = append(r.pending, c)
		r.apply()
	}
	if got := r.parts[0]; got != b {
		t.Fatalf("the reader reads claim %p of partition 0 after a released claim's late add and its unassign; want the newer claim %p", got, b)
	}
	if b.next != 5 {
		t.Errorf("the newer claim reads from %d; want 5, its own cursor", b.next)
	}
}
