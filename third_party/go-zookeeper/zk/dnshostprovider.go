package zk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

const _defaultLookupTimeout = 3 * time.Second

type lookupHostFn func(context.Context, string) ([]string, error)

// DNSHostProviderOption is an option for the DNSHostProvider.
type DNSHostProviderOption interface {
	apply(*DNSHostProvider)
}

type lookupTimeoutOption struct {
	timeout time.Duration
}

// WithLookupTimeout returns a DNSHostProviderOption that sets the lookup timeout.
func WithLookupTimeout(timeout time.Duration) DNSHostProviderOption {
	return lookupTimeoutOption{
		timeout: timeout,
	}
}

func (o lookupTimeoutOption) apply(provider *DNSHostProvider) {
	provider.lookupTimeout = o.timeout
}

type lookupHostOption struct {
	f lookupHostFn
}

// WithLookupHost returns a DNSHostProviderOption that looks names up with
// f instead of net.Resolver's LookupHost (tests). (Patched: not in
// v1.0.4.)
func WithLookupHost(f func(ctx context.Context, host string) ([]string, error)) DNSHostProviderOption {
	return lookupHostOption{f: f}
}

func (o lookupHostOption) apply(provider *DNSHostProvider) {
	provider.lookupHost = o.f
}

type leftOutOption struct {
	f func(server string, err error)
}

// WithLeftOut returns a DNSHostProviderOption that has f told of each
// server Init leaves out because its name does not resolve. (Patched: not
// in v1.0.4.)
func WithLeftOut(f func(server string, err error)) DNSHostProviderOption {
	return leftOutOption{f: f}
}

func (o leftOutOption) apply(provider *DNSHostProvider) {
	provider.leftOut = o.f
}

// DNSHostProvider is the default HostProvider. It currently matches
// the Java StaticHostProvider, resolving hosts from DNS once during
// the call to Init.  It could be easily extended to re-query DNS
// periodically or if there is trouble connecting.
type DNSHostProvider struct {
	mu            sync.Mutex // Protects everything, so we can add asynchronous updates later.
	servers       []string
	curr          int
	last          int
	lookupTimeout time.Duration
	lookupHost    lookupHostFn // Override of net.LookupHost, for testing.
	leftOut       func(server string, err error)
	left          []string // servers Init left out, looked up again by Next (patched)
	looking       bool     // a lookup of left is under way (patched)
}

// NewDNSHostProvider creates a new DNSHostProvider with the given options.
func NewDNSHostProvider(options ...DNSHostProviderOption) *DNSHostProvider {
	var provider DNSHostProvider
	for _, option := range options {
		option.apply(&provider)
	}
	return &provider
}

// Init is called first, with the servers specified in the connection
// string. It uses DNS to look up addresses for each server, then
// shuffles them all together.
//
// (Patched: v1.0.4 looked the servers up one after the other within one
// deadline and failed on the first name that did not resolve: one server
// retired from DNS kept the client from ever connecting to the others,
// and a slow first name spent the others' time. Each name is looked up on
// its own now, all at once, each within the timeout; one that does not
// resolve is left out (WithLeftOut tells of it, its function called
// with the provider locked) as long as another one does, and looked up
// again each time Next has gone round the others without a connection.)
func (hp *DNSHostProvider) Init(servers []string) error {
	hp.mu.Lock()
	defer hp.mu.Unlock()

	for _, server := range servers {
		if _, _, err := net.SplitHostPort(server); err != nil {
			return err
		}
	}
	found, left, errs := hp.resolve(servers)
	if len(found) == 0 {
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		return fmt.Errorf("No hosts found for addresses %q", servers)
	}
	if hp.leftOut != nil {
		for i, server := range left {
			hp.leftOut(server, errs[i])
		}
	}

	// Randomize the order of the servers to avoid creating hotspots
	stringShuffle(found)

	hp.servers = found
	hp.left = left
	hp.curr = -1
	hp.last = -1

	return nil
}

// resolve looks servers up, each on its own and all at once, each
// within the lookup timeout. It returns the addresses found, and the
// servers that did not resolve with their errors. It reads only what the
// options set (no lock needed). (Patched.)
func (hp *DNSHostProvider) resolve(servers []string) (found, left []string, errs []error) {
	lookupHost := hp.lookupHost
	if lookupHost == nil {
		var resolver net.Resolver
		lookupHost = resolver.LookupHost
	}

	timeout := hp.lookupTimeout
	if timeout == 0 {
		timeout = _defaultLookupTimeout
	}

	type answer struct {
		addrs []string
		err   error
	}
	answers := make([]answer, len(servers))
	var wg sync.WaitGroup
	for i, server := range servers {
		i, server := i, server // this module's go version shares loop variables
		host, port, err := net.SplitHostPort(server)
		if err != nil {
			answers[i] = answer{nil, err}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			addrs, err := lookupHost(ctx, host)
			for j, addr := range addrs {
				addrs[j] = net.JoinHostPort(addr, port)
			}
			if err == nil && len(addrs) == 0 {
				err = fmt.Errorf("no addresses for %s", host)
			}
			answers[i] = answer{addrs, err}
		}()
	}
	wg.Wait()

	for i, a := range answers {
		if a.err != nil {
			left = append(left, servers[i])
			errs = append(errs, a.err)
			continue
		}
		found = append(found, a.addrs...)
	}
	return found, left, errs
}

// Len returns the number of servers available
func (hp *DNSHostProvider) Len() int {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	return len(hp.servers)
}

// Next returns the next server to connect to. retryStart will be true
// if we've looped through all known servers without Connected() being
// called.
func (hp *DNSHostProvider) Next() (server string, retryStart bool) {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	hp.curr = (hp.curr + 1) % len(hp.servers)
	retryStart = hp.curr == hp.last
	if hp.last == -1 {
		hp.last = 0
	}
	if retryStart && len(hp.left) > 0 && !hp.looking {
		// Gone round the servers found without a connection: those
		// left out by Init are looked up again (a name that did not
		// resolve for a moment), in the background: the caller holds
		// the connection's lock, and a lookup may take lookupTimeout.
		// What resolves joins the servers for the next rounds.
		// (Patched.)
		hp.looking = true
		left := append([]string(nil), hp.left...)
		go func() {
			found, still, _ := hp.resolve(left)
			stringShuffle(found)
			hp.mu.Lock()
			defer hp.mu.Unlock()
			known := make(map[string]bool, len(hp.servers))
			for _, s := range hp.servers {
				known[s] = true
			}
			for _, s := range found {
				if !known[s] {
					hp.servers = append(hp.servers, s)
					known[s] = true
				}
			}
			hp.left, hp.looking = still, false
		}()
	}
	return hp.servers[hp.curr], retryStart
}

// Connected notifies the HostProvider of a successful connection.
func (hp *DNSHostProvider) Connected() {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	hp.last = hp.curr
}
