package zklayout

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// fakeDNS resolves names from a table a test changes; a name not in it
// does not resolve.
type fakeDNS struct {
	mu    sync.Mutex
	names map[string]string
}

func (d *fakeDNS) lookup(_ context.Context, host string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if a, ok := d.names[host]; ok {
		return []string{a}, nil
	}
	return nil, errors.New("lookup " + host + ": no such host")
}

// The ZooKeeper client's server list: a member whose name does not
// resolve is left out (told once) while another resolves, and looked up
// again each time the client has gone round the others without a
// connection: a name that failed for a moment at the start (a DNS hiccup)
// comes back, rather than leaving the client on one member for its life.
// None resolving is an error, and nothing is said to be left out then.
func TestHostProviderLeavesOutAndLooksAgain(t *testing.T) {
	dns := &fakeDNS{names: map[string]string{"a": "10.0.0.1"}}
	var told []string
	hp := zk.NewDNSHostProvider(zk.WithLookupHost(dns.lookup), zk.WithLeftOut(func(server string, err error) { told = append(told, server) }))
	if err := hp.Init([]string{"a:2181", "b:2181"}); err != nil {
		t.Fatalf("a resolves, b does not: %v", err)
	}
	if hp.Len() != 1 || len(told) != 1 || told[0] != "b:2181" {
		t.Fatalf("a resolves, b does not: %d servers, told of %v; want a only, b told", hp.Len(), told)
	}
	dns.mu.Lock()
	dns.names["b"] = "10.0.0.2"
	dns.mu.Unlock()
	seen := map[string]bool{}
	for deadline := time.Now().Add(5 * time.Second); !seen["10.0.0.2:2181"] && time.Now().Before(deadline); {
		s, _ := hp.Next() // round after round, never connected
		seen[s] = true
		time.Sleep(time.Millisecond)
	}
	if !seen["10.0.0.2:2181"] {
		t.Errorf("b resolves again: servers tried %v, want b's address among them", seen)
	}
	if hp.Len() != 2 {
		t.Errorf("b found again: %d servers, want a and b once each", hp.Len())
	}

	told = nil
	none := zk.NewDNSHostProvider(zk.WithLookupHost(dns.lookup), zk.WithLeftOut(func(server string, err error) { told = append(told, server) }))
	if err := none.Init([]string{"x:2181", "y:2181"}); err == nil || len(told) > 0 {
		t.Errorf("no name resolves: %v, told of %v; want an error and no server said left out", err, told)
	}
}
