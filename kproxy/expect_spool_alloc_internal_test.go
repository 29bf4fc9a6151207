package kproxy

import (
	"context"
	"testing"
	"time"
)

// TestTopicForKnownTopicAfterExpectAllocatesNothing: a spoolable /commit
// announced with "Expect: 100-continue" whose topic is known (the look-up
// before the 100 found it) costs its look-up after the body nothing, as
// one without the header: kproxy's own path allocates nothing per
// request. Giving that look-up what is left of the first one's
// spool_after_ms must not make a context, and register it with the
// records' shared deadline, for every such request.
func TestTopicForKnownTopicAfterExpectAllocatesNothing(t *testing.T) {
	s := &Server{
		check: newTopicCheck(false, 1<<20),
		spool: &spooler{after: newDeadlines(time.Second), afterD: time.Second},
	}
	s.check.known["t"] = topicInfo{name: "t", maxBytes: 1 << 20}
	dl := newDeadlines(10 * time.Second).get()
	lookedUp := s.spool.after.get() // expectCommit's, before the 100
	name := []byte("t")
	for _, c := range []struct {
		what   string
		expect bool
	}{{"without Expect", false}, {"with Expect", true}} {
		var after context.Context
		if c.expect {
			after = lookedUp
		}
		n := testing.AllocsPerRun(100, func() {
			info, _, err := s.topicFor(dl, name, true, after)
			if err != nil || info.name != "t" {
				t.Fatalf("%s: %+v, %v", c.what, info, err)
			}
		})
		if n != 0 {
			t.Errorf("%s: the look-up of a known topic allocates %v times per request, want none", c.what, n)
		}
	}
}
