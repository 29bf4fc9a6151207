package kproxy

// SetDrainMemory sets the bytes of parked topics' records the spool's
// drain keeps in memory (maxParkedBytes), before srv runs.
func SetDrainMemory(srv *Server, n int) { srv.spool.parkBudget = n }

// ProduceRequestsWritten is how many produce requests srv's acks=0/1
// client has written to brokers.
func ProduceRequestsWritten(srv *Server) int64 { return srv.prod.traces[0].written.Load() }
