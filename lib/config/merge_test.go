package config_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
)

// TestDecodeMergeKeys attacks the promise that a YAML file an operator
// writes by the YAML rules loads: a merge key (<<: *anchor, or a list of
// anchors) shares a block between sections, and was refused as an
// unknown key "<<". A key given beside the merge wins over the merged
// one, an earlier merged mapping over a later one; an unknown key inside a
// merged block is still refused, naming it.
func TestDecodeMergeKeys(t *testing.T) {
	cases := []struct {
		name, doc string
		wantErr   []string
		check     func(sample) bool
	}{
		{"merge into a struct", "inner: &i {name: a, count: 2}\nby_name:\n  k: {<<: *i, count: 3}\n", nil,
			func(s sample) bool { return s.ByName["k"].Name == "a" && s.ByName["k"].Count == 3 }},
		{"list of merges, the first wins", "list:\n - &a {name: a, count: 1}\n - &b {name: b}\n - {<<: [*b, *a]}\n", nil,
			func(s sample) bool { return len(s.List) == 3 && s.List[2].Name == "b" && s.List[2].Count == 1 }},
		{"merge at the top", "inner: &top {name: x}\nby_name:\n  k: {count: 1}\n<<: {port: 7}\n", nil,
			func(s sample) bool { return s.Port == 7 && s.Inner.Name == "x" }},
		{"merge into a map", "by_name: {<<: {k: {count: 1}, j: {count: 5}}, j: {count: 2}}\n", nil,
			func(s sample) bool { return len(s.ByName) == 2 && s.ByName["k"].Count == 1 && s.ByName["j"].Count == 2 }},
		{"unknown key in a merged block", "inner: &i {name: a}\nlist:\n - {<<: *i}\nby_name:\n  k: {<<: {cuont: 1}}\n",
			[]string{"by_name.k.cuont: unknown key"}, nil},
		{"merge of a scalar", "inner: {<<: 3}\n", []string{"f.yaml:1: inner.<<: must be a mapping"}, nil},
		{"merge of an alias of a list", "hosts: &h [a]\ninner: {<<: *h}\n", []string{"f.yaml:2: inner.<<: must be a mapping, an alias of one (*anchor) or a list of them, got a list"}, nil},
		{"duplicate key beside a merge still refused", "inner: {<<: {name: a}, count: 1, count: 2}\n", []string{"inner.count: key appears twice"}, nil},
	}
	for _, tc := range cases {
		s := sample{Port: 5030}
		err := config.Decode("f.yaml", []byte(tc.doc), &s)
		if len(tc.wantErr) == 0 {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			} else if tc.check != nil && !tc.check(s) {
				t.Errorf("%s: decoded %+v", tc.name, s)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, w)
			}
		}
	}
}

// TestDecodeMergeBombReturns: merges naming earlier merges twice each
// (2^40 paths through 41 small mappings) are decoded at once, not walked
// path by path.
func TestDecodeMergeBombReturns(t *testing.T) {
	var b strings.Builder
	b.WriteString("l0: &l0 {name: a}\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, "l%d: &l%d {<<: [*l%d, *l%d]}\n", i, i, i-1, i-1)
	}
	b.WriteString("inner: {<<: *l40}\n")
	var w withRest
	done := make(chan error, 1)
	go func() { done <- config.Decode("f.yaml", []byte(b.String()), &w) }()
	select {
	case err := <-done:
		if err != nil || w.Base.Name != "" || w.Rest["l40"].Name != "a" {
			t.Errorf("Decode: %v; decoded %+v", err, w.Rest["l40"])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Decode of merges naming merges did not return within 10 s")
	}
}

// TestDecodeBadMergeHidesSecret: a merge key's value that is not a
// mapping, in a section that may hold a secret, is refused without being
// shown (as a value of the wrong type is).
func TestDecodeBadMergeHidesSecret(t *testing.T) {
	var s withSecrets
	err := config.Decode("f.yaml", []byte("auth: {<<: digest:user:hunter2}\n"), &s)
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "f.yaml:1: auth.<<: must be a mapping") {
		t.Errorf("Decode: %v; want auth.<< refused without its value", err)
	}
}
