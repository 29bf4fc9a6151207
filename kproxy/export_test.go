package kproxy

// SetDrainMemory sets the bytes of parked topics' records the spool's
// drain keeps in memory (maxParkedBytes), before srv runs.
func SetDrainMemory(srv *Server, n int) { srv.spool.parkBudget = n }
