package kproxy_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestRateLimitGivenBackOn503: a request refused as a whole with 503 —
// none of its records in Kafka — gives its records back to the client's
// rate_limit, on /commit, /batch, gRPC Produce and ProduceStream, so that
// its retry is not refused 429; one whose records may have been written
// (504) or went into a transaction that was aborted keeps them.
func TestRateLimitGivenBackOn503(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	clients := []kproxy.Client{{Name: "warm", Secret: "pw", Topics: []string{topic}}}
	for _, name := range []string{"commit", "batch", "unary", "stream", "held", "atomic"} {
		// 4 records at once (/commit: 1), then one every 1000 s: a
		// refused request that kept its records leaves nothing for its
		// retry.
		burst := 4
		if name == "commit" {
			burst = 1
		}
		clients = append(clients, kproxy.Client{Name: name, Secret: "pw", Topics: []string{topic}, RateLimit: 0.001, Burst: burst})
	}
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.Clients = clients
		cfg.ProduceTimeoutMs = 1000
	})
	// The topic's metadata is known: the records go to kgo, which Kafka
	// refuses until the deadline (503, none written).
	if a := g.postBatch(t, "topic="+topic, "", mpBatch(t, []brec{{value: mp(t, 0)}}), "warm", "pw"); a.code != 200 {
		t.Fatalf("first batch: %v", a)
	}
	four := func() []byte {
		var rs []brec
		for i := range 4 {
			rs = append(rs, brec{key: "k" + strconv.Itoa(i), value: mp(t, i)})
		}
		return mpBatch(t, rs)
	}
	grpcFour := func(id uint64) *kproxypb.ProduceRequest {
		req := &kproxypb.ProduceRequest{Id: id, Topic: topic}
		for i := range 4 {
			req.Records = append(req.Records, grec("", "k"+strconv.Itoa(i), "v"))
		}
		return req
	}
	commit := func(user string) int {
		req, err := http.NewRequest("POST", g.url+"/commit?topic="+topic, bytes.NewReader(mp(t, 1)))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(user, "pw")
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	unary := func(user string) int32 {
		resp, err := g.produce(t, as(context.Background(), user, "pw"), grpcFour(1))
		if err != nil {
			if r := refusalOf(err); r.detail != nil {
				return r.detail.Status
			}
			t.Fatalf("Produce: %v", err)
		}
		return resp.Status
	}
	st := g.stream(t, as(context.Background(), "stream", "pw"))
	streamed := func(id uint64) int32 {
		if err := st.Send(grpcFour(id)); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("stream request %d: %v", id, err)
		}
		return resp.Status
	}

	stop := refuseOn(c, 0, 6) // NOT_LEADER_OR_FOLLOWER to every produce request
	if code := commit("commit"); code != 503 {
		t.Fatalf("/commit with kafka refusing: %d, want 503", code)
	}
	if a := g.postBatch(t, "topic="+topic, "", four(), "batch", "pw"); a.code != 503 {
		t.Fatalf("/batch with kafka refusing: %v, want 503", a)
	}
	if s := unary("unary"); s != 503 {
		t.Fatalf("Produce with kafka refusing: %d, want 503", s)
	}
	if s := streamed(1); s != 503 {
		t.Fatalf("stream request with kafka refusing: %d, want 503", s)
	}
	if a := g.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", four(), "atomic", "pw"); a.code != 503 {
		t.Fatalf("atomic /batch with kafka refusing: %v, want 503", a)
	}
	stop()

	if code := commit("commit"); code != 200 {
		t.Errorf("/commit retried: %d, want 200", code)
	}
	if a := g.postBatch(t, "topic="+topic, "", four(), "batch", "pw"); a.code != 200 {
		t.Errorf("/batch retried: %v, want 200", a)
	}
	if s := unary("unary"); s != 200 {
		t.Errorf("Produce retried: %d, want 200", s)
	}
	if s := streamed(2); s != 200 {
		t.Errorf("stream request retried: %d, want 200", s)
	}
	// An aborted transaction's records were appended (then aborted): kept.
	if a := g.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", four(), "atomic", "pw"); a.code != 429 {
		t.Errorf("atomic /batch retried after an abort: %v, want 429", a)
	}

	// 504: the records may have been written; they keep their tokens.
	release := make(chan struct{})
	stopHold := holdOn(c, 0, release)
	a := g.postBatch(t, "topic="+topic, "", four(), "held", "pw")
	close(release)
	stopHold()
	if a.code != 504 {
		t.Fatalf("/batch with kafka holding its request: %v, want 504", a)
	}
	if a := g.postBatch(t, "topic="+topic, "", four(), "held", "pw"); a.code != 429 {
		t.Errorf("/batch retried after a 504: %v, want 429", a)
	}
}

// TestRateLimitCountsOnlyCheckedRequests: a record counts against its
// client's rate_limit when its request passes the checks (README,
// clients). A /commit refused before anything is written — a body that is
// not one msgpack value, bad acks, a record too large, an unknown topic —
// takes nothing from it, as a /batch refused whole takes nothing: the
// client's next good request is written, not refused 429.
func TestRateLimitCountsOnlyCheckedRequests(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.MaxMessageBytes = 1024
		cfg.Clients = []kproxy.Client{
			// One record at once, then one every 1000 s.
			{Name: "commit", Secret: "pw", Topics: []string{topic, "nosuch"}, RateLimit: 0.001, Burst: 1},
			{Name: "batch", Secret: "pw", Topics: []string{topic, "nosuch"}, RateLimit: 0.001, Burst: 1},
		}
	})
	commit := func(query string, body []byte) answer {
		t.Helper()
		req, err := http.NewRequest("POST", p.url+"/commit?"+query, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("commit", "pw")
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, string(b), resp.Header}
	}
	refused := []struct {
		name, query string
		body        []byte
		code        int
	}{
		{"a body that is not one msgpack value", "topic=" + topic, []byte{0x92, 0x01}, 400},
		{"msgpack with data after it", "topic=" + topic, []byte{0x01, 0x02}, 400},
		{"bad acks", "topic=" + topic + "&acks=2", mp(t, 1), 400},
		{"a record too large", "topic=" + topic, mp(t, strings.Repeat("x", 2000)), 413},
		{"an unknown topic", "topic=nosuch", mp(t, 1), 404},
	}
	for _, r := range refused {
		if a := commit(r.query, r.body); a.code != r.code {
			t.Fatalf("/commit with %s: %d %q, want %d", r.name, a.code, a.body, r.code)
		}
	}
	if a := commit("topic="+topic, mp(t, 1)); a.code != 200 {
		t.Errorf("/commit after refused ones that wrote nothing: %d %q, want 200", a.code, a.body)
	}

	// /batch, for comparison: the same refusals take nothing.
	for _, body := range [][]byte{
		{0x91, 0x01},
		mpBatch(t, []brec{{value: mp(t, strings.Repeat("x", 2000))}}),
	} {
		if a := p.postBatch(t, "topic="+topic, "", body, "batch", "pw"); a.code != 400 && a.code != 413 {
			t.Fatalf("refused /batch: %v, want 400 or 413", a)
		}
	}
	if a := p.postBatch(t, "topic=nosuch", "", mpBatch(t, []brec{{value: mp(t, 1)}}), "batch", "pw"); a.code != 404 {
		t.Fatalf("/batch to an unknown topic: %v, want 404", a)
	}
	if a := p.postBatch(t, "topic="+topic, "", mpBatch(t, []brec{{value: mp(t, 1)}}), "batch", "pw"); a.code != 200 {
		t.Errorf("/batch after refused ones: %v, want 200", a)
	}
}
