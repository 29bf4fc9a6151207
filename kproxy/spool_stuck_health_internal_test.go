package kproxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestSpoolDiskNotAnsweringFailsHealth: Kafka is away and kproxy spools;
// the spool's disk stops answering (an NFS hard mount, a failing device:
// the write and fsync neither succeed nor fail). Every spooled request
// waits for it (their bodies are in the append). /health must say so
// (503) once the append has waited spoolStuckHealth, so that a load
// balancer sends requests elsewhere: it answered 200 "degraded: spooling"
// for as long as the disk hung, while the requests piled up to
// req_pool_size. Once the disk answers, /health is 200 again.
func TestSpoolDiskNotAnsweringFailsHealth(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	end := kafkatest.NewFaults(t, c).Outage(kerr.NotLeaderForPartition.Code)
	defer end()
	cfg := DefaultConfig()
	cfg.Port, cfg.ListenHost, cfg.AdminAddr = 0, "127.0.0.1", ""
	cfg.BrokerHosts = c.ListenAddrs()
	cfg.SpoolDir = t.TempDir()
	cfg.SpoolAfterMs = 200
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	hang := make(chan struct{})
	hung := make(chan struct{}, 1)
	s.spool.appendRecs = func(recs []spool.Record) (uint64, error) {
		select {
		case hung <- struct{}{}:
		default:
		}
		<-hang // the disk does not answer
		return s.spool.sp.Append(recs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	defer func() {
		end() // Kafka back: the shutdown's flush does not wait for it
		cancel()
		<-ran
		s.Close()
	}()
	answered := make(chan int, 1)
	go func() {
		resp, err := http.Post("http://"+s.Addr().String()+"/commit?topic=t&acks=1&key=k", "application/msgpack", bytes.NewReader([]byte{0xa1, 'v'}))
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	select {
	case <-hung:
	case <-time.After(20 * time.Second):
		t.Fatal("the record was not spooled")
	}
	if code, why := s.healthStatus(); code != 200 {
		t.Errorf("/health as the append starts: %d %q, want 200 (degraded)", code, why)
	}
	time.Sleep(spoolStuckHealth + 500*time.Millisecond)
	code, why := s.healthStatus()
	if code != 503 || !strings.Contains(why, "spool disk not answering") {
		t.Errorf("/health while an append has waited %v for the disk: %d %q, want 503 \"spool disk not answering\"", spoolStuckHealth+500*time.Millisecond, code, why)
	}
	close(hang)
	if code := <-answered; code != 202 {
		t.Errorf("the spooled request, once the disk answered: %d, want 202", code)
	}
	if code, why := s.healthStatus(); code != 200 {
		t.Errorf("/health once the disk answered: %d %q, want 200", code, why)
	}
}
