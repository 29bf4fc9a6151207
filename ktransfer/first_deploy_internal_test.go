package ktransfer

import (
	"context"
	"log/slog"
	"path"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestFirstDeployStartsEveryPartitionPromptly attacks "a claimed partition
// starts at once" on a first deploy, where no partition has an offset node:
// two processes claim 100 partitions each, one after the other as their
// reconcile does, each partition starting as soon as it is claimed. A
// start's fencing must not depend on the claims of the module's other
// partitions: every start resolves its offset once and stores it at the
// first try. (The create of the offset node checked the version of the
// owners folder, which every claim moves: starts failed while the others
// were being claimed, each try resolving again; the last partition started
// about 10 s after its claim, after hundreds of "partition start failed"
// warnings and more than 4000 resolves instead of 200.)
func TestFirstDeployStartsEveryPartitionPromptly(t *testing.T) {
	const perProcess = 100
	z := zktest.Start(t)
	acl := zk.WorldACL(zk.PermAll)
	const chroot = "/mq/c"
	owners := zklayout.Owners(chroot, "m", "t")
	adm := kafkaAdmin(t, 2*perProcess)
	var log startLog
	var mods []*module
	for _, id := range []string{"A", "B"} {
		conn := zktest.ConnectSession(t, z.Addr, 10*time.Second)
		for _, d := range []string{owners, zklayout.Offsets(chroot, "m", "t")} {
			if err := zklayout.CreateAll(conn, d, acl); err != nil {
				t.Fatal(err)
			}
		}
		mods = append(mods, &module{
			t:   &Transfer{cfg: Config{ZKChroot: chroot}, zk: conn, acl: acl, id: id, adm: adm},
			cfg: Module{Name: "m", Topic: "t", StartFrom: "oldest"},
			log: slog.New(&log),
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var starts sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	var claims sync.WaitGroup
	for i, m := range mods {
		claims.Go(func() {
			for j := range perProcess {
				id := int32(i*perProcess + j)
				node := path.Join(owners, strconv.Itoa(int(id)))
				o, err := m.takeOwner(id, node)
				if err != nil {
					t.Error(err)
					return
				}
				p := newPartition(m, id, ctx)
				p.owner, p.epoch, p.ownerVersion, p.offsetVersion, p.session = node, o.epoch, o.version, o.offsetVersion, o.session
				claimed := time.Now()
				starts.Go(func() {
					if _, err := p.begin(ctx); err != nil {
						t.Errorf("partition %d: %v", id, err)
					}
					mu.Lock()
					worst = max(worst, time.Since(claimed))
					mu.Unlock()
				})
			}
		})
	}
	claims.Wait()
	starts.Wait()
	t.Logf("worst claim-to-start %v, %d start retries, %d resolves", worst, log.retries.Load(), log.resolves.Load())
	if n := log.retries.Load(); n > 0 {
		t.Errorf("%d %q warnings, want none", n, "partition start failed; retrying")
	}
	if n := log.resolves.Load(); n != 2*perProcess {
		t.Errorf("%d resolves, want one per partition (%d)", n, 2*perProcess)
	}
	// The bound only catches a start that hangs: on a loaded machine under
	// the race detector 200 ZooKeeper claims and starts take seconds. The
	// old bug is caught by the counts above (hundreds of retries, more
	// than 4000 resolves).
	if worst > 8*time.Second {
		t.Errorf("worst claim-to-start %v, want under 8s", worst)
	}
}

// startLog counts a start's log lines: its retries and its resolves.
type startLog struct {
	retries, resolves atomic.Int64
}

func (h *startLog) Enabled(context.Context, slog.Level) bool { return true }

func (h *startLog) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case "partition start failed; retrying":
		h.retries.Add(1)
	case "no stored offset; starting":
		h.resolves.Add(1)
	}
	return nil
}

func (h *startLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *startLog) WithGroup(string) slog.Handler      { return h }
