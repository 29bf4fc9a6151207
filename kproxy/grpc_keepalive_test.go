package kproxy_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// h2conn is an HTTP/2 connection to kproxy's gRPC port driven frame by
// frame: it pings exactly when a test says, as a gRPC client's keepalive
// does.
type h2conn struct {
	t   *testing.T
	c   net.Conn
	wmu sync.Mutex
	fr  *http2.Framer

	mu       sync.Mutex
	goAway   *http2.GoAwayFrame
	readErr  error
	data     []byte                // stream 1's DATA
	trailers map[string]string     // stream 1's last HEADERS with END_STREAM
	rst      *http2.RSTStreamFrame // stream 1's RST_STREAM
	acks     chan [8]byte
	ended    chan struct{} // stream 1 ended (trailers or RST_STREAM)
	endOnce  sync.Once
}

func dialH2(t *testing.T, addr string) *h2conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := &h2conn{t: t, c: c, fr: http2.NewFramer(c, c), acks: make(chan [8]byte, 16), ended: make(chan struct{})}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	h.write(func() error { return h.fr.WriteSettings() })
	go h.read()
	return h
}

func (h *h2conn) write(f func() error) {
	h.t.Helper()
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if err := f(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *h2conn) read() {
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.mu.Lock()
			h.readErr = err
			h.mu.Unlock()
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.wmu.Lock()
				h.fr.WriteSettingsAck()
				h.wmu.Unlock()
			}
		case *http2.PingFrame:
			if f.IsAck() {
				h.acks <- f.Data
			} else { // the server's (a graceful stop waits for its ack)
				h.wmu.Lock()
				h.fr.WritePing(true, f.Data)
				h.wmu.Unlock()
			}
		case *http2.GoAwayFrame:
			h.mu.Lock()
			h.goAway = f
			h.mu.Unlock()
		case *http2.RSTStreamFrame:
			h.mu.Lock()
			h.rst = f
			h.mu.Unlock()
			h.endOnce.Do(func() { close(h.ended) })
		case *http2.DataFrame:
			h.mu.Lock()
			h.data = append(h.data, f.Data()...)
			h.mu.Unlock()
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				h.mu.Lock()
				h.trailers = map[string]string{}
				for _, hf := range f.Fields {
					h.trailers[hf.Name] = hf.Value
				}
				h.mu.Unlock()
				h.endOnce.Do(func() { close(h.ended) })
			}
		}
	}
}

// open opens stream 1 on path with the extra metadata fields (name,
// value), in as many CONTINUATION frames as they need.
func (h *h2conn) open(addr, path string, extra ...string) {
	h.t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	fields := []string{":method", "POST", ":scheme", "http", ":authority", addr, ":path", path,
		"content-type", "application/grpc", "te", "trailers"}
	fields = append(fields, extra...)
	for i := 0; i+1 < len(fields); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	block := hb.Bytes()
	const max = 16 << 10 // HTTP/2's default SETTINGS_MAX_FRAME_SIZE
	h.write(func() error {
		first := block[:min(len(block), max)]
		block = block[len(first):]
		if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndHeaders: len(block) == 0}); err != nil {
			return err
		}
		for len(block) > 0 {
			next := block[:min(len(block), max)]
			block = block[len(next):]
			if err := h.fr.WriteContinuation(1, len(block) == 0, next); err != nil {
				return err
			}
		}
		return nil
	})
}

// ping pings and waits for the ack: false when the connection ended
// first.
func (h *h2conn) ping(n byte) bool {
	h.t.Helper()
	h.write(func() error { return h.fr.WritePing(false, [8]byte{n}) })
	select {
	case d := <-h.acks:
		if d[0] != n {
			h.t.Fatalf("ping %d: ack of %d", n, d[0])
		}
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// broken says why the connection is no longer usable ("" while it is).
func (h *h2conn) broken() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.goAway != nil:
		return "GOAWAY " + h.goAway.ErrCode.String() + " " + string(h.goAway.DebugData())
	case h.readErr != nil:
		return "closed: " + h.readErr.Error()
	}
	return ""
}

// TestGRPCKeepalivePingsEvery10s: a gRPC client with common keepalive
// settings (grpc-go's and grpc-java's shortest keepalive time, 10 s, with
// PermitWithoutStream) pings every 10 s while its connection has a stream
// open and waiting, or no call at all. Such a connection is kept: the
// stream opened before the pings is answered after them. grpc-go's
// default policy (a ping at most every 5 minutes, none without a call)
// answers the third early ping with GOAWAY too_many_pings and ends the
// connection's calls Unavailable, records they carried maybe written.
func TestGRPCKeepalivePingsEvery10s(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, nil) // idle_timeout_ms 60000: the idle connection is not closed as idle
	addr := g.srv.GRPCAddr().String()

	withStream, idle := dialH2(t, addr), dialH2(t, addr)
	withStream.open(addr, "/kafkahttpwrapper.v1.KProxy/ProduceStream")

	// Pings at 0, 10, 20 and 30 s on both connections.
	for n := range byte(4) {
		if n > 0 {
			time.Sleep(10*time.Second + 100*time.Millisecond) // the pace under test
		}
		for name, h := range map[string]*h2conn{"with a stream open": withStream, "without a call": idle} {
			if !h.ping(n) {
				t.Fatalf("connection %s: ping %d at %d s not acknowledged: %s", name, n, 10*int(n), h.broken())
			}
			if why := h.broken(); why != "" {
				t.Fatalf("connection %s, pinging every 10 s: %s after ping %d", name, why, n)
			}
		}
	}

	// The stream still works: a request, then the end of the client's side.
	msg, err := proto.Marshal(&kproxypb.ProduceRequest{Id: 7, Topic: topic, Records: []*kproxypb.Record{grec("", "k", "after pings")}})
	if err != nil {
		t.Fatal(err)
	}
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	withStream.write(func() error { return withStream.fr.WriteData(1, true, append(frame, msg...)) })
	select {
	case <-withStream.ended:
	case <-time.After(10 * time.Second):
		t.Fatalf("the stream opened before the pings was not answered: %s", withStream.broken())
	}
	withStream.mu.Lock()
	st, data := withStream.trailers["grpc-status"], withStream.data
	withStream.mu.Unlock()
	var resp kproxypb.ProduceResponse
	if st != "0" || len(data) < 5 || proto.Unmarshal(data[5:], &resp) != nil || resp.Id != 7 || resp.Status != 200 {
		t.Fatalf("the stream after 30 s of pings: grpc-status %q, answer %v; want OK with request 7 answered 200", st, &resp)
	}
	if !idle.ping(9) {
		t.Fatalf("the connection without a call after 30 s of pings: %s", idle.broken())
	}
	if n := endOffsets(t, c, topic); n != 1 {
		t.Errorf("%d records in Kafka, want 1", n)
	}
}
