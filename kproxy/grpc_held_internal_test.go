package kproxy

import "testing"

// TestStreamHeldBoundedBehindAHeldRequest: a stream notes the settled of
// each request at one acks level (hold) until it switches level. One
// request whose record kgo holds for long (a produce request out to a
// frozen broker: produce_timeout_ms plus ten seconds a try, for as long as
// the broker stays so) must not make the stream keep the settled of every
// later request, settled long ago, for as long: the notes of a long stream
// would grow by one a request meanwhile.
func TestStreamHeldBoundedBehindAHeldRequest(t *testing.T) {
	st := &produceStream{}
	st.hold(make(chan struct{})) // kgo still holds its record
	var last chan struct{}
	for range 100000 {
		if last != nil {
			close(last) // the request before settled
		}
		last = make(chan struct{})
		st.hold(last)
	}
	if n := len(st.held); n > 1000 {
		t.Errorf("%d settled noted after 100000 requests behind one held request, want a few", n)
	}
}
