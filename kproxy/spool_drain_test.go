package kproxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
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

// awaitParked waits (up to 15 s) until the drain holds topic back
// (kproxy_spool_parked_records has it): Kafka refused a record of it, or
// its chunk was set aside unanswered.
func awaitParked(t testing.TB, p *proxy, topic string) {
	t.Helper()
	name := `kproxy_spool_parked_records{topic="` + topic + `"}`
	deadline := time.Now().Add(15 * time.Second)
	for v := p.metric(t, name); v == "absent" || v == "0"; v = p.metric(t, name) {
		if time.Now().After(deadline) {
			t.Fatalf("%s not parked in 15 s: %s %s, spool records %s", topic, name, v, p.metric(t, "kproxy_spool_records"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// admin is an admin client of c for the test.
func admin(t testing.TB, c *kfake.Cluster) (*kadm.Client, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return kadm.NewClient(kafkatest.Client(t, c, kafkaconf.Default())), ctx
}

// keySeqsWritten reads topic back and returns the "key#i" of each record
// whose value is the JSON string "key#i#filler", in offset order.
func keySeqsWritten(t testing.TB, c *kfake.Cluster, topic string) []string {
	t.Helper()
	var got []string
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		var s string
		if json.Unmarshal(r.Value, &s) == nil && strings.Count(s, "#") == 2 {
			got = append(got, s[:strings.LastIndex(s, "#")])
		}
	}
	return got
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
	// The outage refuses produce requests: the live client's batches are
	// taken into the spool while out (counted as possible duplicates) and
	// one it sent just before the outage ended can still be written (a
	// loaded run: all 40 records of topic in Kafka twice).
	if dups, possible := checkKeyOrderJSON(t, c, want), metricInt(t, p, "kproxy_spool_duplicates_possible_total"); dups > possible {
		t.Errorf("%d duplicates in %s, only %d counted as possible", dups, topic, possible)
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

// limitOutage starts a one-partition topic and a spooling kproxy without
// linger, writes a first record (the topic is then known with its
// max.message.bytes, 1 MB by default) and starts an outage (every produce
// refused NOT_LEADER_OR_FOLLOWER) that end stops.
func limitOutage(t *testing.T) (*kfake.Cluster, *proxy, func()) {
	t.Helper()
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := spoolProxy(t, c, func(cfg *kproxy.Config) { cfg.LingerMs = 0 })
	warmUp(t, p, "topic="+topic+"&key=first", unique(t, "first"))
	return c, p, kafkatest.NewFaults(t, c).Outage(kerr.NotLeaderForPartition.Code)
}

// TestSpoolDrainLoweredLimit: the topic's max.message.bytes is lowered
// while its records wait in the spool; each still fits. The drain's client
// built its batches for the old limit: the broker refuses them
// (MESSAGE_TOO_LARGE), the drain reads the topic's limit again and its
// records drain in a few seconds, in order, each once.
func TestSpoolDrainLoweredLimit(t *testing.T) {
	c, p, end := limitOutage(t)
	const n = 200
	big := strings.Repeat("x", 2000)
	recs := make([]map[string]any, n)
	want := map[string][]int{}
	for i := range recs {
		key := "k" + strconv.Itoa(i%2)
		recs[i] = map[string]any{"key": key, "value": key + "#" + strconv.Itoa(i) + "#" + big}
		want[key] = append(want[key], i)
	}
	if code, a := postBatch(t, p, "acks=-1&topic="+topic, recs); code != 202 {
		t.Fatalf("batch during the outage: %d %s", code, a.Error)
	}
	// The operator lowers max.message.bytes to 50 kB: each record (2 kB)
	// fits with room to spare, a batch built for 1 MB does not.
	setMaxMessageBytes(t, c, topic, 50000)
	clientsAnswered(t, p)
	end()
	deadline := time.Now().Add(15 * time.Second)
	for metricInt(t, p, "kproxy_spool_records") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("spool not drained in 15 s: records %s, drained %s, drain errors %s",
				p.metric(t, "kproxy_spool_records"), p.metric(t, "kproxy_spool_drained_total"), p.metric(t, "kproxy_spool_drain_errors_total"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	dups := checkFirstCopies(t, c, want, func(v []byte) (string, int) {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "first", -1 // the record written before the outage
		}
		parts := strings.SplitN(s, "#", 3)
		i, _ := strconv.Atoi(parts[1])
		return parts[0], i
	})
	if dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	t.Logf("drain errors %s", p.metric(t, "kproxy_spool_drain_errors_total"))
}

// TestSpoolDrainOneOffRefusalsKeepKeyOrder: thousands of spooled records
// of a few keys drain while the broker refuses a produce request now and
// then, once each (TOPIC_AUTHORIZATION_FAILED: kgo fails the partition's
// buffered records and does not retry them). The drain sends them again,
// and no record of a key is first written before an older one of that key.
func TestSpoolDrainOneOffRefusalsKeepKeyOrder(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	// Small batches: many produce requests, each partition's records in
	// several batches of one request after another.
	p := spoolProxy(t, c, func(cfg *kproxy.Config) { cfg.LingerMs, cfg.MaxMessageBytes = 0, 16000 })
	f := kafkatest.NewFaults(t, c)
	end := f.Outage(kerr.NotLeaderForPartition.Code)
	const n, keys, per = 12000, 6, 2000
	want := map[string][]int{}
	for b := 0; b < n/per; b++ {
		recs := make([]map[string]any, per)
		for j := range recs {
			i := b*per + j
			key := "k" + strconv.Itoa(i%keys)
			recs[j] = map[string]any{"key": key, "value": key + "#" + strconv.Itoa(i)}
			want[key] = append(want[key], i)
		}
		if code, a := postBatch(t, p, "acks=-1&topic="+topic, recs); code != 202 {
			t.Fatalf("batch %d during the outage: %d %s", b, code, a.Error)
		}
	}
	clientsAnswered(t, p)
	end()
	f.ErrorProduceEvery(5, 4, kerr.TopicAuthorizationFailed.Code)
	deadline := time.Now().Add(60 * time.Second)
	for metricInt(t, p, "kproxy_spool_records") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("spool not drained in 60 s: records %s, drain errors %s",
				p.metric(t, "kproxy_spool_records"), p.metric(t, "kproxy_spool_drain_errors_total"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if f.Injected() == 0 || metricInt(t, p, "kproxy_spool_drain_errors_total") == 0 {
		t.Fatalf("no refusal reached the drain: injected %d, drain errors %s", f.Injected(), p.metric(t, "kproxy_spool_drain_errors_total"))
	}
	dups := checkKeyOrderJSON(t, c, want)
	t.Logf("refusals injected %d, drain errors %s, duplicates %d", f.Injected(), p.metric(t, "kproxy_spool_drain_errors_total"), dups)
}

// TestSpoolDrainTooLargeRecordHoldsItsKey: a spooled record larger than
// the topic's max.message.bytes, lowered while it waited, is not produced:
// its topic is parked at it, and the later records of its key wait behind
// it instead of being written ahead of it (kgo fails a record too large
// for its batch limit alone and sends the ones after it). Once the
// operator raises the limit again, they drain, in order.
func TestSpoolDrainTooLargeRecordHoldsItsKey(t *testing.T) {
	c, p, end := limitOutage(t)
	small, big := strings.Repeat("s", 100), strings.Repeat("B", 60000)
	recs := []map[string]any{
		{"key": "k", "value": "k#0#" + small},
		{"key": "k", "value": "k#1#" + big},
		{"key": "k", "value": "k#2#" + small},
		{"key": "k", "value": "k#3#" + small},
	}
	if code, a := postBatch(t, p, "acks=-1&topic="+topic, recs); code != 202 {
		t.Fatalf("batch during the outage: %d %s", code, a.Error)
	}
	setMaxMessageBytes(t, c, topic, 50000)
	clientsAnswered(t, p)
	end()
	written := func() []string { return keySeqsWritten(t, c, topic) }
	// k#0 is written; k#1 (too large now) and everything after it wait.
	deadline := time.Now().Add(15 * time.Second)
	for len(written()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("k#0 not written in 15 s: spool records %s", p.metric(t, "kproxy_spool_records"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(4 * time.Second) // at least one retry of the parked topic
	if got := written(); len(got) != 1 || got[0] != "k#0" {
		t.Fatalf("written while k#1 is too large for the topic: %v, want [k#0]: per-key order broken", got)
	}
	if n := metricInt(t, p, "kproxy_spool_records"); n != 3 {
		t.Errorf("spool records %d, want 3 (k#1..k#3 kept)", n)
	}
	if n := metricInt(t, p, "kproxy_spool_drain_errors_total"); n == 0 {
		t.Error("the record too large is not counted in kproxy_spool_drain_errors_total")
	}
	setMaxMessageBytes(t, c, topic, 1000000)
	deadline = time.Now().Add(45 * time.Second) // the pause doubles to 4 s, 8 s, …
	for metricInt(t, p, "kproxy_spool_records") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not drained 45 s after the limit was raised: written %v", written())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := fmt.Sprint(written()); got != "[k#0 k#1 k#2 k#3]" {
		t.Errorf("written %s, want [k#0 k#1 k#2 k#3]", got)
	}
}

// TestSpoolDrainRetryNotTakenForDuplicate: k#0 and k#1 wait in the spool;
// the topic's max.message.bytes is lowered below k#1's size meanwhile. k#0
// drains alone, a batch of one record; k#1 waits. Once the limit is raised,
// k#1 drains alone too, again a batch of one record to the same partition.
// The drain rebuilds the topic's batches for the new limit: were it to do
// so in the client that wrote k#0 (its producer ID, the partition's
// sequence numbers started over at 0), the broker would take k#1's batch
// for a retry of k#0's (same producer, same sequence range), answer it
// with k#0's offset and drop it: k#1 acknowledged, removed from the spool,
// and not in Kafka.
func TestSpoolDrainRetryNotTakenForDuplicate(t *testing.T) {
	c, p, end := limitOutage(t)
	recs := []map[string]any{
		{"key": "k", "value": "k#0#" + strings.Repeat("s", 100)},
		{"key": "k", "value": "k#1#" + strings.Repeat("B", 60000)},
	}
	if code, a := postBatch(t, p, "acks=-1&topic="+topic, recs); code != 202 {
		t.Fatalf("batch during the outage: %d %s", code, a.Error)
	}
	setMaxMessageBytes(t, c, topic, 50000)
	clientsAnswered(t, p)
	end()
	deadline := time.Now().Add(15 * time.Second)
	for metricInt(t, p, "kproxy_spool_records") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("k#0 not drained alone in 15 s: spool records %s, written %v", p.metric(t, "kproxy_spool_records"), keySeqsWritten(t, c, topic))
		}
		time.Sleep(50 * time.Millisecond)
	}
	setMaxMessageBytes(t, c, topic, 1000000)
	deadline = time.Now().Add(45 * time.Second)
	for metricInt(t, p, "kproxy_spool_records") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("k#1 not drained 45 s after the limit was raised: written %v", keySeqsWritten(t, c, topic))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := fmt.Sprint(keySeqsWritten(t, c, topic)); got != "[k#0 k#1]" {
		t.Errorf("written %s once the spool is empty, want [k#0 k#1]: k#1 acknowledged but not in Kafka", got)
	}
}

// TestSpoolDrainStuckPartitionHoldsNoOtherTopic: after an outage, topic
// stuck's partition keeps answering NOT_ENOUGH_REPLICAS (retriable: the
// drain client retries it without end). The healthy topic's spooled
// record is acknowledged meanwhile, so that its new records go to Kafka
// directly again (200), and the stall shows in
// kproxy_spool_drain_waiting_records; once stuck heals, it drains too.
func TestSpoolDrainStuckPartitionHoldsNoOtherTopic(t *testing.T) {
	const stuck = "stuck"
	c := kafkatest.StartBrokers(t, 2, []kafkatest.Topic{{Name: topic, Partitions: 1}, {Name: stuck, Partitions: 1}})
	if err := c.MoveTopicPartition(topic, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.MoveTopicPartition(stuck, 0, 1); err != nil {
		t.Fatal(err)
	}
	f := kafkatest.NewFaults(t, c)
	end := f.Outage(kerr.NotLeaderForPartition.Code)
	p := spoolProxy(t, c, nil)
	if a := p.post(t, "topic="+stuck+"&key=s", unique(t, "s")); a.code != 202 {
		t.Fatalf("%s: %d %s", stuck, a.code, a.body)
	}
	if a := p.post(t, "topic="+topic+"&key=e", unique(t, "e1")); a.code != 202 {
		t.Fatalf("%s: %d %s", topic, a.code, a.body)
	}
	clientsAnswered(t, p)
	heal := refuseOn(c, 1, kerr.NotEnoughReplicas.Code) // stuck's leader, from before the outage ends
	end()
	deadline := time.Now().Add(30 * time.Second)
	for metricInt(t, p, "kproxy_spool_records") != 1 {
		if time.Now().After(deadline) {
			heal()
			t.Fatalf("%s's record not drained in 30 s while %s's partition is stuck: spool records %s, drained %s",
				topic, stuck, p.metric(t, "kproxy_spool_records"), p.metric(t, "kproxy_spool_drained_total"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	postDirect(t, p, "topic="+topic+"&key=e", unique(t, "e2"))
	// A record Kafka took is handed for acknowledgement in the spool
	// (which then counts it out), then counted out of the drain's waiting
	// records (spooler.drained, behind the drain's lock): the second count
	// may come after the first.
	waiting := func() int { return metricInt(t, p, "kproxy_spool_drain_waiting_records") }
	if n := settled(waiting, func(n int) bool { return n == 1 }); n != 1 {
		t.Errorf("kproxy_spool_drain_waiting_records %d, want 1 (%s's record)", n, stuck)
	}
	heal()
	spoolEmpty(t, p)
}

// twoBrokers starts two brokers, the partition of each stuck topic led by
// broker 1 and of each healthy topic by broker 0.
func twoBrokers(t *testing.T, stuck []string, healthy ...string) *kfake.Cluster {
	t.Helper()
	var topics []kafkatest.Topic
	for _, n := range append(append([]string{}, stuck...), healthy...) {
		topics = append(topics, kafkatest.Topic{Name: n, Partitions: 1})
	}
	c := kafkatest.StartBrokers(t, 2, topics)
	for _, n := range stuck {
		if err := c.MoveTopicPartition(n, 0, 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range healthy {
		if err := c.MoveTopicPartition(n, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestSpoolDrainSecondStuckChunkHoldsNoOtherTopic: s1's partition is stuck
// (NOT_ENOUGH_REPLICAS: retried without end), its chunk set aside after
// 2 s; then s2's record, on the same broker, stalls the next chunk too. A
// healthy topic's record spooled behind them drains all the same (the
// second chunk is set aside as well), and once the broker heals, s1 and
// s2 drain.
func TestSpoolDrainSecondStuckChunkHoldsNoOtherTopic(t *testing.T) {
	const s1, s2, h = "s1", "s2", "h"
	c := twoBrokers(t, []string{s1, s2}, h)
	f := kafkatest.NewFaults(t, c)
	end := f.Outage(kerr.NotLeaderForPartition.Code)
	p := spoolProxy(t, c, nil)
	if a := p.post(t, "topic="+s1+"&key=a", unique(t, "a1")); a.code != 202 {
		end()
		t.Fatalf("%s: %d %s", s1, a.code, a.body)
	}
	clientsAnswered(t, p)
	heal := refuseOn(c, 1, kerr.NotEnoughReplicas.Code)
	defer heal()
	end()
	awaitParked(t, p, s1) // past drainAside (2 s): s1's chunk is set aside
	if a := p.post(t, "topic="+s2+"&key=b", unique(t, "b1")); a.code != 202 {
		t.Fatalf("%s: %d %s", s2, a.code, a.body)
	}
	waitFor(t, "s2's chunk out, and stalled", func() bool { return metricInt(t, p, "kproxy_spool_drain_waiting_records") >= 2 })
	healH := refuseOn(c, 0, kerr.NotLeaderForPartition.Code) // h's record is spooled
	a := p.post(t, "topic="+h+"&key=c", unique(t, "c1"))
	healH()
	if a.code != 202 {
		t.Fatalf("%s: %d %s", h, a.code, a.body)
	}
	deadline := time.Now().Add(15 * time.Second)
	for metricInt(t, p, "kproxy_spool_records") > 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%s's record not drained in 15 s while %s and %s are stuck: spool records %s, waiting %s",
				h, s1, s2, p.metric(t, "kproxy_spool_records"), p.metric(t, "kproxy_spool_drain_waiting_records"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	heal()
	spoolEmpty(t, p)
}

// TestSpoolDrainTopicAnsweredInStuckChunkDrainsOn: s1's partition is stuck
// for good; u's broker holds its produce requests for 3 s (slow, not
// stuck): both are unanswered when their chunk is set aside at 2 s, and u
// is parked. Once Kafka answered u's record, u drains on without waiting
// for s1: its record is acked, u's record spooled while it was parked is
// produced, and u's new records go to Kafka directly again (200).
func TestSpoolDrainTopicAnsweredInStuckChunkDrainsOn(t *testing.T) {
	const s1, u = "s1", "u"
	c := twoBrokers(t, []string{s1}, u)
	f := kafkatest.NewFaults(t, c)
	end := f.Outage(kerr.NotLeaderForPartition.Code)
	p := spoolProxy(t, c, nil)
	recs := []map[string]any{{"topic": s1, "key": "a", "value": "a1"}, {"topic": u, "key": "b", "value": "b1"}}
	if code, a := postBatch(t, p, "acks=-1", recs); code != 202 {
		end()
		t.Fatalf("batch: %d %s", code, a.Error)
	}
	clientsAnswered(t, p)
	heal := refuseOn(c, 1, kerr.NotEnoughReplicas.Code)
	defer heal()
	release := make(chan struct{})
	stopHold := holdOn(c, 0, release)
	end()
	awaitParked(t, p, u) // past drainAside (2 s): the chunk is set aside, u parked
	if a := p.post(t, "topic="+u+"&key=b", unique(t, "b2")); a.code != 202 {
		close(release)
		stopHold()
		t.Fatalf("%s while parked: %d %s, want 202 (spooled behind b1)", u, a.code, a.body)
	}
	time.Sleep(500 * time.Millisecond)
	close(release)
	stopHold()
	deadline := time.Now().Add(30 * time.Second)
	for metricInt(t, p, "kproxy_spool_records") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%s's records not drained 30 s after its broker answered (%s stuck): spool records %s, waiting %s, %s in kafka: %d",
				u, s1, p.metric(t, "kproxy_spool_records"), p.metric(t, "kproxy_spool_drain_waiting_records"), u,
				len(kafkatest.ReadAll(t, c, kafkaconf.Default(), u)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	postDirect(t, p, "topic="+u+"&key=b", unique(t, "b3"))
	heal()
	spoolEmpty(t, p)
}

// TestSpoolDrainStuckTopicTrafficHoldsNoOtherTopic: after an outage,
// partition 0 of topic events keeps answering NOT_ENOUGH_REPLICAS while
// events's live traffic keeps spooling, far past the drain's memory for
// parked records (64 KiB here). Topic b's records, spooled before and
// after, drain all the same: the drain leaves events's records in the
// spool rather than in memory (it used to read no further once they filled
// it, holding every topic). Every record left waiting counts in
// kproxy_spool_parked_records. Once the partition heals, every events
// record is in Kafka once, in per-key order.
func TestSpoolDrainStuckTopicTrafficHoldsNoOtherTopic(t *testing.T) {
	const b, memory = "b", 64 << 10
	c := kafkatest.StartBrokers(t, 2, []kafkatest.Topic{{Name: topic, Partitions: 2}, {Name: b, Partitions: 1}})
	for _, m := range []struct {
		topic     string
		part, dst int32
	}{{topic, 0, 1}, {topic, 1, 0}, {b, 0, 0}} { // events[0] alone on broker 1
		if err := c.MoveTopicPartition(m.topic, m.part, m.dst); err != nil {
			t.Fatal(err)
		}
	}
	f := kafkatest.NewFaults(t, c)
	end := f.Outage(kerr.NotLeaderForPartition.Code)
	srv := spoolServer(t, c, nil)
	kproxy.SetDrainMemory(srv, memory)
	p := runProxy(t, srv)

	// Records of about 1 kB: keys of 500 bytes, values "key#n".
	pad := strings.Repeat("x", 500)
	wantE := map[string][]int{}
	nE, nB := 0, 0
	post := func(tp string, n int) {
		t.Helper()
		recs := make([]map[string]any, n)
		for j := range recs {
			i := nE
			if tp == b {
				i = nB
			}
			key := tp + strconv.Itoa(i%6) + "-" + pad
			recs[j] = map[string]any{"topic": tp, "key": key, "value": key + "#" + strconv.Itoa(i)}
			if tp == b {
				nB++
			} else {
				wantE[key] = append(wantE[key], i)
				nE++
			}
		}
		if code, a := postBatch(t, p, "acks=-1", recs); code != 202 {
			t.Fatalf("batch of %d %s records: %d %s, want 202 (spooled)", n, tp, code, a.Error)
		}
	}
	post(topic, 60)
	post(b, 20)
	heal := refuseOn(c, 1, kerr.NotEnoughReplicas.Code)
	defer heal()
	clientsAnswered(t, p)
	end()
	post(topic, 100)
	awaitParked(t, p, topic) // past drainAside (2 s): the chunk with events[0] is set aside, events parked
	for range 20 {
		post(topic, 50) // 1 MB, in the spool behind events's stuck records
	}
	healB := refuseOn(c, 0, kerr.NotLeaderForPartition.Code) // b's new records are spooled
	post(b, 20)
	clientsAnswered(t, p)
	healB()

	deadline := time.Now().Add(20 * time.Second)
	for {
		inKafka := len(kafkatest.ReadAll(t, c, kafkaconf.Default(), b))
		if inKafka >= nB {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's records stall behind %s's: %d of %d in kafka 20 s after they were spooled, while %s[0] is stuck "+
				"and %s's records spooled behind it (%d) exceed the drain's memory (%d bytes): spool records %s, waiting %s",
				b, topic, inKafka, nB, topic, topic, nE, memory, p.metric(t, "kproxy_spool_records"),
				p.metric(t, "kproxy_spool_drain_waiting_records"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// b's records are in Kafka: a new record of b goes to Kafka directly as
	// soon as the drain has counted their acknowledgements, while events
	// stays stuck.
	postDirect(t, p, "topic="+b+"&key=new", unique(t, "new"))
	if n, parked := p.metric(t, "kproxy_spool_records"), p.metric(t, `kproxy_spool_parked_records{topic="`+topic+`"}`); parked != n {
		t.Errorf("kproxy_spool_parked_records for %s %s, want every record left in the spool (%s): all are %s's", topic, parked, n, topic)
	}

	heal()
	spoolEmpty(t, p)
	if dups := checkKeyOrderJSON(t, c, wantE); dups != 0 {
		t.Errorf("%d duplicates in %s", dups, topic)
	}
	got := map[string]int{}
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), b) {
		got[string(r.Value)]++
	}
	if len(got) != nB+1 {
		t.Errorf("%s holds %d distinct records, want %d", b, len(got), nB+1)
	}
	for v, n := range got {
		if n != 1 {
			t.Errorf("%s: %s written %d times", b, v, n)
		}
	}
}
