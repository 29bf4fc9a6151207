package spool

// Fsyncs counts the fsyncs of group commits since the process started.
func Fsyncs() int64 { return fsyncs.Load() }
