package kproxy_test

import (
	"encoding/binary"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCMetadataBoundedByMaxHeaderBytes: max_header_bytes bounds what
// an HTTP request may send before its body (431 above); a gRPC call's
// metadata is bounded by it too, not by grpc-go's 16 MiB (100 calls of a
// connection holding 1.6 GB of metadata). A grpc-go client is told the
// limit by the server's SETTINGS and refuses the call itself, naming it;
// a client that sends the metadata anyway has its call reset, nothing
// read from it. The server keeps serving.
func TestGRPCMetadataBoundedByMaxHeaderBytes(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, nil) // max_header_bytes 4096 (default)
	one := &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "", "x")}}
	if resp, err := g.produce(t, nil, one); err != nil || resp.Status != 200 {
		t.Fatalf("a call before: %v %v", resp, refusalOf(err))
	}
	big := strings.Repeat("m", 64<<10)

	_, _, err := g.produceMD(t, one, "x-trace", big)
	if st := status.Convert(err); st.Code() == codes.OK || !strings.Contains(st.Message(), "4096") {
		t.Errorf("Produce with 64 KiB of metadata, max_header_bytes 4096: %v; want refused, naming the limit", refusalOf(err))
	}

	// A client that ignores the limit the server announced.
	addr := g.srv.GRPCAddr().String()
	h := dialH2(t, addr)
	var fields []string
	for i := range 6 { // 6 KB, in one HEADERS frame: x/net closes the connection of a client far over the limit
		fields = append(fields, "x-trace-"+strconv.Itoa(i), big[:1000])
	}
	h.open(addr, "/kafkahttpwrapper.v1.KProxy/Produce", fields...)
	msg, err := proto.Marshal(one)
	if err != nil {
		t.Fatal(err)
	}
	h.write(func() error {
		return h.fr.WriteData(1, true, append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg))), msg...))
	})
	select {
	case <-h.ended:
	case <-time.After(10 * time.Second):
		t.Fatalf("raw call with 6 KB of metadata: no answer in 10 s: %s", h.broken())
	}
	h.mu.Lock()
	rst, st := h.rst, h.trailers["grpc-status"]
	h.mu.Unlock()
	if rst == nil {
		t.Errorf("raw call with 6 KB of metadata: answered grpc-status %q; want the stream reset, the call not read", st)
	} else if rst.ErrCode != http2.ErrCodeFrameSize {
		t.Errorf("raw call with 6 KB of metadata: RST_STREAM %v, want FRAME_SIZE_ERROR", rst.ErrCode)
	}

	if resp, err := g.produce(t, nil, one); err != nil || resp.Status != 200 {
		t.Fatalf("a call after: %v %v", resp, refusalOf(err))
	}
	if n := endOffsets(t, c, topic); n != 2 {
		t.Errorf("%d records in Kafka, want 2: the calls before and after; none of those with 64 KiB of metadata", n)
	}
}
