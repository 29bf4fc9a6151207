package main

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
)

// grpcSender sends batches on ProduceStream streams, one per sender, each
// on a connection of its own (as http mode's connections).
type grpcSender struct {
	topic                 string
	acks                  int32
	records, keys, window int
	value                 []byte
	kl                    [][]byte
	conns                 []*grpc.ClientConn
	ctx                   context.Context
	cancel                context.CancelFunc
}

func newGRPCSender(addr, topic, acks string, conns, records, keys, window int, value []byte) (*grpcSender, error) {
	a, err := strconv.Atoi(acks)
	if err != nil {
		return nil, err
	}
	if window < 1 {
		return nil, fmt.Errorf("-window must be >= 1")
	}
	g := &grpcSender{topic: topic, acks: int32(a), records: records, keys: keys, window: window, value: value, kl: keyList(keys)}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	for range conns {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(countingCodec{encoding.GetCodecV2("proto")})))
		if err != nil {
			g.close()
			return nil, err
		}
		g.conns = append(g.conns, c)
	}
	return g, nil
}

func (g *grpcSender) close() {
	g.cancel()
	for _, c := range g.conns {
		c.Close()
	}
}

// request is the batch starting at key kl[from]: the records http mode's
// body and kgo mode's ProduceSync carry.
func (g *grpcSender) request(from int) *kproxypb.ProduceRequest {
	req := &kproxypb.ProduceRequest{Topic: g.topic, Acks: &g.acks}
	for i := range g.records {
		req.Records = append(req.Records, &kproxypb.Record{Key: g.kl[(from+i)%len(g.kl)], Value: g.value})
	}
	return req
}

// answer is what became of one request.
type answer struct {
	ok, failed int
	err        error
	end        bool // the stream ended (err says how)
}

// sender opens sender s's stream. The requests are encoded before the
// clock starts, one per place in the key list a batch can start at (as
// http mode builds its bodies). next sends one request, once one of the
// -window places is free, and reports the answers that came meanwhile;
// finish waits for the rest.
func (g *grpcSender) sender(s int) batcher {
	fail := func(err error) batcher {
		return batcher{next: func(int) (int, int, error) { return 0, g.records, err }}
	}
	st, err := kproxypb.NewKProxyClient(g.conns[s]).ProduceStream(g.ctx)
	if err != nil {
		return fail(err)
	}
	prepared := map[int]*grpc.PreparedMsg{}
	for b := 0; ; b++ {
		f := first(s, b, g.records, g.keys)
		if _, ok := prepared[f]; ok {
			break
		}
		pm := &grpc.PreparedMsg{}
		if err := pm.Encode(st, g.request(f)); err != nil {
			return fail(err)
		}
		prepared[f] = pm
	}
	answers := make(chan answer, g.window)
	go func() {
		for {
			var resp counted
			if err := st.RecvMsg(&resp); err != nil {
				answers <- answer{end: true, err: fmt.Errorf("stream: %w", err)}
				return
			}
			a := answer{ok: resp.written, failed: g.records - resp.written}
			if resp.status != 200 {
				a.err = fmt.Errorf("%d: %.200s", resp.status, resp.reason)
			}
			answers <- a
		}
	}()
	out := 0 // requests sent and not answered
	ended := false
	var sum answer
	take := func(a answer) {
		if a.end {
			ended = true
			sum.failed += out * g.records // never answered
			out = 0
		} else {
			sum.ok, sum.failed = sum.ok+a.ok, sum.failed+a.failed
			out--
		}
		if sum.err == nil {
			sum.err = a.err
		}
	}
	report := func() (int, int, error) {
		r := sum
		sum = answer{}
		return r.ok, r.failed, r.err
	}
	next := func(b int) (int, int, error) {
		for ; out >= g.window && !ended; take(<-answers) {
		}
		for drained := false; !drained && !ended; {
			select {
			case a := <-answers:
				take(a)
			default:
				drained = true
			}
		}
		if ended {
			sum.failed += g.records
			return report()
		}
		if err := st.SendMsg(prepared[first(s, b, g.records, g.keys)]); err != nil {
			sum.failed += g.records
			ended = true
			return report()
		}
		out++
		return report()
	}
	finish := func() (int, int, error) {
		for ; out > 0 && !ended; take(<-answers) {
		}
		st.CloseSend()
		return report()
	}
	return batcher{next: next, finish: finish}
}

// counted is what the sender reads of a ProduceResponse: its status and
// reason, and how many of its results say 200 — as http mode reads the
// status of an answer, and its results only when it is not 200 — without
// making a message per result.
type counted struct {
	status, written int
	reason          string
}

// countingCodec reads ProduceResponses into counted; anything else is
// protobuf's.
type countingCodec struct{ proto encoding.CodecV2 }

func (c countingCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }
func (countingCodec) Name() string                             { return "proto" }

func (c countingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*counted)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	b := data.Materialize()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 2 && typ == protowire.VarintType:
			var st uint64
			st, n = protowire.ConsumeVarint(b)
			r.status = int(int32(st))
		case num == 3 && typ == protowire.BytesType:
			var reason []byte
			reason, n = protowire.ConsumeBytes(b)
			r.reason = string(reason)
		case num == 4 && typ == protowire.BytesType:
			var res []byte
			res, n = protowire.ConsumeBytes(b)
			if resultWritten(res) {
				r.written++
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

// resultWritten reports whether a RecordResult says 200.
func resultWritten(b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num == 3 && typ == protowire.VarintType {
			st, _ := protowire.ConsumeVarint(b)
			return st == 200
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return false
		}
		b = b[n:]
	}
	return false
}
