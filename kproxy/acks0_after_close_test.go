package kproxy_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestAcks0AfterKafkaClosedRefused: shutdown_timeout_ms passes with a
// request still waiting for Kafka, and kproxy closes its Kafka clients
// while it gives the requests in flight a last second to be answered. An
// acks=0 request whose body ends in that second was handed to the closed
// client, which fails it at once, and answered 200: a record kproxy knew
// it had dropped. It is answered 503 now (not written), as every acks=0
// record while kproxy shuts down.
func TestAcks0AfterKafkaClosedRefused(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	var logs runtest.Log
	p := logProxy(t, c, &logs, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs, cfg.ShutdownTimeoutMs = 5000, 300 })
	decode(t, p.post(t, "topic="+topic+"&acks=1", unique(t, "first"))) // the topic is known

	release := make(chan struct{})
	defer close(release)
	var held atomic.Int32
	holdProduce(c, release, &held)
	go http.Post(p.url+"/commit?topic="+topic+"&acks=1", "application/msgpack", strings.NewReader(string(unique(t, "held"))))
	waitFor(t, "the acks=1 record's produce request held", func() bool { return held.Load() > 0 })

	// An acks=0 request with its body half sent.
	body := unique(t, "late acks=0")
	conn, err := net.Dial("tcp", p.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /commit?topic=%s&acks=0 HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\nContent-Length: %d\r\n\r\n", topic, len(body))
	conn.Write(body[:1])

	stopped := make(chan error, 1)
	go func() { stopped <- p.stop() }()
	waitFor(t, "the kafka clients closed at shutdown_timeout_ms", func() bool {
		return strings.Contains(logs.String(), "closing the kafka clients")
	})
	time.Sleep(50 * time.Millisecond)
	conn.Write(body[1:])
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the acks=0 request completed after the kafka clients closed: no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("an acks=0 record handed over after the kafka clients closed: %d, want 503 (not written)", resp.StatusCode)
	}
	t.Logf("Run: %v", <-stopped)
}
