package kproxy_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestDescribeConfigsDeniedRecordsNotRefusedTogether attacks README's 413
// row: "batches are built to fit [the topic's max.message.bytes], so
// records that each fit are never refused together". kproxy's principal
// may write but not describe configs (a least-privilege ACL): it cannot
// read the topic's limit (3000 bytes) and builds batches of
// max_message_bytes. The broker refuses such a batch as too large: its
// records, each of which fits, are not answered 413 but 503 (not written),
// the topic's batches shrink, and the clients' retries are written — each
// record once. A record too large alone is still 413.
func TestDescribeConfigsDeniedRecordsNotRefusedTogether(t *testing.T) {
	const limit = 3000
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	setMaxMessageBytes(t, c, topic, limit)
	var denied atomic.Int32
	c.ControlKey(int16(kmsg.DescribeConfigs), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		denied.Add(1)
		r := req.(*kmsg.DescribeConfigsRequest)
		resp := r.ResponseKind().(*kmsg.DescribeConfigsResponse)
		for _, rr := range r.Resources {
			x := kmsg.NewDescribeConfigsResponseResource()
			x.ResourceType, x.ResourceName = rr.ResourceType, rr.ResourceName
			x.ErrorCode = 29 // TOPIC_AUTHORIZATION_FAILED
			resp.Resources = append(resp.Resources, x)
		}
		return resp, nil, true
	})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.LingerMs = 20 })

	const n = 20
	pending := make([]int, n)
	for i := range pending {
		pending[i] = i
	}
	var rounds []map[int]int
	for round := 0; len(pending) > 0; round++ {
		if round == 5 {
			t.Fatalf("records still refused after 5 rounds: %v", rounds)
		}
		codes := map[int]int{}
		var retry []int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, i := range pending {
			body := []byte(fmt.Sprintf("\xda\x03\x70fit-%03d-%s", i, strings.Repeat("x", 880-8)))
			wg.Go(func() {
				a := p.post(t, "topic="+topic+"&key=k"+strconv.Itoa(i)+"&acks=1", body)
				mu.Lock()
				defer mu.Unlock()
				codes[a.code]++
				switch a.code {
				case 200:
				case 503:
					retry = append(retry, i)
				default:
					t.Errorf("record %d (of about 900 bytes, topic limit %d): %d %q", i, limit, a.code, a.body)
				}
			})
		}
		wg.Wait()
		rounds = append(rounds, codes)
		pending = retry
	}
	t.Logf("%d records of about 900 bytes, topic max.message.bytes %d, describe-configs denied %d times: answers per round %v",
		n, limit, denied.Load(), rounds)
	seen := map[string]int{}
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		seen[string(r.Value[3:10])]++
	}
	for i := range n {
		if k := fmt.Sprintf("fit-%03d", i); seen[k] != 1 {
			t.Errorf("record %s is in Kafka %d times, want once", k, seen[k])
		}
	}
	big := make([]byte, limit+10) // a msgpack bin16 of that size
	big[0], big[1], big[2] = 0xc5, byte((len(big)-3)>>8), byte(len(big)-3)
	if a := p.post(t, "topic="+topic+"&acks=1", big); a.code != 413 {
		t.Errorf("a record larger than the topic's limit alone: %d %q, want 413", a.code, a.body)
	}
}
