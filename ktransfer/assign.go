package ktransfer

import (
	"slices"
)

// assign computes which instance pushes each partition, from the live
// instance ids, the partitions, and the current owners (partition →
// instance id, from the owners/ nodes). Every instance computes it from the
// same ZooKeeper state, so they agree without talking to each other.
//
// It is balanced (counts differ by at most one) and sticky: a live owner
// keeps its partition while its quota allows, so a spare joining moves
// nothing and a dying owner's partitions go to the least-loaded instances
// (first in id order), not a reshuffle. Partitions are assigned in
// numeric order; instances are compared by id.
func assign(ids []string, partitions []int32, owners map[int32]string) map[int32]string {
	out := make(map[int32]string, len(partitions))
	if len(ids) == 0 {
		return out
	}
	ids = slices.Sorted(slices.Values(ids))
	parts := slices.Sorted(slices.Values(partitions))
	base, extra := len(parts)/len(ids), len(parts)%len(ids)
	count := make(map[string]int, len(ids))
	atMax := 0 // instances holding base+1, at most extra of them
	fits := func(id string) bool {
		c := count[id]
		return c < base || (c == base && atMax < extra)
	}
	take := func(p int32, id string) {
		if count[id] == base {
			atMax++
		}
		count[id]++
		out[p] = id
	}
	live := make(map[string]bool, len(ids))
	for _, id := range ids {
		live[id] = true
	}
	// 1. Owners keep what their quota allows.
	for _, p := range parts {
		if id, ok := owners[p]; ok && live[id] && fits(id) {
			take(p, id)
		}
	}
	// 2. The rest go to the least-loaded instance that fits.
	for _, p := range parts {
		if _, done := out[p]; done {
			continue
		}
		best := ""
		for _, id := range ids {
			if fits(id) && (best == "" || count[id] < count[best]) {
				best = id
			}
		}
		take(p, best)
	}
	return out
}
