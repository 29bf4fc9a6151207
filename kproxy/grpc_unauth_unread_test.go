package kproxy_test

import (
	"encoding/base64"
	"encoding/binary"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCUnknownClientRefusedUnread: a Produce call whose credentials are
// wrong is refused before its message is read. It was read first and
// refused after: a caller without credentials that declared a message of
// max_request_size_bytes and sent part of it held what it sent, and the
// call, until the longer of read_timeout_ms and idle_timeout_ms (60 s by
// default) — on as many calls and connections as it opened, none of it
// counted against max_body_bytes_in_flight.
func TestGRPCUnknownClientRefusedUnread(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.Clients = []kproxy.Client{{Name: "shop", Secret: "pass", Topics: []string{topic}}}
	})
	addr := g.srv.GRPCAddr().String()
	h := dialH2(t, addr)
	h.open(addr, "/kafkahttpwrapper.v1.KProxy/Produce",
		"authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("shop:wrong")))
	// A message declaring 4 MiB, 1 KiB of it sent; the rest never comes.
	part := binary.BigEndian.AppendUint32([]byte{0}, 4<<20)
	part = append(part, make([]byte, 1<<10)...)
	h.write(func() error { return h.fr.WriteData(1, false, part) })
	select {
	case <-h.ended:
	case <-time.After(5 * time.Second):
		t.Fatalf("a call with a wrong secret whose message is incomplete not answered in 5 s: %s", h.broken())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.trailers["grpc-status"]; st != "16" {
		t.Errorf("grpc-status %q (%q), want 16 (Unauthenticated)", st, h.trailers["grpc-message"])
	}
}

// TestGRPCClientRemovedWhileItsMessageCame: a unary Produce's client is
// found when the call starts, before its message is read; its message may
// come up to the longer of read_timeout_ms and idle_timeout_ms later. A
// reload that removed the client meanwhile must hold for it: its records
// were checked by the rules of the call's start and written, up to a
// minute after its secret was revoked. The client is found again by the
// rules in force once its message came, as a stream's is before each
// request.
func TestGRPCClientRemovedWhileItsMessageCame(t *testing.T) {
	r := startReloadable(t, "clients:\n - {name: shop, secret: s, topics: ['*']}\n - {name: gone, secret: g, topics: ['*']}\n")
	addr := r.srv.GRPCAddr().String()
	h := dialH2(t, addr)
	h.open(addr, "/kafkahttpwrapper.v1.KProxy/Produce",
		"authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("gone:g")))
	msg, err := proto.Marshal(&kproxypb.ProduceRequest{Id: 9, Topic: topic, Records: []*kproxypb.Record{grec("", "k", "revoked")}})
	if err != nil {
		t.Fatal(err)
	}
	frame := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg))), msg...)
	h.write(func() error { return h.fr.WriteData(1, false, frame[:3]) })
	time.Sleep(200 * time.Millisecond) // the call started, its message not read
	r.write(t, "clients:\n - {name: shop, secret: s, topics: ['*']}\n")
	if err := r.srv.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	h.write(func() error { return h.fr.WriteData(1, true, frame[3:]) })
	select {
	case <-h.ended:
	case <-time.After(10 * time.Second):
		t.Fatalf("the call not answered: %s", h.broken())
	}
	h.mu.Lock()
	st := h.trailers["grpc-status"]
	h.mu.Unlock()
	if st != "16" {
		t.Errorf("a removed client's call whose message came after the reload: grpc-status %q, want 16 (Unauthenticated)", st)
	}
	if n := endOffsets(t, r.kafka, topic); n != 0 {
		t.Errorf("%d records in Kafka, want 0: the client was removed before its message came", n)
	}
}
