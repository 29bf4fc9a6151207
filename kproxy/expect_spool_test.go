package kproxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// With auto_create_topics false, a /commit announced with "Expect:
// 100-continue" has its topic looked up before the 100. While the broker
// does not answer (frozen, as under SIGSTOP, or behind a network that drops
// packets), a record that may be spooled gives that look-up spool_after_ms
// and is then spooled as named (202) once its body came: it waits
// spool_after_ms in all, as without the header — not spool_after_ms for the
// look-up before the 100 and spool_after_ms again for the same look-up
// after the body.
func TestExpectContinueSpoolsAfterSpoolAfterMsOnce(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "fresh", Partitions: 1}})
	const after = time.Second
	p := spoolProxy(t, c, func(cfg *kproxy.Config) {
		cfg.AutoCreateTopics = false
		cfg.SpoolAfterMs = int(after / time.Millisecond)
		cfg.ProduceTimeoutMs = 5000
	})
	// The broker freezes: every metadata request waits until thaw.
	thawed := make(chan struct{})
	var once sync.Once
	thaw := func() { once.Do(func() { close(thawed) }) }
	t.Cleanup(thaw) // before the cluster closes: it waits for the control
	c.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		<-thawed
		return nil, nil, false
	})

	addr := strings.TrimPrefix(p.url, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	value := keySeqValue(t, "a", 0)
	start := time.Now()
	io.WriteString(conn, "POST /commit?topic=fresh&key=a&acks=1 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"+
		"Content-Length: "+strconv.Itoa(len(value))+"\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to the headers: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 100 {
		t.Fatalf("first answer %d, want 100 Continue", resp.StatusCode)
	}
	continued := time.Since(start)
	conn.Write(value)
	if resp, err = http.ReadResponse(br, nil); err != nil {
		t.Fatalf("no answer to the body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	thaw()
	if resp.StatusCode != 202 {
		t.Fatalf("broker frozen: %d %q, want 202 spooled", resp.StatusCode, body)
	}
	// Two waits take 2 s at least; one, 1 s and the spool's append.
	if took >= after+800*time.Millisecond {
		t.Errorf("spooled after %v (100 Continue after %v), want about spool_after_ms (%v) as without Expect", took, continued, after)
	}
}
