// Command grpcprobe talks to kproxy's gRPC port: it writes -n records
// (value -value, key -key) in one Produce call, or in -stream requests of
// one ProduceStream, or asks the health service (-health), and prints the
// answers. It is the Go client of the README, runnable.
//
//	grpcprobe -addr 127.0.0.1:5031 -topic test_topic -key alice -value '{"a":1}' -n 3
//	grpcprobe -addr 127.0.0.1:5031 -topic test_topic -stream 3 -acks -1
//	grpcprobe -addr 127.0.0.1:5031 -health
//	grpcprobe -addr kproxy:5031 -ca ca.pem -auth shop:secret -topic orders -value x
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("grpcprobe", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:5031", "kproxy's grpc_port, host:port")
	topic := fs.String("topic", "test_topic", "topic of the records")
	key := fs.String("key", "", "key of the records (empty: none)")
	value := fs.String("value", "hello", "value of each record (a number is appended when -n > 1)")
	n := fs.Int("n", 1, "records per request")
	acks := fs.Int("acks", 1, "0, 1 or -1")
	atomic := fs.Bool("atomic", false, "one Kafka transaction (acks -1)")
	stream := fs.Int("stream", 0, "send this many requests on one ProduceStream instead of one Produce call")
	health := fs.Bool("health", false, "ask the health service instead")
	auth := fs.String("auth", "", "client credentials, name:secret")
	ca := fs.String("ca", "", "CA file: connect with TLS")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline of the call")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	creds := insecure.NewCredentials()
	if *ca != "" {
		pem, err := os.ReadFile(*ca)
		pool := x509.NewCertPool()
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintf(os.Stderr, "grpcprobe: -ca %s: no certificate (%v)\n", *ca, err)
			return 2
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool})
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcprobe:", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *auth != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(*auth)))
	}
	if *health {
		r, err := grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
		if err != nil {
			fmt.Println("health:", status.Convert(err).Code(), status.Convert(err).Message())
			return 1
		}
		fmt.Println("health:", r.Status)
		return 0
	}
	a := int32(*acks)
	request := func(id uint64) *kproxypb.ProduceRequest {
		req := &kproxypb.ProduceRequest{Id: id, Topic: *topic, Acks: &a, Atomic: *atomic}
		for i := range *n {
			v := *value
			if *n > 1 {
				v += strconv.Itoa(i)
			}
			req.Records = append(req.Records, &kproxypb.Record{Key: []byte(*key), Value: []byte(v)})
		}
		return req
	}
	kp := kproxypb.NewKProxyClient(conn)
	if *stream == 0 {
		resp, err := kp.Produce(ctx, request(0))
		if err != nil {
			printError(err)
			return 1
		}
		printResponse(resp)
		return 0
	}
	s, err := kp.ProduceStream(ctx)
	if err != nil {
		printError(err)
		return 1
	}
	go func() {
		for i := range *stream {
			if s.Send(request(uint64(i))) != nil {
				return // the stream ended: Recv says why
			}
		}
		s.CloseSend()
	}()
	for {
		resp, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return 0
		}
		if err != nil {
			printError(err)
			return 1
		}
		printResponse(resp)
	}
}

func printResponse(r *kproxypb.ProduceResponse) {
	fmt.Printf("id %d: status %d", r.Id, r.Status)
	if r.Error != "" {
		fmt.Printf(" %q (bad_index %d)", r.Error, r.BadIndex)
	}
	fmt.Println()
	for i, res := range r.Results {
		fmt.Printf("  record %d: status %d partition %d offset %d", i, res.Status, res.Partition, res.Offset)
		if res.Error != "" {
			fmt.Printf(" %q", res.Error)
		}
		fmt.Println()
	}
}

// printError prints a gRPC error: its code and message, and the
// ProduceResponse kproxy puts in its details.
func printError(err error) {
	st := status.Convert(err)
	fmt.Printf("error %s: %s\n", st.Code(), st.Message())
	for _, d := range st.Details() {
		if r, ok := d.(*kproxypb.ProduceResponse); ok {
			fmt.Printf("  detail: status %d bad_index %d retry_after %d\n", r.Status, r.BadIndex, r.RetryAfter)
		}
	}
}
