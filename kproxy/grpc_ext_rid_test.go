package kproxy_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCRequestIDNotASCIIEchoed: an x-request-id that is not printable
// ASCII (HTTP/2 carries such bytes; grpc-go's client refuses to send
// them, so a plain HTTP/2 client calls here) comes back in the response
// header metadata of ProduceStream as of Produce, and as HTTP's
// X-Request-ID does: the README says the call's id is answered either
// way, and the records carry it.
func TestGRPCRequestIDNotASCIIEchoed(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startExtGRPC(t, c, []string{"rid"}, nil)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	m, err := proto.Marshal(&kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "", "x")}})
	if err != nil {
		t.Fatal(err)
	}
	msg := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(m)))
	msg = append(msg, m...)
	const id = "order-\xc3\xa9-7" // "order-é-7" in UTF-8
	for _, method := range []string{"Produce", "ProduceStream"} {
		req, err := http.NewRequestWithContext(t.Context(), "POST",
			"http://"+g.srv.GRPCAddr().String()+"/kafkahttpwrapper.v1.KProxy/"+method, bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("TE", "trailers")
		req.Header.Set("X-Request-ID", id)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if st := resp.Trailer.Get("Grpc-Status"); st != "0" || len(body) < 5 {
			t.Fatalf("%s: grpc-status %q (%s), %d bytes of answer", method, st, resp.Trailer.Get("Grpc-Message"), len(body))
		}
		var pr kproxypb.ProduceResponse
		if err := proto.Unmarshal(body[5:], &pr); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if got := resp.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != id {
			t.Errorf("%s: x-request-id %q in the response header metadata, want %q", method, got, id)
		}
		if got := recordHeaders(t, c, &pr)[0]; !sameList(got, []string{"rid=" + id}) {
			t.Errorf("%s: record headers %q, want rid=%s", method, got, id)
		}
	}
}
