package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/valyala/fasthttp"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/msgpackscan"
)

const bin = 100 * time.Millisecond // the rate is counted per bin

// result is what one acks level's run gave.
type result struct {
	acks      string
	sent      int
	ok        int
	refused   map[int]int // status (0: no answer) → count
	inKafka   int         // records in the topic
	dups      int         // copies beyond the first of an id
	lost      int         // answered 200, not in Kafka
	lostBy    [3]int      // lost by the phase it was answered in: before, during, after the faults
	written   int         // answered non-200, in Kafka all the same
	cleanRate float64     // 200s per second, median of the clean bins
	faultRate float64     // 200s per second, mean over the faults
	recovery  time.Duration
	recovered bool
	shuffles  int
	cuts      int
}

// answer is one request's id, the status it got (0: no answer) and when,
// from the start of the run.
type answer struct {
	id     string
	status int
	at     time.Duration
}

// runLevel loads kproxy at acks for clean+faults+clean on topic, injecting
// the faults in the middle, then checks what Kafka holds.
func runLevel(c *kfake.Cluster, kp *kproxy, acks, topic string, layout leaders, conns int, clean, faults time.Duration, ra *refusedAppends) (result, error) {
	total := 2*clean + faults
	var delivered0 int // acks=0 records delivered or given up before the run
	if acks == "0" {
		var err error
		if delivered0, err = kp.acks0Settled(); err != nil {
			return result{}, err
		}
	}
	bins := make([]atomic.Int64, int(total/bin)+2)
	var stop atomic.Bool
	answers := make([][]answer, conns)
	client := &fasthttp.HostClient{Addr: strings.TrimPrefix(kp.url, "http://"), MaxConns: conns,
		ReadTimeout: 30 * time.Second, WriteTimeout: 5 * time.Second}
	start := time.Now()
	var wg sync.WaitGroup
	for cn := range conns {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for seq := 0; !stop.Load(); seq++ {
				id := "a" + acks + "-c" + strconv.Itoa(cn) + "-" + strconv.Itoa(seq)
				req.Reset()
				req.Header.SetMethod(fasthttp.MethodPost)
				req.SetRequestURI(kp.url + "/commit?topic=" + topic + "&acks=" + acks + "&key=k" + strconv.Itoa(cn) + "-" + strconv.Itoa(seq%64))
				req.SetBodyRaw(body(id))
				status := 0
				if err := client.Do(req, resp); err == nil {
					status = resp.StatusCode()
				}
				answers[cn] = append(answers[cn], answer{id, status, time.Since(start)})
				if status == fasthttp.StatusOK {
					if i := int(time.Since(start) / bin); i < len(bins) {
						bins[i].Add(1)
					}
				}
			}
		})
	}

	// The faults, from clean to clean+faults: every second a leader
	// shuffle, and the next produce request of one broker (in turn) has
	// its connection closed. At their end the leaders go back where they
	// were (as a preferred leader election does): a lopsided last shuffle
	// would otherwise keep the rate down for good.
	var faulting atomic.Bool
	var cuts atomic.Int64
	shuffles := 0
	time.Sleep(clean)
	faulting.Store(true)
	for i := 0; time.Since(start) < clean+faults; i++ {
		c.ShufflePartitionLeaders()
		shuffles++
		if ra != nil {
			ra.next(c, int32(i%3), &faulting, &cuts)
		} else {
			cutNextProduce(c, int32(i%3), &faulting, &cuts)
		}
		time.Sleep(min(time.Second, clean+faults-time.Since(start)))
	}
	faulting.Store(false)
	if err := layout.restore(c); err != nil {
		stop.Store(true)
		wg.Wait()
		return result{}, err
	}
	time.Sleep(total - time.Since(start))
	stop.Store(true)
	wg.Wait()

	r := result{acks: acks, refused: map[int]int{}, shuffles: shuffles, cuts: int(cuts.Load())}
	okIDs := map[string]time.Duration{}
	for _, as := range answers {
		for _, a := range as {
			r.sent++
			if a.status == fasthttp.StatusOK {
				r.ok++
				okIDs[a.id] = a.at
			} else {
				r.refused[a.status]++
			}
		}
	}
	if acks == "0" {
		// Answered before Kafka has them: Kafka is read once kproxy has
		// delivered or given up every one answered 200.
		if err := kp.awaitAcks0(delivered0+r.ok, 30*time.Second); err != nil {
			return r, err
		}
	}
	copies, err := readIDs(c, topic)
	if err != nil {
		return r, err
	}
	for id, n := range copies {
		r.inKafka += n
		r.dups += n - 1
		if _, ok := okIDs[id]; !ok {
			r.written++
		}
	}
	for id, at := range okIDs {
		if copies[id] == 0 {
			r.lost++
			switch {
			case at < clean:
				r.lostBy[0]++
			case at < clean+faults:
				r.lostBy[1]++
			default:
				r.lostBy[2]++
			}
		}
	}
	r.rates(bins, clean, faults)
	return r, nil
}

// leaders is the leader of each topic's partitions.
type leaders map[string]map[int32]int32

func leaderLayout(c *kfake.Cluster, topics []string, partitions int32) leaders {
	l := leaders{}
	for _, t := range topics {
		l[t] = map[int32]int32{}
		for p := range partitions {
			l[t][p] = c.LeaderFor(t, p)
		}
	}
	return l
}

// restore moves every partition's leadership back to its broker in l.
func (l leaders) restore(c *kfake.Cluster) error {
	for t, ps := range l {
		for p, node := range ps {
			if err := c.MoveTopicPartition(t, p, node); err != nil {
				return fmt.Errorf("move the leader of %s/%d back to broker %d: %w", t, p, node, err)
			}
		}
	}
	return nil
}

// cutNextProduce closes the connection of the next produce request broker
// node receives while faulting holds, without handling the request.
func cutNextProduce(c *kfake.Cluster, node int32, faulting *atomic.Bool, cuts *atomic.Int64) {
	var done atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if done.Load() || !faulting.Load() {
			c.DropControl()
			return nil, nil, false
		}
		if c.CurrentNode() != node {
			return nil, nil, false // kept for the next request
		}
		done.Store(true)
		cuts.Add(1)
		return nil, errors.New("faultbench: connection closed"), true
	})
}

// refusedAppends is the fault of a leader that appends a produce request,
// loses the leadership before its replicas acknowledged it and answers
// NOT_LEADER_OR_FOLLOWER (the new leader holding the records), followed by
// an election of window, during which the broker refuses every produce
// request so. With window above kproxy's produce_timeout_ms, Kafka's client
// gives the records up at their deadline.
type refusedAppends struct {
	window time.Duration
	side   *kgo.Client // forwards the appended request to the broker
}

// forwardedMark marks the copy of a produce request refusedAppends hands
// to the broker itself (its timeout), so that its fault lets it through.
const forwardedMark = 29_998

// next has broker node append the next acks=-1 produce request it receives
// while faulting holds, answer it NOT_LEADER_OR_FOLLOWER, and refuse every
// acks=-1 produce request so for ra.window after. Not at acks 1 and 0: a
// leader answers an acks=1 request as soon as it appended it, and only an
// acks=-1 one waits for the replicas while the leadership moves.
func (ra *refusedAppends) next(c *kfake.Cluster, node int32, faulting *atomic.Bool, appended *atomic.Int64) {
	var until atomic.Int64 // unix nanoseconds: refusing until then; 0: not appended yet
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		if !faulting.Load() || until.Load() != 0 && time.Now().UnixNano() > until.Load() {
			c.DropControl()
			return nil, nil, false
		}
		if pr.TimeoutMillis == forwardedMark || pr.Acks != -1 || c.CurrentNode() != node {
			return nil, nil, false // kept for the next request
		}
		c.KeepControl()
		if until.Load() == 0 {
			fwd := *pr
			fwd.TimeoutMillis = forwardedMark
			c.SleepControl(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := ra.side.Broker(int(node)).Request(ctx, &fwd); err != nil {
					fmt.Fprintf(os.Stderr, "faultbench: forwarding a produce request to broker %d: %v\n", node, err)
				}
			})
			until.Store(time.Now().Add(ra.window).UnixNano())
			appended.Add(1)
		}
		return kafkatest.ProduceError(pr, kerr.NotLeaderForPartition.Code), nil, true
	})
}

// rates sets the clean rate (the median bin of the first clean phase after
// its first second), the mean rate over the faults, and the time from the
// end of the faults to the first bin at >= 90% of the clean rate.
func (r *result) rates(bins []atomic.Int64, clean, faults time.Duration) {
	perSec := float64(time.Second / bin)
	var cl []float64
	for i := int(time.Second / bin); i < int(clean/bin); i++ {
		cl = append(cl, float64(bins[i].Load()))
	}
	if len(cl) == 0 {
		return
	}
	slices.Sort(cl)
	median := cl[len(cl)/2]
	r.cleanRate = median * perSec
	var sum float64
	from, to := int(clean/bin), int((clean+faults)/bin)
	for i := from; i < to; i++ {
		sum += float64(bins[i].Load())
	}
	if to > from {
		r.faultRate = sum / float64(to-from) * perSec
	}
	last := int((2*clean + faults) / bin) // the bin the load stopped in is partial
	for i := to; i < last; i++ {
		if float64(bins[i].Load()) >= 0.9*median {
			r.recovery, r.recovered = time.Duration(i-to)*bin, true
			return
		}
	}
}

// body is a msgpack map {"method":"Fault","id":id,"pad":"xx…"} of about
// 200 bytes.
func body(id string) []byte {
	b := []byte("\x83\xa6method\xa5Fault\xa2id\xd9")
	b = append(b, byte(len(id)))
	b = append(b, id...)
	pad := max(200-len(b)-6, 0)
	b = append(b, "\xa3pad\xd9"...)
	b = append(b, byte(pad))
	return append(b, strings.Repeat("x", pad)...)
}

// readIDs reads topic from its start to its end offsets, once they have
// held still for a second (acks=0 records may still be on their way), and
// counts the copies of each id.
func readIDs(c *kfake.Cluster, topic string) (map[string]int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		return nil, fmt.Errorf("reader client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var ends kadm.ListedOffsets
	for settled, deadline := 0, time.Now().Add(20*time.Second); settled < 2; {
		ctx, cancel := withTimeout(10 * time.Second)
		now, err := adm.ListEndOffsets(ctx, topic)
		cancel()
		if err == nil {
			err = now.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
		}
		if ends != nil && sameOffsets(ends, now) {
			settled++
		} else {
			settled = 0
		}
		ends = now
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	parts := map[int32]kgo.Offset{}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			parts[o.Partition] = kgo.NewOffset().AtStart()
			left[o.Partition] = o.Offset
		}
	})
	copies := map[string]int{}
	if len(parts) == 0 {
		return copies, nil
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}))
	if err != nil {
		return nil, fmt.Errorf("reader client: %w", err)
	}
	defer rd.Close()
	ctx, cancel := withTimeout(60 * time.Second)
	defer cancel()
	for len(left) > 0 {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read %s: not at its end offsets within 60s, left: %v", topic, left)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			id, err := msgpackscan.MapString(rec.Value, "id")
			if err != nil {
				id = "unreadable " + strconv.Itoa(int(rec.Partition)) + "/" + strconv.FormatInt(rec.Offset, 10)
			}
			copies[id]++
			if end, ok := left[rec.Partition]; ok && rec.Offset+1 >= end {
				delete(left, rec.Partition)
			}
		})
	}
	return copies, nil
}

func sameOffsets(a, b kadm.ListedOffsets) bool {
	same := true
	a.Each(func(o kadm.ListedOffset) {
		if n, ok := b.Lookup(o.Topic, o.Partition); !ok || n.Offset != o.Offset {
			same = false
		}
	})
	return same
}

func printTable(rs []result) {
	fmt.Printf("%-5s %8s %8s %-26s %9s %6s %5s %12s %9s %9s %11s %14s\n", "acks", "sent", "200", "refused (status: n)",
		"in kafka", "dups", "lost", "non-200 kept", "clean/s", "faults/s", "back at 90%", "shuffles/cuts")
	for _, r := range rs {
		back := fmt.Sprintf("%.1fs", r.recovery.Seconds())
		if !r.recovered {
			back = "not within"
		}
		fmt.Printf("%-5s %8d %8d %-26s %9d %6d %5d %12d %9.0f %9.0f %11s %14s\n", r.acks, r.sent, r.ok, refusals(r.refused),
			r.inKafka, r.dups, r.lost, r.written, r.cleanRate, r.faultRate, back, fmt.Sprintf("%d/%d", r.shuffles, r.cuts))
	}
	for _, r := range rs {
		if r.lost > 0 {
			fmt.Printf("acks=%s: lost records answered before the faults %d, during %d, after %d\n", r.acks, r.lostBy[0], r.lostBy[1], r.lostBy[2])
		}
	}
	fmt.Println("dups: copies beyond the first of a body in Kafka; lost: answered 200, not in Kafka; non-200 kept: answered otherwise, in Kafka all the same;")
	fmt.Println("back at 90%: from the end of the faults to the first 100 ms with >= 90% of the clean rate of 200s (the median 100 ms of the first clean phase)")
}

func refusals(m map[int]int) string {
	if len(m) == 0 {
		return "0"
	}
	var codes []int
	for c := range m {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var parts []string
	for _, c := range codes {
		name := strconv.Itoa(c)
		if c == 0 {
			name = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", name, m[c]))
	}
	return strings.Join(parts, ", ")
}
