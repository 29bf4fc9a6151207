package kmonitor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// partDetail is one partition of /delay?detail=1.
type partDetail struct {
	Topic     string `json:"topic"`
	Partition string `json:"partition"`
	Lag       *int64 `json:"lag"`
	Committed *int64 `json:"committed"`
	LogEnd    *int64 `json:"log_end"`
	Error     string `json:"error"`
}

// details reads /delay?detail=1 as module -> partition -> detail.
func (e *env) details() (int, map[string]map[string]partDetail, error) {
	resp, err := http.Get(e.url + "/delay?detail=1")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, fmt.Errorf("%s", strings.TrimSpace(string(body)))
	}
	var v map[string]map[string]map[string]partDetail
	if err := json.Unmarshal(body, &v); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("decode %q: %w", body, err)
	}
	return resp.StatusCode, v["test_cluster"], nil
}

// TestLagRightWhileLeadersMove runs kmonitor against three brokers whose
// partition leaders are shuffled every 100 ms and moved one partition at a
// time in between, while records keep arriving and offsets keep being
// committed (each commit at most the log end kmonitor has shown). Every
// /delay answer meanwhile is a 200 with every partition present and known,
// its log end never going backwards nor below its committed offset (so the
// lag never needs clamping at 0); once the moves stop, every lag is the
// partition's end offset minus its committed offset in ZooKeeper.
func TestLagRightWhileLeadersMove(t *testing.T) {
	topics := map[string]string{"a": "m1", "b": "m2"} // topic -> the module reading it
	parts := map[string]int32{"a": 8, "b": 2}
	k := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: "a", Partitions: 8}, {Name: "b", Partitions: 2}})
	e := startOn(t, k, kafkaconf.Default(), zklayout.Auth{})
	for topic, n := range parts {
		for p := range n {
			produce(t, k, topic, p, 20)
			setOffset(t, e.conn, topics[topic], topic, strconv.Itoa(int(p)), "0")
		}
	}
	e.eventually(t, "", `{"test_cluster":{"m1":{"0":20,"1":20,"2":20,"3":20,"4":20,"5":20,"6":20,"7":20},"m2":{"0":20,"1":20}}}`+"\n", 20*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	// Records keep arriving on random partitions.
	cl := kafkatest.Client(t, k, kafkaconf.Default(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var produced atomic.Int64
	wg.Go(func() {
		for ctx.Err() == nil {
			topic := "a"
			if rand.IntN(5) == 0 {
				topic = "b"
			}
			r := &kgo.Record{Topic: topic, Partition: rand.Int32N(parts[topic]), Value: []byte("x")}
			pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
			if err := cl.ProduceSync(pctx, r).FirstErr(); err == nil {
				produced.Add(1)
			}
			pcancel()
		}
	})

	// The leaders move: all of them every 100 ms, one partition at a time
	// in between.
	stopShuffles := kafkatest.NewFaults(t, k).ShuffleEvery(100 * time.Millisecond)
	var moves atomic.Int64
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			topic := "a"
			if rand.IntN(2) == 0 {
				topic = "b"
			}
			if err := k.MoveTopicPartition(topic, rand.Int32N(parts[topic]), rand.Int32N(3)); err != nil {
				t.Errorf("move a partition of %s: %v", topic, err)
				return
			}
			moves.Add(1)
		}
	})

	// Meanwhile /delay is read without pause; every answer is checked, and
	// now and then a module commits up to a log end it has shown.
	committed := map[string]int64{} // "topic/partition" -> the offset last set in ZooKeeper
	for topic, n := range parts {
		for p := range n {
			committed[fmt.Sprintf("%s/%d", topic, p)] = 0
		}
	}
	lastEnd := map[string]int64{}
	answers, commits := 0, 0
	problems := 0
	problem := func(format string, args ...any) {
		problems++
		if problems <= 10 {
			t.Errorf(format, args...)
		}
	}
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
		code, byModule, err := e.details()
		if err != nil {
			problem("/delay?detail=1 during the moves: %d %v", code, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		answers++
		for topic, module := range topics {
			for p := range parts[topic] {
				key := fmt.Sprintf("%s/%d", topic, p)
				d, ok := byModule[module][strconv.Itoa(int(p))]
				switch {
				case !ok:
					problem("%s of %s missing from /delay: %v", key, module, byModule)
					continue
				case d.Lag == nil || d.LogEnd == nil || d.Committed == nil:
					problem("%s of %s unknown during the moves: %s", key, module, d.Error)
					continue
				case *d.LogEnd < lastEnd[key]:
					problem("%s: log end went back from %d to %d", key, lastEnd[key], *d.LogEnd)
				case *d.LogEnd < *d.Committed:
					problem("%s: log end %d below the committed offset %d", key, *d.LogEnd, *d.Committed)
				case *d.Lag < 0 || *d.Lag != *d.LogEnd-*d.Committed:
					problem("%s: lag %d, log end %d, committed %d", key, *d.Lag, *d.LogEnd, *d.Committed)
				}
				lastEnd[key] = max(lastEnd[key], *d.LogEnd)
				if rand.IntN(20) == 0 && lastEnd[key] > committed[key] {
					next := committed[key] + 1 + rand.Int64N(lastEnd[key]-committed[key])
					setOffset(t, e.conn, module, topic, strconv.Itoa(int(p)), strconv.FormatInt(next, 10))
					committed[key] = next
					commits++
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	shuffles := stopShuffles()
	t.Logf("%d answers checked during %d leader shuffles and %d partition moves; %d records produced, %d commits",
		answers, shuffles, moves.Load(), produced.Load(), commits)
	if shuffles < 10 || moves.Load() < 20 || commits == 0 {
		t.Fatalf("too few faults or commits to prove anything: %d shuffles, %d moves, %d commits", shuffles, moves.Load(), commits)
	}

	// Settled: lag = end offset - committed offset, for every partition.
	var want strings.Builder
	want.WriteString(`{"test_cluster":{`)
	for i, topic := range []string{"a", "b"} {
		if i > 0 {
			want.WriteString(",")
		}
		ends := kafkatest.EndOffsets(t, k, kafkaconf.Default(), topic)
		fmt.Fprintf(&want, "%q:{", topics[topic])
		for p := range parts[topic] {
			if p > 0 {
				want.WriteString(",")
			}
			fmt.Fprintf(&want, `"%d":%d`, p, ends[p]-committed[fmt.Sprintf("%s/%d", topic, p)])
		}
		want.WriteString("}")
	}
	want.WriteString("}}\n")
	e.eventually(t, "", want.String(), 10*time.Second)
}

// hungBrokerSetup starts 3 brokers and kmonitor (1 s polls) on topic a's
// 6 partitions, each with a lag of 2, and picks the broker that leads
// partition 0 to hang: healthy are the partitions the others lead.
func hungBrokerSetup(t *testing.T) (*kfake.Cluster, *env, int32, map[string]bool) {
	t.Helper()
	k := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: "a", Partitions: 6}})
	// The brokers place leaders at random: one broker leading all six
	// (one chance in 243) would leave no healthy partition to watch.
	l0, alone := k.LeaderFor("a", 0), true
	for p := range int32(6) {
		alone = alone && k.LeaderFor("a", p) == l0
	}
	if alone {
		if err := k.MoveTopicPartition("a", 5, (l0+1)%3); err != nil {
			t.Fatal(err)
		}
	}
	e := startWith(t, k, func(c *kmonitor.Config) { c.Base.PollIntervalMs = 1000 }, io.Discard)
	for p := range int32(6) {
		produce(t, k, "a", p, 3)
		setOffset(t, e.conn, "m", "a", strconv.Itoa(int(p)), "1")
	}
	e.eventually(t, "", `{"test_cluster":{"m":{"0":2,"1":2,"2":2,"3":2,"4":2,"5":2}}}`+"\n", 20*time.Second)
	hung := k.LeaderFor("a", 0)
	healthy := map[string]bool{}
	for p := range int32(6) {
		if k.LeaderFor("a", p) != hung {
			healthy[strconv.Itoa(int(p))] = true
		}
	}
	if len(healthy) == 0 {
		t.Fatalf("broker %d leads every partition", hung)
	}
	return k, e, hung, healthy
}

// One broker of three holds every ListOffsets request (it accepts
// connections but does not answer: stopped, or behind a dead link). The
// partitions the two others lead keep a known lag at the default poll
// interval (1 s), every answer throughout; those of the hung broker turn
// unknown once their log end is stale.
func TestHungBrokerDelaysOnlyItsOwnPartitions(t *testing.T) {
	k, e, hung, healthy := hungBrokerSetup(t)
	release := make(chan struct{})
	k.ControlKey(int16(kmsg.ListOffsets), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		if k.CurrentNode() == hung {
			k.SleepControl(func() {
				select {
				case <-release:
				case <-time.After(time.Minute):
				}
			})
		}
		return nil, nil, false
	})
	t.Cleanup(func() { close(release); k.DropControl() })

	// The hung broker's partitions go unknown after 6 s (poll interval
	// + 5 s); the others must stay known all along, and past that.
	hungUnknown := false
	for end := time.Now().Add(12 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		code, parts, err := e.details()
		if err != nil || code != 200 {
			t.Fatalf("/delay?detail=1: %d %v", code, err)
		}
		for p, d := range parts["m"] {
			switch {
			case healthy[p] && d.Lag == nil:
				t.Fatalf("partition %s, its leader alive, shown unknown while broker %d hangs: %s", p, hung, d.Error)
			case !healthy[p] && d.Lag == nil:
				hungUnknown = true
			}
		}
	}
	if !hungUnknown {
		t.Errorf("the partitions broker %d leads stayed known while it did not answer", hung)
	}
}

// A broker answers every ListOffsets with an error, then the partitions
// it leads move to the other brokers, which answer: every log end is known
// again, and the log says so (the broker that failed leads nothing any
// more; its failures must not be counted for ever).
func TestLogEndsKnownAgainAfterLeadersMoveAway(t *testing.T) {
	k := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: "a", Partitions: 3}})
	var log logBuffer
	e := startWith(t, k, nil, &log)
	for p := range int32(3) {
		produce(t, k, "a", p, 3)
		setOffset(t, e.conn, "m", "a", strconv.Itoa(int(p)), "1")
	}
	e.eventually(t, "", `{"test_cluster":{"m":{"0":2,"1":2,"2":2}}}`+"\n", 20*time.Second)
	sick := k.LeaderFor("a", 0)
	var moved atomic.Bool
	k.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		if k.CurrentNode() != sick || moved.Load() {
			return nil, nil, false
		}
		return listOffsetsFailed(req), nil, true
	})
	t.Cleanup(k.DropControl)
	if !waitFor(10*time.Second, func() bool { return log.count("log-end offsets unknown") > 0 }) {
		t.Fatalf("no warning while broker %d fails every ListOffsets", sick)
	}
	other := (sick + 1) % 3
	for p := range int32(3) {
		if k.LeaderFor("a", p) == sick {
			if err := k.MoveTopicPartition("a", p, other); err != nil {
				t.Fatal(err)
			}
		}
	}
	moved.Store(true)
	e.eventually(t, "", `{"test_cluster":{"m":{"0":2,"1":2,"2":2}}}`+"\n", 10*time.Second)
	if !waitFor(5*time.Second, func() bool { return log.count("log-end offsets known again") > 0 }) {
		t.Errorf("every log end known again after broker %d's partitions moved away, yet not logged", sick)
	}
}

// One broker of three stops answering anything at all (SIGSTOP, a dead
// link), Metadata requests included, not only ListOffsets: the partitions
// the two others lead keep a known lag all along; kmonitor reads them
// with the leaders it knows while the metadata it asks for does not come.
func TestBrokerHungOnEveryRequestDelaysOnlyItsOwnPartitions(t *testing.T) {
	k, e, hung, healthy := hungBrokerSetup(t)
	release := make(chan struct{})
	k.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		if k.CurrentNode() == hung {
			k.SleepControl(func() {
				select {
				case <-release:
				case <-time.After(time.Minute):
				}
			})
		}
		return nil, nil, false
	})
	t.Cleanup(func() { close(release); k.DropControl() })

	// kgo asks for metadata again when its copy is 5 s old, from any
	// broker: watch for three times that.
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		code, parts, err := e.details()
		if err != nil || code != 200 {
			t.Fatalf("/delay?detail=1: %d %v", code, err)
		}
		for p, d := range parts["m"] {
			if healthy[p] && d.Lag == nil {
				t.Fatalf("partition %s, its leader alive, shown unknown while broker %d hangs on every request: %s", p, hung, d.Error)
			}
		}
	}
}
