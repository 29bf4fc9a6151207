//go:build linux

package kproxy_test

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// TestGRPCPortConnectionsHaveTCPUserTimeout: grpc-go gives each
// connection it serves TCP_USER_TIMEOUT (its keepalive timeout, 20 s), so
// that a client gone without a word (its host down, the network cut)
// while kproxy still sends to it (a stream's answers) is closed within
// 20 s, its calls ended, rather than after the kernel's retransmissions
// (about 15 minutes). It sets it only on a *net.TCPConn: a listener whose
// connections are wrapped loses it, silently.
func TestGRPCPortConnectionsHaveTCPUserTimeout(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	certs := testcert.New(t)
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var dial []grpc.DialOption
			if tc.tls {
				dial = append(dial, grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(certs.CA, "localhost")))
			}
			p := startGRPC(t, c, func(cfg *kproxy.Config) {
				if tc.tls {
					cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey
				}
			}, dial...)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := grpc_health_v1.NewHealthClient(p.conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{}); err != nil {
				t.Fatalf("health Check: %v", err)
			}
			fd := servedSocket(t, p.srv.GRPCAddr().(*net.TCPAddr).Port)
			ms, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
			if err != nil {
				t.Fatal(err)
			}
			if ms != 20000 {
				t.Errorf("grpc_port's connection has TCP_USER_TIMEOUT %d ms, want grpc-go's 20000", ms)
			}
		})
	}
}

// servedSocket is the descriptor of this process's one socket accepted on
// port (its local port, with a peer: not the listener).
func servedSocket(t *testing.T, port int) int {
	t.Helper()
	fds := accepted(t, port)
	if len(fds) != 1 {
		t.Fatalf("%d connections accepted on %d, want 1", len(fds), port)
	}
	return fds[0]
}

// acceptedSockets is how many sockets this process accepted on port.
func acceptedSockets(t *testing.T, port int) int { return len(accepted(t, port)) }

// accepted are the descriptors of this process's sockets accepted on
// port (its local port, with a peer: not the listener).
func accepted(t *testing.T, port int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		local, err := unix.Getsockname(fd)
		if err != nil {
			continue // not a socket
		}
		if a, ok := local.(*unix.SockaddrInet4); !ok || a.Port != port {
			continue
		}
		if _, err := unix.Getpeername(fd); err != nil {
			continue // the listener
		}
		fds = append(fds, fd)
	}
	return fds
}
