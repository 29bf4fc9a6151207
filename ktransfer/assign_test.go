package ktransfer

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func parts(n int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(i)
	}
	return p
}

func counts(a map[int32]string) map[string]int {
	c := map[string]int{}
	for _, id := range a {
		c[id]++
	}
	return c
}

func checkBalanced(t *testing.T, a map[int32]string, ids []string, nparts int) {
	t.Helper()
	if len(a) != nparts {
		t.Fatalf("%d of %d partitions assigned: %v", len(a), nparts, a)
	}
	c := counts(a)
	lo, hi := nparts, 0
	for _, id := range ids {
		lo, hi = min(lo, c[id]), max(hi, c[id])
	}
	if hi-lo > 1 {
		t.Fatalf("unbalanced: %v", c)
	}
}

func moved(a, b map[int32]string) int {
	n := 0
	for p, id := range a {
		if b[p] != id {
			n++
		}
	}
	return n
}

func TestAssignBalancedAndDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 500 {
		k, n := 1+rng.IntN(8), 1+rng.IntN(40)
		var ids []string
		for i := range k {
			ids = append(ids, fmt.Sprintf("host-%d", i))
		}
		owners := map[int32]string{}
		for p := range n {
			if rng.IntN(2) == 0 {
				owners[int32(p)] = fmt.Sprintf("host-%d", rng.IntN(k+2)) // some owners are dead
			}
		}
		a := assign(ids, parts(n), owners)
		checkBalanced(t, a, ids, n)
		shuffled := append([]string(nil), ids...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if b := assign(shuffled, parts(n), owners); moved(a, b) != 0 {
			t.Fatalf("order of ids changed the result: %v vs %v", a, b)
		}
	}
}

func TestAssignStableWhenASpareJoins(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"} // 4 partitions, 5 instances: one spare
	a := assign(ids, parts(4), nil)
	checkBalanced(t, a, ids, 4)
	b := assign(append(ids, "0-joins-first-in-order"), parts(4), a)
	if n := moved(a, b); n != 0 {
		t.Errorf("a spare joining moved %d partitions: %v → %v", n, a, b)
	}
}

func TestAssignDeadOwnerGoesToASpare(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"}
	a := assign(ids, parts(4), nil)
	var victim string
	for _, id := range a {
		victim = id
		break
	}
	var rest []string
	for _, id := range ids {
		if id != victim {
			rest = append(rest, id)
		}
	}
	b := assign(rest, parts(4), a)
	checkBalanced(t, b, rest, 4)
	if n := moved(a, b); n != counts(a)[victim] {
		t.Errorf("%s died owning %d partitions; %d moved: %v → %v", victim, counts(a)[victim], n, a, b)
	}
}

func TestAssignRebalancesWhenInstancesJoin(t *testing.T) {
	a := assign([]string{"a"}, parts(8), nil)
	b := assign([]string{"a", "b"}, parts(8), a)
	checkBalanced(t, b, []string{"a", "b"}, 8)
	if n := moved(a, b); n != 4 {
		t.Errorf("moved %d of 8 to a second instance, want 4", n)
	}
	if len(assign(nil, parts(3), nil)) != 0 {
		t.Errorf("no instances, yet partitions assigned")
	}
}
