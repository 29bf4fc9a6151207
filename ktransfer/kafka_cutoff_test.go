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
	defer ktransfer.SetPartitionPoll(time.Second)()
	cut := kafkatest.NewCutter()
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 4}}, cut.Listen())
	z := zktest.Start(t)
	e := &env{kafka: k, zkAdr: z.Addr, conn: envConn(t, z.Addr), kc: kafkaconf.Default()}
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	startAs := func(clientID string) (*ktransfer.Transfer, string) {
		cfg := e.config(t, 0, m)
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
	a, aAdmin := startAs("a")
	waitFor(t, "a holding every partition", 10*time.Second, func() bool { return len(a.Status()[0].Partitions) == 4 })
	other, _ := startAs("b")
	waitFor(t, "2 + 2", 10*time.Second, func() bool { return halves(e.owners(t, "m", "t"), 4) })

	cut.Cut("a")
	cutAt := time.Now()
	var want []string
	for p := range int32(4) {
		keys := []string{fmt.Sprintf("p%d-x", p), fmt.Sprintf("p%d-y", p)}
		writeKeys(t, e, p, keys)
		want = append(want, keys...)
	}
	waitFor(t, "every record of the 4 partitions pushed, a cut off the brokers", 20*time.Second, func() bool {
		seen := map[string]bool{}
		for _, p := range b.got() {
			seen[p.key] = true
		}
		for _, k := range want {
			if !seen[k] {
				return false
			}
		}
		return true
	})
	t.Logf("every record pushed %v after the cut (kafka_cutoff_ms 2000)", time.Since(cutAt).Round(time.Millisecond))
	if n := len(a.Status()[0].Partitions); n != 0 {
		t.Errorf("a holds %d partitions, cut off the brokers", n)
	}
	if n := len(other.Status()[0].Partitions); n != 4 {
		t.Errorf("b holds %d partitions, want all 4", n)
	}
	if code := healthStatus(aAdmin); code != http.StatusServiceUnavailable {
		t.Errorf("a's /health %d, cut off the brokers; want 503", code)
	}

	cut.Restore("a")
	waitFor(t, "2 + 2 again once a reaches the brokers", 20*time.Second, func() bool { return halves(e.owners(t, "m", "t"), 4) })
	if code := healthStatus(aAdmin); code != http.StatusOK {
		t.Errorf("a's /health %d once it reaches the brokers again; want 200", code)
	}
}
