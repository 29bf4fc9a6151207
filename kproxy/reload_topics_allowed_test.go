package kproxy_test

import (
	"strings"
	"testing"
)

// TestReloadCannotTurnTopicsAllowedOff: kproxy runs without clients and
// with topics_allowed: [topic]. The operator removes the last entry to
// shut every topic off and reloads; no topics_allowed means every topic
// may be written, by anyone. The reload must be refused, naming the file
// and the key, and "other" still refused (403). Before, it was applied,
// logged only as topics_allowed=0, and every topic was open to anyone.
func TestReloadCannotTurnTopicsAllowedOff(t *testing.T) {
	r := startReloadable(t, "topics_allowed: ["+topic+"]\n")
	commit := func(to string) int {
		t.Helper()
		return r.postBatch(t, "topic="+to, "", mpBatch(t, []brec{{value: mp(t, 1)}})).code
	}
	if code := commit("other"); code != 403 {
		t.Fatalf("a topic outside topics_allowed before the reload: %d, want 403", code)
	}
	r.write(t, "topics_allowed:\n")
	err := r.srv.Reload()
	if err == nil || !strings.Contains(err.Error(), r.file) || !strings.Contains(err.Error(), "topics_allowed") {
		t.Errorf("Reload without topics_allowed: %v, want a refusal naming the file and topics_allowed", err)
	}
	if code := commit("other"); code != 403 {
		t.Errorf("a topic outside topics_allowed after the refused reload: %d, want 403", code)
	}
	if code := commit(topic); code != 200 {
		t.Errorf("the topic allowed after the refused reload: %d, want 200", code)
	}
}
