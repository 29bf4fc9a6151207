package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCFromConfig: grpc_port and clients from kproxy.yaml; the health
// service says SERVING, Produce and a stream write with the client's
// credentials (and not without), SIGTERM ends the open stream UNAVAILABLE
// after its answers and the process exits 0 with every record answered
// 200 in Kafka.
func TestGRPCFromConfig(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 2}})
	dir := t.TempDir()
	// Two ports in one call: two calls may return the same port.
	port := bintest.FreePorts(t, 2)
	gport := port + 1
	cfg := fmt.Sprintf("log_dir: %s\nport: %d\ngrpc_port: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\nbroker_hosts: [%s]\n"+
		"clients:\n - name: shop\n   secret: shop-pass\n   topics: [orders]\n",
		filepath.Join(dir, "log"), port, gport, c.ListenAddrs()[0])
	f := filepath.Join(dir, "kproxy.yaml")
	os.WriteFile(f, []byte(cfg), 0o600)
	cmd, stderr := bintest.Start(t, binary(t), "-f", f)
	exited := bintest.Exited(t, cmd)

	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", gport), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := grpc_health_v1.NewHealthClient(conn)
	bintest.AwaitServing(t, cmd, exited, bintest.StartWithin, stderr, bintest.LogFile(filepath.Join(dir, "log", "kproxy.log")), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "kafkahttpwrapper.v1.KProxy"})
		if err != nil {
			return err
		}
		if r.Status != grpc_health_v1.HealthCheckResponse_SERVING {
			return fmt.Errorf("gRPC health %v", r.Status)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kp := kproxypb.NewKProxyClient(conn)
	req := &kproxypb.ProduceRequest{Topic: "orders", Records: []*kproxypb.Record{{Key: []byte("k"), Value: []byte("one")}, {Value: []byte("two")}}}
	if _, err := kp.Produce(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without credentials: %v, want Unauthenticated", err)
	}
	shop := metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("shop:shop-pass")))
	resp, err := kp.Produce(shop, req)
	if err != nil || resp.Status != 200 || len(resp.Results) != 2 {
		t.Fatalf("Produce: %v %v", resp, err)
	}
	s, err := kp.ProduceStream(shop)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		s.Send(&kproxypb.ProduceRequest{Id: uint64(i), Topic: "orders", Records: []*kproxypb.Record{{Value: []byte("stream")}}})
	}
	for i := range 3 {
		if r, err := s.Recv(); err != nil || r.Id != uint64(i) || r.Status != 200 {
			t.Fatalf("stream answer %d: %v %v", i, r, err)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if _, err := s.Recv(); err == io.EOF || status.Code(err) != codes.Unavailable {
		t.Errorf("open stream at SIGTERM: %v, want Unavailable", err)
	}
	<-exited
	if !cmd.ProcessState.Success() {
		t.Fatalf("exit after SIGTERM: %v; stderr: %s", cmd.ProcessState, stderr.String())
	}
	if n := kafkatest.Records(t, c, kafkaconf.Default(), "orders"); n != 5 {
		t.Errorf("%d records in Kafka, 5 answered 200", n)
	}
	logText, _ := os.ReadFile(filepath.Join(dir, "log", "kproxy.log"))
	if !strings.Contains(string(logText), fmt.Sprintf("grpc=127.0.0.1:%d", gport)) {
		t.Errorf("the start line does not give the gRPC address:\n%s", logText)
	}
}
