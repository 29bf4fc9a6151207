package ktransfer_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestProcessCutOffKafkaLeavesItsPartitions: of two processes sharing a
// topic's 4 partitions, one loses its route to the brokers (its
// connections closed, new ones refused) while ZooKeeper still answers it.
// Its session lives, so before, it kept its 2 partitions for as long as
// the cut lasted, and none of their records was pushed, the other process
// idle beside them. Now, kafka_cutoff_ms after its requests stopped being
// answered, it deregisters and hands them over, and /health says why: the
// other process pushes every record of the 4 partitions. When the route
// comes back, it registers again and takes its share.
func TestProcessCutOffKafkaLeavesItsPartitions(t *testing.T) {
	f, a, aAdmin, b := sharingCutFleet(t)

	f.cut.Cut("a")
	cutAt := time.Now()
	f.pushedAll(t, "every record of the 4 partitions pushed, a cut off the brokers", f.write(t, "cut"))
	t.Logf("every record pushed %v after the cut (kafka_cutoff_ms 2000)", time.Since(cutAt).Round(time.Millisecond))
	if n := len(a.Status()[0].Partitions); n != 0 {
		t.Errorf("a holds %d partitions, cut off the brokers", n)
	}
	if n := len(b.Status()[0].Partitions); n != 4 {
		t.Errorf("b holds %d partitions, want all 4", n)
	}
	if code := healthStatus(aAdmin); code != http.StatusServiceUnavailable {
		t.Errorf("a's /health %d, cut off the brokers; want 503", code)
	}

	f.cut.Restore("a")
	waitFor(t, "2 + 2 again once a reaches the brokers", 20*time.Second, func() bool { return halves(f.env.owners(t, "m", "t"), 4) })
	if code := healthStatus(aAdmin); code != http.StatusOK {
		t.Errorf("a's /health %d once it reaches the brokers again; want 200", code)
	}
}

// TestProcessFrozenOffKafkaLeavesItsPartitions: as
// TestProcessCutOffKafkaLeavesItsPartitions, the route silent instead of
// refused: a's connections to the brokers stay open and nothing of them
// is read (packets dropped, a frozen broker host), so its requests wait
// for kgo's own timeouts. a still steps aside kafka_cutoff_ms after its
// first unanswered request, its hand-over not held by the silent reads,
// and the other process pushes every record.
func TestProcessFrozenOffKafkaLeavesItsPartitions(t *testing.T) {
	f, _, aAdmin, b := sharingCutFleet(t)

	t.Cleanup(func() { f.cut.Restore("a") }) // before the processes stop: a's reads end
	f.cut.Freeze("a")
	frozen := time.Now()
	f.pushedAll(t, "every record of the 4 partitions pushed, a's route to the brokers silent", f.write(t, "frozen"))
	t.Logf("every record pushed %v after the freeze (kafka_cutoff_ms 2000)", time.Since(frozen).Round(time.Millisecond))
	if n := len(b.Status()[0].Partitions); n != 4 {
		t.Errorf("b holds %d partitions, want all 4", n)
	}
	if code := healthStatus(aAdmin); code != http.StatusServiceUnavailable {
		t.Errorf("a's /health %d, its route to the brokers silent; want 503", code)
	}
	f.cut.Restore("a")
	waitFor(t, "2 + 2 again once a's route answers", 30*time.Second, func() bool { return halves(f.env.owners(t, "m", "t"), 4) })
}

// TestKafkaAwayFromEveryProcessThenBack: the brokers answer neither
// process of a fleet (Kafka down as they see it): both step aside, and no
// partition stays claimed; when the brokers answer again both register,
// share the partitions, and push every record written meanwhile.
func TestKafkaAwayFromEveryProcessThenBack(t *testing.T) {
	t.Cleanup(ktransfer.SetPartitionPoll(time.Second)) // first: restored after the processes stopped
	t.Cleanup(ktransfer.SetKafkaCutoffLeast(2 * time.Second))
	f := newCutFleet(t)
	_, aAdmin := f.start(t, "a")
	_, bAdmin := f.start(t, "b")
	waitFor(t, "2 + 2", 10*time.Second, func() bool { return halves(f.env.owners(t, "m", "t"), 4) })
	f.cut.Cut("a")
	f.cut.Cut("b")
	waitFor(t, "no partition owned, the brokers answering neither process", 20*time.Second, func() bool {
		return len(f.env.owners(t, "m", "t")) == 0 && healthStatus(aAdmin) == http.StatusServiceUnavailable &&
			healthStatus(bAdmin) == http.StatusServiceUnavailable
	})
	written := f.write(t, "away")
	f.cut.Restore("a")
	f.cut.Restore("b")
	back := time.Now()
	f.pushedAll(t, "every record written while the brokers answered no process pushed once they do", written)
	t.Logf("every record pushed %v after the brokers answer again", time.Since(back).Round(time.Millisecond))
	waitFor(t, "2 + 2 again", 20*time.Second, func() bool { return halves(f.env.owners(t, "m", "t"), 4) })
}

// cutFleet is processes of one module on a 4-partition topic, each with
// its own kafka.client_id, which the cutter can cut off the brokers.
type cutFleet struct {
	env     *env
	cut     *kafkatest.Cutter
	backend *backend
	module  ktransfer.Module
}

func newCutFleet(t *testing.T) *cutFleet {
	cut := kafkatest.NewCutter()
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 4}}, cut.Listen())
	z := zktest.Start(t)
	e := &env{kafka: k, zkAdr: z.Addr, conn: envConn(t, z.Addr), kc: kafkaconf.Default()}
	b := newBackend(t, nil)
	return &cutFleet{env: e, cut: cut, backend: b, module: module("m", "t", b.URL)}
}

// start runs a process of the fleet as clientID with kafka_cutoff_ms
// 2000, its admin listener on a free port (the returned URL).
// sharingCutFleet is a cut fleet whose processes a (which held every
// partition first) and b share the 4 partitions, 2 + 2; and a's admin
// address. Its seams are set for the test (partition poll 1 s, the
// cutoff's floor 2 s), restored after the processes stopped.
func sharingCutFleet(t *testing.T) (f *cutFleet, a *ktransfer.Transfer, aAdmin string, b *ktransfer.Transfer) {
	t.Helper()
	t.Cleanup(ktransfer.SetPartitionPoll(time.Second)) // first: restored after the processes stopped
	t.Cleanup(ktransfer.SetKafkaCutoffLeast(2 * time.Second))
	f = newCutFleet(t)
	a, aAdmin = f.start(t, "a")
	waitFor(t, "a holding every partition", 10*time.Second, func() bool { return len(a.Status()[0].Partitions) == 4 })
	b, _ = f.start(t, "b")
	waitFor(t, "2 + 2", 10*time.Second, func() bool { return halves(f.env.owners(t, "m", "t"), 4) })
	return f, a, aAdmin, b
}

func (f *cutFleet) start(t *testing.T, clientID string) (*ktransfer.Transfer, string) {
	t.Helper()
	cfg := f.env.config(t, 0, f.module)
	cfg.Kafka.ClientID = clientID
	cfg.KafkaCutoffMs = 2000
	cfg.AdminAddr = "127.0.0.1:0"
	tr, err := ktransfer.New(cfg, testLog(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	return tr, "http://" + tr.AdminAddr().String()
}

// write writes two keys to each partition, named after tag; it returns
// the keys.
func (f *cutFleet) write(t *testing.T, tag string) []string {
	var keys []string
	for p := range int32(4) {
		ks := []string{fmt.Sprintf("%s-p%d-x", tag, p), fmt.Sprintf("%s-p%d-y", tag, p)}
		writeKeys(t, f.env, p, ks)
		keys = append(keys, ks...)
	}
	return keys
}

// pushedAll waits until the backend was pushed every key of keys.
func (f *cutFleet) pushedAll(t *testing.T, what string, keys []string) {
	t.Helper()
	waitFor(t, what, 20*time.Second, func() bool {
		seen := map[string]bool{}
		for _, p := range f.backend.got() {
			seen[p.key] = true
		}
		for _, k := range keys {
			if !seen[k] {
				return false
			}
		}
		return true
	})
}
