package kproxy_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
)

// TestStreamOfARemovedClient401BeforeItsOwnChecks: README ("Reloading
// clients"): an open ProduceStream "has its client found again, by the
// rules then in force, just before each request's own checks once a
// reload stored new rules: a client removed, or whose secret changed, has
// that request answered 401"; and (401 row) credentials are "checked
// before the topic is allowed or refused: 401 comes before 403, on
// /commit, /batch and gRPC alike". A Produce call or a /batch with bad
// credentials and a bad request is 401; a removed client's stream request
// that is also malformed must be 401 too, not 400.
func TestStreamOfARemovedClient401BeforeItsOwnChecks(t *testing.T) {
	r := startReloadable(t, "clients:\n - {name: shop, secret: s, topics: ['*']}\n - {name: gone, secret: g, topics: ['*']}\n")
	s := r.stream(t, as(t.Context(), "gone", "g"))
	if err := s.Send(&kproxypb.ProduceRequest{Id: 1, Topic: topic, Records: []*kproxypb.Record{grec("", "k", "v")}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := s.Recv(); err != nil || resp.Status != 200 {
		t.Fatalf("before the reload: %v %v", resp, err)
	}
	r.write(t, "clients:\n - {name: shop, secret: s, topics: ['*']}\n")
	if err := r.srv.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	// acks 7: a request kproxy refuses 400 by its own checks.
	if err := s.Send(&kproxypb.ProduceRequest{Id: 2, Acks: acksOf(7), Topic: topic, Records: []*kproxypb.Record{grec("", "k", "v")}}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil || resp.Status != 401 {
		t.Errorf("removed client's stream, a bad request after the reload: %v %v, want 401", resp, err)
	}
	// The same bad request in a new Produce call by the removed client: 401.
	_, perr := r.produce(t, as(context.Background(), "gone", "g"), &kproxypb.ProduceRequest{Id: 3, Acks: acksOf(7), Topic: topic, Records: []*kproxypb.Record{grec("", "k", "v")}})
	if status.Code(perr) != codes.Unauthenticated {
		t.Errorf("the same request as a new Produce call: %v; want Unauthenticated", perr)
	}
}
