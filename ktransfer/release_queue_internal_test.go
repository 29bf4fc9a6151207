package ktransfer

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestReleasedRecordsLeaveTheQueues: a backend that never answers
// (protocol.read_timeout_ms 0, the default) holds the push of key K's
// first record; K's next records wait behind it in the scheduler, at most
// window_size of them. The partition is handed to another instance and
// claimed back, again and again (instances joining and leaving): each
// release gives the window's slots back and each claim reads the same
// records again. The records of the released claims stayed queued behind
// the push that never ends, window_size more per hand-over: what waits in
// the scheduler grew without bound, past the window that should bound it.
func TestReleasedRecordsLeaveTheQueues(t *testing.T) {
	const window, cycles = 10, 3
	for _, rule := range []string{dispatchIdleWorker, dispatchHash} {
		t.Run(rule, func(t *testing.T) {
			k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
			z := zktest.Start(t)
			conn := zktest.Connect(t, z.Addr)
			kc := kafkaconf.Default()

			hang := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-hang:
				case <-r.Context().Done():
				}
			}))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(hang) })

			cl := kafkatest.Client(t, k, kc)
			for range 3 * window {
				if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "t", Key: []byte("K"), Value: []byte("v")}).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}

			const chroot = "/mq/q"
			mc := DefaultModule()
			mc.Name, mc.File, mc.Topic = "m", "modules/m.yaml", "t"
			mc.Protocol.URI = "/push"
			mc.WorkerNum, mc.WindowSize, mc.Dispatch = 2, window, rule
			mc.BackendServers = []string{strings.TrimPrefix(srv.URL, "http://")}
			if err := mc.Validate(); err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			cfg.ZKTimeoutMs, cfg.ZKChroot, cfg.ZKHosts, cfg.BrokerHosts = 10000, chroot, []string{z.Addr}, k.ListenAddrs()
			cfg.AdminAddr, cfg.ShutdownTimeoutMs, cfg.Kafka = "", 200, kc
			cfg.Modules, cfg.ModuleEnabled = []Module{mc}, []string{"m"}
			tr, err := New(cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			runtest.Start(t, tr.Run, 20*time.Second)

			var m *module
			waitUntil := func(what string, cond func() bool) {
				t.Helper()
				deadline := time.Now().Add(10 * time.Second)
				for !cond() {
					if time.Now().After(deadline) {
						t.Fatalf("10 s without %s", what)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			waitUntil("the module", func() bool {
				if ms := tr.liveModules(); len(ms) > 0 {
					m = ms[0]
				}
				return m != nil
			})
			claim := func() *claimed {
				m.mu.Lock()
				defer m.mu.Unlock()
				return m.claims[0]
			}
			full := func(c *claimed) func() bool {
				return func() bool {
					now := claim()
					return now != nil && now != c && len(m.slots) == window
				}
			}
			waitUntil("the window filled", full(nil))

			owner := path.Join(zklayout.Owners(chroot, "m", "t"), "0")
			other := path.Join(zklayout.ConsumerIDs(chroot, "m"), "!other")
			for range cycles {
				// Another instance joins and holds the partition…
				c := claim()
				if _, err := conn.Create(other, []byte("{}"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
					t.Fatal(err)
				}
				if err := conn.Delete(owner, -1); err != nil {
					t.Fatal(err)
				}
				if _, err := conn.Create(owner, []byte("!other"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
					t.Fatal(err)
				}
				waitUntil("the release", func() bool { return claim() == nil })
				// …and leaves: the partition comes back and its records
				// are read again.
				if err := conn.Delete(owner, -1); err != nil {
					t.Fatal(err)
				}
				if err := conn.Delete(other, -1); err != nil {
					t.Fatal(err)
				}
				waitUntil("the claim back, its window filled", full(c))
			}
			if n := queued(m.sched); n > window {
				t.Errorf("after %d hand-overs and claims back, %d records wait in the scheduler (window_size %d): the released claims' records stay queued behind a push that never ends",
					cycles, n, window)
			}
		})
	}
}

// queued is how many records wait in s, not counting those being pushed.
func queued(s scheduler) int {
	n := 0
	switch s := s.(type) {
	case *keyLanes:
		s.mu.Lock()
		defer s.mu.Unlock()
		ready := map[*lane]bool{}
		for _, l := range s.ready {
			ready[l] = true
			n += len(l.recs) - l.head
		}
		for _, l := range s.byKey {
			if !ready[l] {
				n += len(l.recs) - l.head - 1 // its head is being pushed
			}
		}
	case *hashQueues:
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, q := range s.own {
			n += len(q)
		}
		n += len(s.shared)
	}
	return n
}
