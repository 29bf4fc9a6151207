package kproxy_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// The tests in this file attack the spool's drain (README "Spool",
// "Draining" and "A topic Kafka refuses while draining").

// metricInt reads a counter or gauge of p as an integer.
func metricInt(t testing.TB, p *proxy, name string) int {
	t.Helper()
	v := p.metric(t, name)
	n, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatalf("metric %s: %q", name, v)
	}
	return int(n)
}

// admin is an admin client of c for the test.
func admin(t testing.TB, c *kfake.Cluster) (*kadm.Client, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return kadm.NewClient(kafkatest.Client(t, c, kafkaconf.Default())), ctx
}

// TestSpoolDrainRefusedTopicDoesNotStall: topic gone has more spooled
// records than the drain has in flight at once (1000), ahead of topic
// events's; gone is deleted while they wait. Kafka refuses gone's records:
// they stay in the spool (not acknowledged, not lost), counted in
// kproxy_spool_drain_errors_total, while events's records behind them
// drain. Once gone is created again, its records drain too, in order.
func TestSpoolDrainRefusedTopicDoesNotStall(t *testing.T) {
	const gone = "gone"
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}, {Name: gone, Partitions: 2}})
	p := spoolProxy(t, c, nil)
	f := kafkatest.NewFaults(t, c)
	end := f.Outage(kerr.NotLeaderForPartition.Code)

	const goneN, liveN = 1500, 40
	recs := make([]map[string]any, goneN)
	for i := range recs {
		key := "g" + strconv.Itoa(i%7)
		recs[i] = map[string]any{"topic": gone, "key": key, "value": key + "#" + strconv.Itoa(i)}
	}
	if code, a := postBatch(t, p, "acks=-1", recs); code != 202 {
		t.Fatalf("batch for %s during the outage: %d %s", gone, code, a.Error)
	}
	recs = recs[:liveN]
	for i := range recs {
		key := "e" + strconv.Itoa(i%3)
		recs[i] = map[string]any{"topic": topic, "key": key, "value": key + "#" + strconv.Itoa(i)}
	}
	if code, a := postBatch(t, p, "acks=-1", recs); code != 202 {
		t.Fatalf("batch for %s during the outage: %d %s", topic, code, a.Error)
	}
	adm, ctx := admin(t, c)
	if resp, err := adm.DeleteTopics(ctx, gone); err != nil || resp[gone].Err != nil {
		t.Fatalf("delete %s: %v %v", gone, err, resp[gone].Err)
	}
	end()

	deadline := time.Now().Add(20 * time.Second)
	for metricInt(t, p, "kproxy_spool_drained_total") < liveN || metricInt(t, p, "kproxy_spool_drain_errors_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the drain stalls behind the refused topic: drained %s of %s's %d, drain errors %s, spool records %s",
				p.metric(t, "kproxy_spool_drained_total"), topic, liveN, p.metric(t, "kproxy_spool_drain_errors_total"),
				p.metric(t, "kproxy_spool_records"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := map[string][]int{}
	for i := range liveN {
		key := "e" + strconv.Itoa(i%3)
		want[key] = append(want[key], i)
	}
	if dups := checkKeyOrderJSON(t, c, want); dups != 0 {
		t.Errorf("%d duplicates in %s", dups, topic)
	}
	if got := metricInt(t, p, "kproxy_spool_records"); got != goneN {
		t.Errorf("kproxy_spool_records %d, want %s's %d records kept", got, gone, goneN)
	}
	if got := metricInt(t, p, "kproxy_spool_drained_total"); got != liveN {
		t.Errorf("kproxy_spool_drained_total %d, want %d: a record of the deleted topic counted as drained", got, liveN)
	}

	// The topic back: its records drain, in order, each once.
	if resp, err := adm.CreateTopic(ctx, 2, 1, nil, gone); err != nil || resp.Err != nil {
		t.Fatalf("create %s again: %v %v", gone, err, resp.Err)
	}
	deadline = time.Now().Add(45 * time.Second) // retried after 1, 2, 4, 8 … s
	for metricInt(t, p, "kproxy_spool_records") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s's records not drained after it came back: spool records %s", gone, p.metric(t, "kproxy_spool_records"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	last := map[string]int{}
	n := 0
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), gone) {
		var key string
		var i int
		if _, err := fmt.Sscanf(string(r.Value), "\"g%d#%d\"", new(int), &i); err != nil {
			t.Fatalf("value %q: %v", r.Value, err)
		}
		key = string(r.Key)
		if prev, ok := last[key]; ok && i <= prev {
			t.Errorf("%s key %s: record %d after %d", gone, key, i, prev)
		}
		last[key] = i
		n++
	}
	if n != goneN {
		t.Errorf("%s holds %d records, %d were spooled", gone, n, goneN)
	}
	t.Logf("drain errors %s", p.metric(t, "kproxy_spool_drain_errors_total"))
}
