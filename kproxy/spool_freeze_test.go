package kproxy_test

import (
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// freezeProduce makes the one-broker cluster freeze at its next produce
// request (acks 1 or -1), as a broker stopped with SIGSTOP or stuck on a
// hung disk: that request and every later one, metadata included, wait
// until thaw is called, and are then handled as usual (their records
// written). The request is held by blocking kfake's control function on a
// channel (kfake's SleepControl races with itself under -race).
func freezeProduce(t *testing.T, c *kfake.Cluster) (thaw func()) {
	t.Helper()
	thawed := make(chan struct{})
	var once sync.Once
	thaw = func() { once.Do(func() { close(thawed) }) }
	t.Cleanup(thaw) // before the cluster closes: it waits for the control
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		select {
		case <-thawed:
			return nil, nil, false
		default:
		}
		c.KeepControl()
		if req.(*kmsg.ProduceRequest).Acks != 0 {
			<-thawed
		}
		return nil, nil, false
	})
	return thaw
}

// parseAnyKeySeq reads back keySeqValue, sent as msgpack (/commit) or as a
// JSON string (/batch).
func parseAnyKeySeq(t testing.TB, v []byte) (string, int) {
	t.Helper()
	if len(v) == 0 || v[0] != '"' {
		return parseKeySeq(t, v)
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		t.Fatalf("value %q: %v", v, err)
	}
	b, _ := msgpack.Marshal(s)
	return parseKeySeq(t, b)
}

// TestSpoolFrozenBrokerSpoolsInFlight attacks a broker that freezes while
// produce requests holding records are out. kgo gives up waiting for a
// request's answer when the context of its first record is done; a flip
// cancels the generation of the records it gates, but a request may start
// with a record of the topic that is not gated: spool=0 (acks 1 and -1;
// acks=0 records have a client of their own with the spool). Such
// a request stays until produce_timeout_ms, and so do the records behind
// it in their partitions: without more they would be answered 504 then,
// and the topic's later records would wait as long. At spool_after_ms the
// records of the topic still in kgo must be spooled (202), and those
// arriving later after them. Concurrent /commit (acks 1 and -1, one record
// of a key at a time) and /batch requests (several records of a key in kgo
// at once) run over many keys beside acks=0 and spool=0 ones, through a
// freeze thawed before produce_timeout_ms (the held requests are then
// written: duplicates) or after it (kgo gave up on them meanwhile). Every
// request sent while the broker is frozen is answered 202 within
// spool_after_ms and a margin; afterwards every record answered 200 or 202
// is in Kafka (acks=0 ones too when thawed before produce_timeout_ms, none
// counted lost), each key's first copies in order, duplicates of acks=-1
// records no more than kproxy_spool_duplicates_possible_total. The acks=1
// client is not idempotent and writes records twice by itself here: a
// flip cancels the record heading one of its requests, kgo gives that
// request up and resends its other batches, and the broker writes both at
// the thaw (TestLeaderClientResendsAbandonedRequest).
//
// Nothing is sent after the thaw: traffic after a freeze is what
// TestIdempotentInFlightPastDeadlineThenNextWritten covers (records in
// flight at acks=-1 are never cancelled, so a later batch cannot be taken
// by the broker for a duplicate of a cancelled one).
func TestSpoolFrozenBrokerSpoolsInFlight(t *testing.T) {
	const (
		spoolAfter = 200 * time.Millisecond
		// 2.5 s past the first thaw (3.5 s): the brokers' backlog and the
		// acks=0 client's queued batches are through before the deadline
		// of the acks=0 records held at the freeze.
		produceTimeout = 6 * time.Second
		// Appending, fsync and the scheduler under -race on a busy
		// machine (stalls of 1.7 s seen). Without the flip's taking,
		// records wait for the thaw (3.5 s) or for produce_timeout_ms.
		margin = 2300 * time.Millisecond
	)
	for _, tc := range []struct {
		name string
		hold time.Duration
	}{
		{"thawed before produce_timeout_ms", 3500 * time.Millisecond},
		{"thawed after produce_timeout_ms", produceTimeout + 1500*time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 3}})
			p := spoolProxy(t, c, func(cfg *kproxy.Config) {
				cfg.SpoolAfterMs = int(spoolAfter / time.Millisecond)
				cfg.ProduceTimeoutMs = int(produceTimeout / time.Millisecond)
			})

			var mu sync.Mutex
			accepted := map[string][]int{}
			codes := map[int]int{}
			acks1 := map[string]bool{}     // keys written by a client not idempotent (acks 0 and 1)
			acks0 := 0                     // acks=0 records answered 200
			var frozenAt, thawAt time.Time // set before the workers read them
			slow := 0
			note := func(key string, seqs []int, code int, start time.Time, took time.Duration) {
				mu.Lock()
				defer mu.Unlock()
				codes[code]++
				if code == 200 || code == 202 {
					accepted[key] = append(accepted[key], seqs...)
				}
				if frozenAt.IsZero() || start.Add(took).Before(frozenAt) || !start.Before(thawAt) {
					return
				}
				if code != 202 && !start.Before(frozenAt) {
					t.Errorf("%s %v sent while the broker is frozen: %d, want 202", key, seqs, code)
				}
				if took > spoolAfter+margin {
					slow++
					if slow <= 5 {
						t.Errorf("%s %v sent while the broker is frozen: answered after %v, want within spool_after_ms (%v) + %v",
							key, seqs, took.Round(time.Millisecond), spoolAfter, margin)
					}
				}
			}
			commit := func(key, acks string, n int) {
				if acks == "1" {
					mu.Lock()
					acks1[key] = true
					mu.Unlock()
				}
				start := time.Now()
				a := p.post(t, "acks="+acks+"&topic="+topic+"&key="+key, keySeqValue(t, key, n))
				note(key, []int{n}, a.code, start, time.Since(start))
			}
			// batch sends per records of each key, numbered from n.
			batch := func(keys []string, n, per int) {
				var recs []map[string]any
				for i := range per {
					for _, key := range keys {
						var v string
						msgpack.Unmarshal(keySeqValue(t, key, n+i), &v)
						recs = append(recs, map[string]any{"topic": topic, "key": key, "value": v})
					}
				}
				start := time.Now()
				code, a := postBatch(t, p, "acks=-1", recs)
				took := time.Since(start)
				for k, key := range keys {
					var seqs []int
					codeOf := 0
					for i := range per {
						r := a.Results[i*len(keys)+k]
						codeOf = max(codeOf, r.Status)
						if r.Status == 200 || r.Status == 202 {
							seqs = append(seqs, n+i)
						}
					}
					if code == 200 || code == 202 {
						codeOf = code
					}
					note(key, seqs, codeOf, start, took)
				}
			}

			// Kafka up: every key written once, the topic's metadata and
			// the producer IDs known. With spool=0: the first records of
			// a fresh proxy can take longer than spool_after_ms on a
			// loaded machine, and spooled they would be written by the
			// drain, out of this plan.
			const commitWorkers, batchWorkers, keysPer, perBatch = 8, 2, 2, 4
			keysOf := func(w int) []string {
				ks := make([]string, keysPer)
				for i := range ks {
					ks[i] = "w" + strconv.Itoa(w) + "k" + strconv.Itoa(i)
				}
				return ks
			}
			for w := range commitWorkers + batchWorkers {
				for _, key := range keysOf(w) {
					warmUp(t, p, "acks=-1&topic="+topic+"&key="+key, keySeqValue(t, key, 0))
					accepted[key] = []int{0}
				}
			}

			stop := make(chan struct{})
			var wg sync.WaitGroup
			// Records that a flip cannot take: acks=0 (answered at once,
			// their own client) and spool=0 (heading kgo's requests, each
			// answered within produce_timeout_ms; 200s are checked too).
			for w := range 4 {
				wg.Go(func() {
					for n := 0; n < 2000; n++ {
						select {
						case <-stop:
							return
						default:
						}
						if w < 2 {
							key := "a" + strconv.Itoa(w) + "-" + strconv.Itoa(n%6)
							a := p.post(t, "acks=0&topic="+topic+"&key="+key, keySeqValue(t, key, n))
							mu.Lock()
							acks1[key] = true
							if a.code == 200 {
								acks0++
								if tc.hold < produceTimeout {
									// Kafka back within their produce_timeout_ms:
									// delivered, none lost.
									accepted[key] = append(accepted[key], n)
								}
							}
							mu.Unlock()
							time.Sleep(5 * time.Millisecond)
							continue
						}
						key := "z" + strconv.Itoa(w)
						a := p.post(t, "acks=-1&spool=0&topic="+topic+"&key="+key, keySeqValue(t, key, n))
						time.Sleep(5 * time.Millisecond)
						if a.code == 200 {
							mu.Lock()
							accepted[key] = append(accepted[key], n)
							mu.Unlock()
						}
					}
				})
			}
			for w := range commitWorkers + batchWorkers {
				keys := keysOf(w)
				wg.Go(func() {
					n := 1
					for i := 0; i < 400; i++ {
						select {
						case <-stop:
							return
						default:
						}
						if w >= commitWorkers {
							batch(keys, n, perBatch)
							n += perBatch
							time.Sleep(10 * time.Millisecond)
							continue
						}
						acks := "-1"
						if w%2 == 1 {
							acks = "1"
						}
						commit(keys[i%keysPer], acks, n)
						time.Sleep(10 * time.Millisecond) // many requests, not a flood of fsyncs
						if i%keysPer == keysPer-1 {
							n++
						}
					}
				})
			}
			time.Sleep(100 * time.Millisecond) // records in kgo at the freeze
			mu.Lock()
			frozenAt, thawAt = time.Now(), time.Now().Add(tc.hold)
			mu.Unlock()
			thaw := freezeProduce(t, c)
			time.Sleep(time.Until(thawAt))
			close(stop)
			thaw()
			wg.Wait()

			spoolEmpty(t, p)
			waitFor(t, "every acks=0 record delivered or given up", func() bool {
				return metricInt(t, p, `kproxy_records_total{acks="0"}`)+metricInt(t, p, "kproxy_acks0_lost_records_total") >= acks0
			})
			if lost := metricInt(t, p, "kproxy_acks0_lost_records_total"); lost > 0 && tc.hold < produceTimeout {
				t.Errorf("%d of %d acks=0 records answered 200 given up (kproxy_acks0_lost_records_total), Kafka back within their produce_timeout_ms", lost, acks0)
			}
			t.Logf("answers %v", codes)
			if codes[202] == 0 {
				t.Fatalf("nothing was spooled (answers %v): the freeze did not happen", codes)
			}
			// The acks=1 client (acks=0 and acks=1 records) is not
			// idempotent: the batches kgo resends from a request it
			// gave up on (see above) are in Kafka twice (an acks=0
			// batch seen twice in a row, both copies without a producer
			// ID). The counter promises only for the records written
			// with sequence numbers.
			byKey := checkFirstCopiesByKey(t, c, accepted, func(v []byte) (string, int) { return parseAnyKeySeq(t, v) })
			dups, dupsAcks1 := 0, 0
			for key, n := range byKey {
				if acks1[key] {
					dupsAcks1 += n
					continue
				}
				dups += n
			}
			possible := metricInt(t, p, "kproxy_spool_duplicates_possible_total")
			if dups > possible {
				t.Errorf("%d duplicates of acks=-1 records in kafka, only %d counted as possible", dups, possible)
			}
			t.Logf("duplicates: %d of acks=-1 records (counted possible %d), %d of acks=0 and acks=1 records", dups, possible, dupsAcks1)
		})
	}
}
