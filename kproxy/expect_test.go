package kproxy_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// A client that sends "Expect: 100-continue" (curl does for bodies over
// 1 KiB) waits for the server's word before sending the body. A body over
// max_request_size_bytes is refused from its Content-Length, so the word is
// 413 at once (RFC 9110 10.1.1: a status that the header fields determine is
// sent instead of 100) — not "100 Continue", which tells the client to send
// a body kproxy then refuses, closing the connection under a client still
// uploading. A body within the limit still gets 100 and is written.
func TestExpectContinueOverMaxRequestSizeIs413NotContinue(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.MaxRequestSizeBytes = 1024 })
	addr := strings.TrimPrefix(p.url, "http://")
	send := func(size int) (*bufio.Reader, net.Conn) {
		t.Helper()
		conn := dialRaw(t, addr, 5*time.Second)
		head := "POST /commit?topic=orders HTTP/1.1\r\nHost: " + addr + "\r\nExpect: 100-continue\r\n" +
			"Content-Length: " + strconv.Itoa(size) + "\r\n\r\n"
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatal(err)
		}
		return bufio.NewReader(conn), conn
	}

	br, _ := send(2048)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("over the limit: no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !strings.Contains(string(body), "max_request_size_bytes") {
		t.Errorf("over the limit, first answer: %d %q, want 413 naming max_request_size_bytes before the body is sent", resp.StatusCode, body)
	}

	// Within the limit: 100, then the body (a msgpack str of 997 bytes), 200.
	value := append([]byte{0xda, 0x03, 0xe5}, []byte(strings.Repeat("a", 997))...)
	br, conn := send(len(value))
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("within the limit: no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 100 {
		t.Fatalf("within the limit, first answer: %d, want 100 Continue", resp.StatusCode)
	}
	if _, err := conn.Write(value); err != nil {
		t.Fatal(err)
	}
	if resp, err = http.ReadResponse(br, nil); err != nil {
		t.Fatalf("within the limit, after the body: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("within the limit: %d %q, want 200", resp.StatusCode, body)
	}
	if n := endOffsets(t, c, "orders"); n != 1 {
		t.Errorf("%d records written, want the one answered 200", n)
	}
}

// kproxy_requests_total counts the answers of /commit and /batch, not
// those of /health or of unknown paths (README): a body over
// max_request_size_bytes sent to another path is refused 413 like any, but
// not counted, with "Expect: 100-continue" or without.
func TestOversizedBodyToOtherPathsIsNotCountedAsRequest(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.MaxRequestSizeBytes = 1024 })
	addr := strings.TrimPrefix(p.url, "http://")
	refuse := func(path, expect string) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: "+addr+"\r\n"+expect+"Content-Length: 2048\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("POST %s (%q) over the limit: no answer: %v", path, expect, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Errorf("POST %s (%q) over the limit: %d, want 413", path, expect, resp.StatusCode)
		}
	}
	const counted = `kproxy_requests_total{code="413"}`
	for _, path := range []string{"/health", "/nope"} {
		for _, expect := range []string{"", "Expect: 100-continue\r\n"} {
			refuse(path, expect)
			if n := p.metric(t, counted); n != "0" {
				t.Fatalf("after POST %s (%q) over the limit: %s %s, want 0: only /commit and /batch are counted", path, expect, counted, n)
			}
		}
	}
	refuse("/commit?topic=orders", "")
	refuse("/batch", "Expect: 100-continue\r\n")
	if n := p.metric(t, counted); n != "2" {
		t.Errorf("after /commit and /batch over the limit: %s %s, want 2", counted, n)
	}
}

// A request kproxy refuses from its line and headers alone — no or wrong
// credentials (401), a topic not allowed (403), no topic or a bad acks
// (400), an unknown topic (404) on /commit; bad parameters or credentials
// on /batch — is refused the same way when its client sends "Expect:
// 100-continue": the first answer is the refusal, with the status, reason
// and headers it gets without the header, not "100 Continue" inviting a
// body that is then refused. Refusals are counted in
// kproxy_requests_total as without the header; nothing is written; a
// request that passes still gets 100, then 200.
func TestExpectContinueRefusedBeforeTheBody(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}, {Name: "secret", Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.AutoCreateTopics = false
		cfg.Clients = []kproxy.Client{{Name: "shop", Secret: "shop-pass", Topics: []string{"orders", "nope"}}}
	})
	addr := strings.TrimPrefix(p.url, "http://")
	const auth = "Authorization: Basic c2hvcDpzaG9wLXBhc3M=\r\n"  // shop:shop-pass
	const wrongAuth = "Authorization: Basic c2hvcDp3cm9uZw==\r\n" // shop:wrong
	value := []byte{0x01}
	batch := []byte(`[{"value":1}]`)
	// send writes the request's head, and its body unless expect; it
	// returns the first answer.
	send := func(path, headers string, body []byte, expect bool) (*http.Response, string, net.Conn, *bufio.Reader) {
		t.Helper()
		conn := dialRaw(t, addr, 10*time.Second)
		head := "POST " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nX-Request-ID: r-1\r\n" + headers +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n"
		if expect {
			head += "Expect: 100-continue\r\n\r\n"
		} else {
			head += "\r\n" + string(body)
		}
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("POST %s: no answer: %v", path, err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(answer), conn, br
	}
	for _, tc := range []struct {
		name, path, headers string
		body                []byte
		want                int
	}{
		{"no credentials", "/commit?topic=orders", "", value, 401},
		{"wrong credentials", "/commit?topic=orders", wrongAuth, value, 401},
		{"topic not allowed", "/commit?topic=secret", auth, value, 403},
		{"internal topic", "/commit?topic=__consumer_offsets", auth, value, 403},
		{"no topic", "/commit", auth, value, 400},
		{"bad topic name", "/commit?topic=a%20b", auth, value, 400},
		{"bad acks", "/commit?topic=orders&acks=2", auth, value, 400},
		{"topic twice", "/commit?topic=orders&topic=orders", auth, value, 400},
		{"unknown topic", "/commit?topic=nope", auth, value, 404},
		{"batch, no credentials", "/batch?topic=orders", "", batch, 401},
		{"batch, bad acks", "/batch?topic=orders&acks=2", auth, batch, 400},
		{"batch, atomic without acks=-1", "/batch?topic=orders&atomic=1", auth, batch, 400},
		{"batch, unknown parameter", "/batch?topic=orders&atomik=1", auth, batch, 400},
	} {
		plain, plainBody, _, _ := send(tc.path, tc.headers, tc.body, false)
		if plain.StatusCode != tc.want {
			t.Fatalf("%s, without Expect: %d %q, want %d", tc.name, plain.StatusCode, plainBody, tc.want)
		}
		first, firstBody, _, _ := send(tc.path, tc.headers, tc.body, true)
		if first.StatusCode != plain.StatusCode || firstBody != plainBody {
			t.Errorf("%s, with Expect: 100-continue: first answer %d %q, want %d %q before the body is sent",
				tc.name, first.StatusCode, firstBody, plain.StatusCode, plainBody)
			continue
		}
		for _, h := range []string{"WWW-Authenticate", "X-Request-ID", "Content-Type"} {
			if first.Header.Get(h) != plain.Header.Get(h) {
				t.Errorf("%s, with Expect: %s %q, want %q as without", tc.name, h, first.Header.Get(h), plain.Header.Get(h))
			}
		}
	}
	for code, want := range map[string]string{"401": "6", "403": "4", "400": "14", "404": "2"} {
		if n := p.metric(t, `kproxy_requests_total{code="`+code+`"}`); n != want {
			t.Errorf(`kproxy_requests_total{code="%s"} %s, want %s: refusals with Expect counted as without`, code, n, want)
		}
	}

	// Allowed: 100, then the body, then 200.
	first, _, conn, br := send("/commit?topic=orders", auth, value, true)
	if first.StatusCode != 100 {
		t.Fatalf("allowed request: first answer %d, want 100 Continue", first.StatusCode)
	}
	conn.Write(value)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("allowed request, after the body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("allowed request: %d, want 200", resp.StatusCode)
	}
	if n := endOffsets(t, c, "orders") + endOffsets(t, c, "secret"); n != 1 {
		t.Errorf("%d records written, want the one answered 200", n)
	}
}

// The look-up of a topic named for the first time (auto_create_topics
// false), which a /commit with "Expect: 100-continue" now waits for
// before its 100, may take longer than read_timeout_ms. The body comes only after the 100: it gets its
// read_timeout_ms from then, not what the look-up left of the request's
// (a 408 for a body sent at once when told to).
func TestExpectContinueSlowTopicLookupLeavesTheBodyItsReadTimeout(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "fresh", Partitions: 1}})
	// read_timeout_ms 1 s, not less: the test's own goroutine sends the
	// body after reading the 100, late on a loaded machine.
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ReadTimeoutMs, cfg.AutoCreateTopics = 1000, false })
	var slowed atomic.Bool
	c.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		for _, rt := range req.(*kmsg.MetadataRequest).Topics {
			if rt.Topic != nil && *rt.Topic == "fresh" && !slowed.Swap(true) {
				c.SleepControl(func() { time.Sleep(3 * time.Second) }) // three times read_timeout_ms
			}
		}
		return nil, nil, false
	})
	addr := strings.TrimPrefix(p.url, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	value := []byte{0x01}
	head := "POST /commit?topic=fresh HTTP/1.1\r\nHost: " + addr + "\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to the headers: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 100 {
		t.Fatalf("first answer %d, want 100 Continue", resp.StatusCode)
	}
	if !slowed.Load() {
		t.Fatal("the topic's look-up was not slowed: the test proves nothing")
	}
	conn.Write(value)
	if resp, err = http.ReadResponse(br, nil); err != nil {
		t.Fatalf("after the body: %v", err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("body sent at the 100: %d %q, want 200", resp.StatusCode, answer)
	}
}

// On a keep-alive connection, a request with "Expect: 100-continue" that
// comes later than write_timeout_ms after the previous answer (a client
// posting large bodies one after another, a pause between them) gets its
// 100 and is written, with release_idle_buffers true or false: the 100
// is not written under the deadline of the previous answer, long past,
// which failed the write and closed the connection with no answer at all.
func TestExpectContinueOnKeptAliveConnection(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	for _, release := range []bool{true, false} {
		p := startProxy(t, c, func(cfg *kproxy.Config) {
			// write_timeout_ms is what the test is about; read_timeout_ms
			// leaves the test's goroutine time to send the body after the
			// 100 on a loaded machine. At 100 ms the first answer itself
			// missed its write deadline once in CI (the connection closed
			// with no answer): 500, and a pause past it below.
			cfg.WriteTimeoutMs, cfg.ReadTimeoutMs = 500, 2000
			cfg.ReleaseIdleBuffers = release
		})
		addr := strings.TrimPrefix(p.url, "http://")
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(conn)
		answer := func(what string) int {
			t.Helper()
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("release_idle_buffers %v, %s: no answer: %v", release, what, err)
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		io.WriteString(conn, "POST /commit?topic=orders HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n\x01")
		if code := answer("first request"); code != 200 {
			t.Fatalf("release_idle_buffers %v, first request: %d, want 200", release, code)
		}
		time.Sleep(900 * time.Millisecond) // the client's pause between two posts: past write_timeout_ms
		io.WriteString(conn, "POST /commit?topic=orders HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
		if code := answer("second request's headers"); code != 100 {
			t.Fatalf("release_idle_buffers %v, second request: first answer %d, want 100 Continue", release, code)
		}
		conn.Write([]byte{0x02})
		if code := answer("second request's body"); code != 200 {
			t.Errorf("release_idle_buffers %v, second request: %d, want 200", release, code)
		}
	}
	if n := endOffsets(t, c, "orders"); n != 4 {
		t.Errorf("%d records written, want the 4 answered 200", n)
	}
}

// With auto_create_topics (the default) the brokers create a topic its
// first record names. A request announced with "Expect: 100-continue"
// whose body then turns out bad (400) or is never sent creates no topic,
// as without the header, where the body is checked before the topic is
// looked up: a topic appears only for a record that could be written.
func TestExpectContinueCreatesNoTopicBeforeTheBody(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}}, kfake.AllowAutoTopicCreation())
	p := startProxy(t, c, nil) // auto_create_topics: true
	addr := strings.TrimPrefix(p.url, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "POST /commit?topic=typo-topic HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to the headers: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode == 100 {
		conn.Write([]byte{0xc1}) // never used in msgpack: not a value
		if resp, err = http.ReadResponse(br, nil); err != nil {
			t.Fatalf("no answer to the body: %v", err)
		}
		resp.Body.Close()
	}
	if resp.StatusCode != 400 {
		t.Fatalf("bad body: %d, want 400", resp.StatusCode)
	}
	if topicExists(t, c, "typo-topic") {
		t.Errorf("topic typo-topic created for a request refused 400, which wrote nothing")
	}
}

// topicExists asks the cluster whether topic exists.
func topicExists(t *testing.T, c *kfake.Cluster, topic string) bool {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, c, kafkaconf.Default()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return topics.Has(topic)
}
