package kproxy_test

import (
	"testing"
)

// TestCommitKeepsItsRulesThroughAReload: README ("Reloading clients"):
// "Each request is checked by one set of rules, those in force when its
// client is found — on arrival for /commit … — whatever a reload stores
// while it is being checked (its topics looked up)". shop's burst of 1 is
// spent; its next /commit arrives under that rule and, while its topic is
// looked up, a reload removes shop's rate limit. By the rules it was found
// by, the record is over shop's rate limit: 429, not written.
func TestCommitKeepsItsRulesThroughAReload(t *testing.T) {
	r := startReloadable(t, "clients:\n - {name: shop, secret: s, topics: ['*'], rate_limit: 0.001, burst: 1}\n")
	if a := r.postAs(t, "shop", "s", "topic="+topic); a.code != 200 {
		t.Fatalf("first record: %d %s", a.code, a.body)
	}
	if a := r.postAs(t, "shop", "s", "topic="+topic); a.code != 429 {
		t.Fatalf("second record: %d %s, want 429", a.code, a.body)
	}
	reloaded := make(chan error, 1)
	holdLookup(r.kafka, "slow", func() {
		r.write(t, "clients:\n - {name: shop, secret: s, topics: ['*']}\n") // no rate limit
		reloaded <- r.srv.Reload()
	})
	a := r.postAs(t, "shop", "s", "topic=slow")
	select {
	case err := <-reloaded:
		if err != nil {
			t.Fatalf("Reload: %v", err)
		}
	default:
		t.Fatal("the look-up of slow was not held: the reload did not run during the request")
	}
	if n := endOffsets(t, r.kafka, "slow"); a.code != 429 || n != 0 {
		t.Errorf("/commit found under shop's spent burst, reload during its look-up: %d %q, %d records in slow; want 429 and none", a.code, a.body, n)
	}
}
