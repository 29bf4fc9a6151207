package kproxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestShortGRPCDeadlineDoesNotFailOtherClientsRecords attacks DESIGN's
// "Leader elections ... are retried inside produce_timeout_ms: the client
// sees 200, not an error" for the clients beside a gRPC call with a short
// deadline. The broker answers NOT_LEADER_OR_FOLLOWER for 1.5 s (an
// election); a gRPC Produce with a 600 ms deadline heads its partition's
// queue in Kafka's client, and another client's /batch (produce_timeout_ms
// 5 s) is queued behind it. Its records were handed to Kafka's client
// under the call's deadline, and the client fails every record queued
// behind one whose context ended: the /batch was answered 503 after about
// 490 ms ("within produce_timeout_ms", of 5 s), and at acks=0 its records,
// answered 200, were lost.
func TestShortGRPCDeadlineDoesNotFailOtherClientsRecords(t *testing.T) {
	for _, acks := range []int32{1, -1, 0} {
		t.Run("acks="+strconv.Itoa(int(acks)), func(t *testing.T) {
			c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
			g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 5000 })
			p := g.proxy
			q := "topic=" + topic + "&acks=" + strconv.Itoa(int(acks))
			if a := p.postBatch(t, q, "", mpBatch(t, []brec{{key: "w", value: mp(t, "warm")}})); a.code != 200 {
				t.Fatalf("warm-up: %v", a)
			}
			f := kafkatest.NewFaults(t, c)
			start := time.Now()
			end := f.Outage(6) // NOT_LEADER_OR_FOLLOWER: an election as producers see it
			short := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
				defer cancel()
				_, err := g.kp.Produce(ctx, &kproxypb.ProduceRequest{Topic: topic, Acks: acksOf(max(acks, 1)), // acks 0 and 1 share a client
					Records: []*kproxypb.Record{grec("", "a", "short")}})
				short <- err
			}()
			waitFor(t, "the short call's record refused once by the broker", func() bool { return f.Injected() >= 1 })
			got := make(chan string, 1)
			body := mpBatch(t, []brec{{key: "b", value: mp(t, "b0")}, {key: "b", value: mp(t, "b1")}})
			go func() {
				sent := time.Now()
				code, raw := postRaw(p.url+"/batch?"+q, body)
				if code != 200 {
					got <- fmt.Sprintf("%d after %v: %.300s", code, time.Since(sent).Round(time.Millisecond), raw)
				}
				close(got)
			}()
			<-short
			time.Sleep(time.Until(start.Add(1500 * time.Millisecond))) // the election lasts 1.5 s
			end()
			if a, bad := <-got; bad {
				t.Fatalf("batch queued behind a call with a 600 ms deadline, election of 1.5 s, produce_timeout_ms 5 s: %s; want 200", a)
			}
			if acks != 0 {
				return
			}
			waitFor(t, "Kafka takes records again", func() bool {
				return p.postBatch(t, "topic="+topic+"&acks=1", "", mpBatch(t, []brec{{key: "y", value: mp(t, "after")}})).code == 200
			})
			kafka := byValue(t, c, topic)
			for _, v := range []string{"b0", "b1"} {
				if kafka[string(mp(t, v))] == nil {
					t.Errorf("acks=0 record %s answered 200, not in Kafka after an election of 1.5 s (produce_timeout_ms 5 s); kproxy_acks0_lost_records_total %d",
						v, metricInt(t, p, "kproxy_acks0_lost_records_total"))
				}
			}
		})
	}
}

// postRaw posts a msgpack body to url from any goroutine: its status and
// body, or -1 and the error.
func postRaw(url string, body []byte) (int, string) {
	resp, err := http.Post(url, "application/msgpack", bytes.NewReader(body))
	if err != nil {
		return -1, err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}
