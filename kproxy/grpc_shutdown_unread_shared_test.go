package kproxy_test

import (
	"context"
	"crypto/tls"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// TestGRPCShutdownUnreadStreamSparesItsConnectionsCalls: at shutdown a
// stream whose client reads no answers is cut by closing its connection;
// a Produce call on the same connection still waiting for Kafka then must
// not be cut with it (its client would see the connection end, not
// whether its records were written): the connection is closed once that
// call is answered, and the shutdown still ends long before
// shutdown_timeout_ms. Over TLS as well: the calls of a connection are
// known from their peer, which comes through the TLS connection.
func TestGRPCShutdownUnreadStreamSparesItsConnectionsCalls(t *testing.T) {
	t.Run("plain", func(t *testing.T) { testUnreadStreamSparesCalls(t, false) })
	t.Run("tls", func(t *testing.T) { testUnreadStreamSparesCalls(t, true) })
}

func testUnreadStreamSparesCalls(t *testing.T, overTLS bool) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}, {Name: "held", Partitions: 1}})
	const shutdownTimeout = 10 * time.Second
	var logs runtest.Log
	certs := testcert.New(t)
	p := logProxy(t, c, &logs, func(cfg *kproxy.Config) {
		cfg.GRPCPort = freeTCPPort(t)
		cfg.ShutdownTimeoutMs = int(shutdownTimeout / time.Millisecond)
		cfg.WriteTimeoutMs = 500 // sendWait: 1 s
		if overTLS {
			cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey
		}
	})
	creds := insecure.NewCredentials()
	if overTLS {
		creds = credentials.NewTLS(&tls.Config{RootCAs: certs.CA})
	}
	conn, err := grpc.NewClient(p.srv.GRPCAddr().String(), grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kp := kproxypb.NewKProxyClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()

	s, err := kp.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const perReq = 2000
	go func() {
		for q := range 40 {
			if s.Send(bigRequest(q, perReq)) != nil {
				return
			}
		}
	}()
	waitFor(t, "10 requests of the stream written", func() bool { return endOffsets(t, c, topic) >= 10*perReq })

	// Produce requests to "held" wait until release; the call writes at
	// acks -1, through another Kafka client than the stream's: the
	// stream's records are not held behind it.
	release := make(chan struct{})
	var held atomic.Int32
	heldID := c.TopicInfo("held").TopicID
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		for _, tp := range r.(*kmsg.ProduceRequest).Topics {
			if tp.Topic == "held" || tp.TopicID == heldID {
				held.Add(1)
				c.SleepControl(func() { <-release })
				break
			}
		}
		return nil, nil, false
	})
	unary := make(chan error, 1)
	go func() {
		resp, err := kp.Produce(ctx, &kproxypb.ProduceRequest{Topic: "held", Acks: acksOf(-1), Records: []*kproxypb.Record{grec("", "u", "unary")}})
		if err == nil && resp.Status != 200 {
			err = &statusErr{resp.Status}
		}
		unary <- err
	}()
	waitFor(t, "the call's records held by the broker", func() bool {
		select {
		case err := <-unary:
			t.Fatalf("the call was answered before its records reached a broker: %v", refusalOf(err))
		default:
		}
		return held.Load() > 0
	})

	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- p.stop() }()
	waitFor(t, "the stream given up at shutdown", func() bool {
		return strings.Contains(logs.String(), "answers not read by its client at shutdown")
	})
	select {
	case err := <-unary:
		t.Fatalf("the call on the stream's connection ended before Kafka answered it: %v", err)
	default:
	}
	close(release)
	if err := <-unary; err != nil {
		t.Errorf("the call on the stream's connection: %v, want 200", refusalOf(err))
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run: %v", err)
	}
	if d := time.Since(start); d > shutdownTimeout/2 {
		t.Errorf("shutdown took %v (shutdown_timeout_ms %v)", d.Round(time.Millisecond), shutdownTimeout)
	}
	if n := endOffsets(t, c, "held"); n != 1 {
		t.Errorf("%d records in held, want the 1 answered 200", n)
	}
}

type statusErr struct{ status int32 }

func (e *statusErr) Error() string { return "status " + strconv.Itoa(int(e.status)) }
