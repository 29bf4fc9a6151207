package kproxy

import "testing"

func TestIsJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json": true, "application/json; charset=utf-8": true, "APPLICATION/JSON": true,
		" application/json ;charset=UTF-8": true, "application/jsonx": false, "application/msgpack": false,
		"": false, "text/json": false, "application/problem+json": false,
	} {
		if isJSON([]byte(ct)) != want {
			t.Errorf("Content-Type %q: JSON %v", ct, !want)
		}
	}
}
