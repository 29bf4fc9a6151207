package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
)

// TestSIGTERMWhileWaitingForZooKeeperStopsAtOnce: ktransfer starts while
// ZooKeeper is down and waits for a session, up to zk_timeout_ms. A
// SIGTERM then (systemctl stop, a deploy giving up) was only noticed
// after that wait, which ended in "start failed" and exit 1: the stop
// took zk_timeout_ms and looked like a failure. It must end the start at
// once, say so in the log, and exit 0 as a stop does: nothing was claimed.
func TestSIGTERMWhileWaitingForZooKeeperStopsAtOnce(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "modules"), 0o755)
	os.WriteFile(filepath.Join(dir, "modules", "m.yaml"), []byte("topic: t\nprotocol:\n name: http\n uri: /p\nbackend_servers: [127.0.0.1:1]\n"), 0o644)
	down := bintest.FreePort(t) // nothing listens there: ZooKeeper is down
	conf := filepath.Join(dir, "ktransfer.yaml")
	os.WriteFile(conf, []byte(fmt.Sprintf("log_level: 8\nzk_chroot: /mq/c\nzk_hosts: [127.0.0.1:%d]\nzk_timeout_ms: 25000\n"+
		"broker_hosts: [127.0.0.1:1]\nmodule_conf_dir: %s\nmodule_enabled: [m]\nadmin_addr: \"\"\n", down, filepath.Join(dir, "modules"))), 0o644)
	p := startWatched(t, conf) // log_dir unset: the log is standard error
	waitFor(t, "the zookeeper client trying to connect", func() bool {
		return strings.Contains(p.stderr.String(), "zookeeper client")
	}, p)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5 s after SIGTERM while waiting for ZooKeeper (zk_timeout_ms 25000); log:\n%s", p.stderr)
	}
	t.Logf("stopped %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM during start-up, want 0; log:\n%s", code, p.stderr)
	}
	if log := p.stderr.String(); !strings.Contains(log, "stopped while starting") || strings.Contains(log, "start failed") {
		t.Errorf("log does not say the start was stopped:\n%s", log)
	}
}

// ZooKeeper's opcodes of the requests the tests below wait for.
const (
	opGetChildren2 = 12  // Children: the brokers' registrations
	opSetAuth      = 100 // AddAuth: zk_auth's digest credentials
)

// sessionThenSilence is a ZooKeeper server that grants every session and
// then answers nothing, the connections held open: a server that hangs
// after the handshake (a stuck quorum, a disk that does not answer under
// its log) as a client sees it. The client notices only after 2/3 of the
// session timeout without an answer.
type sessionThenSilence struct {
	addr string
	ops  chan int32 // the opcode of every request after a handshake
}

func startSessionThenSilence(t *testing.T) *sessionThenSilence {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z := &sessionThenSilence{addr: ln.Addr().String(), ops: make(chan int32, 1024)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { z.serve(c) })
		}
	})
	return z
}

// serve answers the connect request (protocol version, last zxid, timeout,
// session id, password) with a session of the timeout asked for, then
// reads every request and answers none.
func (z *sessionThenSilence) serve(c net.Conn) {
	req, err := readFrame(c)
	if err != nil || len(req) < 16 {
		return
	}
	resp := binary.BigEndian.AppendUint32(nil, 0)                                   // protocol version
	resp = binary.BigEndian.AppendUint32(resp, binary.BigEndian.Uint32(req[12:16])) // timeout
	resp = binary.BigEndian.AppendUint64(resp, 0x5e55)                              // session id
	resp = binary.BigEndian.AppendUint32(resp, 16)                                  // password
	resp = append(resp, make([]byte, 16)...)
	if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(resp))), resp...)); err != nil {
		return
	}
	for {
		req, err := readFrame(c)
		if err != nil {
			return
		}
		if len(req) >= 8 { // xid, opcode
			select {
			case z.ops <- int32(binary.BigEndian.Uint32(req[4:8])):
			default:
			}
		}
	}
}

// readFrame reads one length-prefixed packet.
func readFrame(c net.Conn) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(n[:]))
	_, err := io.ReadFull(c, b)
	return b, err
}

// await waits until the server has received a request with opcode op.
func (z *sessionThenSilence) await(t *testing.T, op int32, p watched) {
	t.Helper()
	timeout := time.After(bintest.StartWithin)
	for {
		select {
		case got := <-z.ops:
			if got == op {
				return
			}
		case <-p.exited:
			t.Fatalf("ktransfer_bin ended before sending ZooKeeper opcode %d: %v; log:\n%s", op, p.cmd.ProcessState, p.stderr)
		case <-timeout:
			t.Fatalf("ZooKeeper got no request of opcode %d within %v; log:\n%s", op, bintest.StartWithin, p.stderr)
		}
	}
}

// silentZooKeeperConf writes a configuration whose ZooKeeper is z, with
// a zk_timeout_ms (25 s) far above the stop's bound, and extra.
func silentZooKeeperConf(t *testing.T, z *sessionThenSilence, extra string) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "modules"), 0o755)
	os.WriteFile(filepath.Join(dir, "modules", "m.yaml"), []byte("topic: t\nprotocol:\n name: http\n uri: /p\nbackend_servers: [127.0.0.1:1]\n"), 0o644)
	conf := filepath.Join(dir, "ktransfer.yaml")
	os.WriteFile(conf, []byte(fmt.Sprintf("log_level: 8\nzk_chroot: /mq/c\nzk_hosts: [%s]\nzk_timeout_ms: 25000\n"+
		"module_conf_dir: %s\nmodule_enabled: [m]\nadmin_addr: \"\"\n%s", z.addr, filepath.Join(dir, "modules"), extra)), 0o644)
	return conf
}

// stopsWhileStarting sends p SIGTERM and requires it to exit 0 within 3 s
// (closing its ZooKeeper client waits up to 1 s for the server's answer),
// its log saying the start was stopped.
func stopsWhileStarting(t *testing.T, p watched, why string) {
	t.Helper()
	sent := time.Now()
	bintest.StopWithin(t, p.cmd, p.exited, 3*time.Second, why, p.stderr)
	t.Logf("stopped %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
	if log := p.stderr.String(); !strings.Contains(log, "stopped while starting") || strings.Contains(log, "start failed") {
		t.Errorf("log does not say the start was stopped:\n%s", log)
	}
}

// TestSIGTERMWhileZooKeeperSilentOnAuthStopsAtOnce: with zk_auth, the
// start sends the digest credentials once the session is up and waits for
// the answer, up to zk_timeout_ms. A ZooKeeper that granted the session
// and answers nothing more held a SIGTERM then until the client gave up on
// the connection (2/3 of the session timeout): the stop must end the
// start at once, exit 0, nothing claimed.
func TestSIGTERMWhileZooKeeperSilentOnAuthStopsAtOnce(t *testing.T) {
	z := startSessionThenSilence(t)
	secret := filepath.Join(t.TempDir(), "zk.secret")
	os.WriteFile(secret, []byte("zk-pass\n"), 0o600)
	conf := silentZooKeeperConf(t, z, fmt.Sprintf("broker_hosts: [127.0.0.1:1]\nzk_auth:\n user: ktransfer\n password_file: %s\n", secret))
	p := startWatched(t, conf) // log_dir unset: the log is standard error
	z.await(t, opSetAuth, p)
	stopsWhileStarting(t, p, "while ZooKeeper does not answer the digest authentication (zk_timeout_ms 25000)")
}

// TestSIGTERMWhileZooKeeperSilentOnBrokerDiscoveryStopsAtOnce: without
// broker_hosts the start reads the brokers' registrations from ZooKeeper
// once the session is up. A ZooKeeper that granted the session and
// answers nothing more held a SIGTERM then until the client gave up on
// the connection (2/3 of the session timeout): the stop must end the
// start at once, exit 0.
func TestSIGTERMWhileZooKeeperSilentOnBrokerDiscoveryStopsAtOnce(t *testing.T) {
	z := startSessionThenSilence(t)
	p := startWatched(t, silentZooKeeperConf(t, z, "")) // log_dir unset: the log is standard error
	z.await(t, opGetChildren2, p)
	stopsWhileStarting(t, p, "while ZooKeeper does not answer the brokers' listing (zk_timeout_ms 25000)")
}
