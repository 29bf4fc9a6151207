package kproxy

import (
	"context"
	"time"
)

// SetDrainMemory sets the bytes of parked topics' records the spool's
// drain keeps in memory (maxParkedBytes), before srv runs.
func SetDrainMemory(srv *Server, n int) { srv.spool.parkBudget = n }

// ProduceRequestsWritten is how many produce requests srv's acks=0/1
// client has written to brokers.
func ProduceRequestsWritten(srv *Server) int64 { return srv.prod.traces[0].written.Load() }

// IdempotentRequestsWritten is how many produce requests srv's acks=-1
// client has written to brokers.
func IdempotentRequestsWritten(srv *Server) int64 { return srv.prod.traces[1].written.Load() }

// SetAfterDecode sets afterDecode (nil: none) until the test ends.
func SetAfterDecode(t interface{ Cleanup(func()) }, f func(ctx context.Context)) {
	afterDecode = f
	t.Cleanup(func() { afterDecode = nil })
}

// Draining is closed once srv's shutdown began.
func Draining(srv *Server) <-chan struct{} { return srv.drain }

// BufferedRecords is how many records srv's acks=0/1 client holds (sent
// and awaiting their answer, or queued), with the spool its acks=0 client's
// too.
func BufferedRecords(srv *Server) int64 {
	n := srv.prod.leader.BufferedProduceRecords()
	if srv.prod.acks0 != srv.prod.leader {
		n += srv.prod.acks0.BufferedProduceRecords()
	}
	return n
}

// ClientRecords is how many records srv's producer clients (acks=0/1,
// acks=-1, and with the spool acks=0) hold: sent and awaiting their answer,
// or queued.
func ClientRecords(srv *Server) int64 {
	n := int64(0)
	for _, cl := range srv.prod.clients() {
		n += cl.BufferedProduceRecords()
	}
	return n
}

// SetCompactedRecheck sets compactedRecheck until the test ends.
func SetCompactedRecheck(t interface{ Cleanup(func()) }, d time.Duration) {
	was := compactedRecheck
	compactedRecheck = d
	t.Cleanup(func() { compactedRecheck = was })
}

// MissingTTL is how long a topic the brokers said does not exist is
// answered 404 without asking them again.
const MissingTTL = missingTTL

// SpoolGates is how many topics srv's spool keeps a gate for.
func SpoolGates(srv *Server) int {
	srv.spool.gatesMu.Lock()
	defer srv.spool.gatesMu.Unlock()
	return len(srv.spool.gates)
}

// gate returns topic's gate, unlocked.
func (s *spooler) gate(topic string) *gate {
	g := s.lockGate(topic)
	g.mu.Unlock()
	return g
}
