package kafkatest

import (
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
)

// Restartable is a one-broker cluster that keeps its log in a directory
// and can be stopped and started again on the same port: Stop is Kafka
// going away as a client sees it (connections closed, then refused),
// Restart brings it back with every record it had.
type Restartable struct {
	t    testing.TB
	addr string
	opts []kfake.Opt // DataDir, the topics and the port

	mu sync.Mutex
	c  *kfake.Cluster // nil while stopped
}

// StartRestartable runs a one-broker cluster holding topics, its log in a
// temporary directory, and closes it at cleanup.
func StartRestartable(t testing.TB, topics []Topic, opts ...kfake.Opt) *Restartable {
	t.Helper()
	all := []kfake.Opt{kfake.NumBrokers(1), kfake.DataDir(t.TempDir())}
	for _, tp := range topics {
		all = append(all, kfake.SeedTopics(tp.Partitions, tp.Name))
	}
	all = append(all, opts...)
	// The port is below the ephemeral range (bintest.FreePort): while the
	// cluster is stopped, no connection of a test running beside it takes
	// it as its local port. One free a moment ago may still be taken
	// before the broker binds it: another is tried then.
	var c *kfake.Cluster
	var withPort []kfake.Opt
	var err error
	for range 3 {
		withPort = append(all[:len(all):len(all)], kfake.Ports(bintest.FreePort(t)))
		if c, err = kfake.NewCluster(withPort...); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	r := &Restartable{t: t, addr: c.ListenAddrs()[0], opts: withPort, c: c}
	t.Cleanup(r.Stop)
	return r
}

// Addr is the broker's address, the same across restarts.
func (r *Restartable) Addr() string {
	return r.addr
}

// Cluster is the running cluster (nil while stopped).
func (r *Restartable) Cluster() *kfake.Cluster {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c
}

// Stop closes the cluster (its log is flushed to the directory); a
// stopped cluster is left as it is.
func (r *Restartable) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c != nil {
		r.c.Close()
		r.c = nil
	}
}

// Restart starts the cluster again on its port over its directory; a
// running cluster is left as it is.
func (r *Restartable) Restart() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c != nil {
		return
	}
	c, err := kfake.NewCluster(r.opts...)
	if err != nil {
		r.t.Fatalf("restart kfake on %s: %v", r.addr, err)
	}
	r.c = c
}
