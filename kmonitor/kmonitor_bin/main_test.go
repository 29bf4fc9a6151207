package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

func TestBadConfigExitsWithReason(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	os.WriteFile(f, []byte("base:\n clusters: [c]\nhttp_server:\n prot: 1\nc:\n chroot: /mq/c\n zk_hosts: [h:1]\n"), 0o644)
	cmd := exec.Command(bintest.Build(t, "."), "-f", f)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run()
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(stderr.String(), f+":4: http_server.prot: unknown key") {
		t.Fatalf("exit %d, stderr %q", cmd.ProcessState.ExitCode(), stderr.String())
	}
}

// TestServesAndStopsOnSIGTERM runs the binary against a real ZooKeeper with
// no Kafka behind it: it serves /delay and /health, and exits 0 on SIGTERM.
func TestServesAndStopsOnSIGTERM(t *testing.T) {
	z := zktest.Start(t)
	port := bintest.FreePort(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "kmonitor.yaml")
	os.WriteFile(f, []byte(fmt.Sprintf("base:\n log_dir: %s\n clusters: [c1]\nhttp_server:\n port: %d\n listen_host: 127.0.0.1\n"+
		"c1:\n chroot: /mq/c1\n zk_hosts: [%s]\n", filepath.Join(dir, "log"), port, z.Addr)), 0o644)
	cmd, stderr := bintest.Start(t, bintest.Build(t, "."), "-f", f)
	exited := bintest.Exited(t, cmd)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	bintest.AwaitServing(t, cmd, exited, bintest.StartWithin, stderr, bintest.LogFile(filepath.Join(dir, "log", "kmonitor.log")), func() error {
		resp, err := http.Get(url + "/health")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok\n" {
			return fmt.Errorf("/health: %s %q", resp.Status, b)
		}
		return nil
	})
	resp, err := http.Get(url + "/delay")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != `{"c1":{}}`+"\n" {
		t.Errorf("/delay with no modules: %q", b)
	}
	bintest.StopWithin(t, cmd, exited, 10*time.Second, "once serving", stderr)
	if log, _ := os.ReadFile(filepath.Join(dir, "log", "kmonitor.log")); !strings.Contains(string(log), "msg=stopped") {
		t.Errorf("log: %s", log)
	}
}

// TestSecureFromConfig: brokers that need TLS with a client certificate and
// SASL SCRAM, and offsets only a ZooKeeper digest user may read, all from
// kmonitor.yaml.
func TestSecureFromConfig(t *testing.T) {
	k, kc := kafkatest.StartSecure(t, []kafkatest.Topic{{Name: "a", Partitions: 1}}, "SCRAM-SHA-256")
	recs := make([]*kgo.Record, 7)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "a", Value: []byte("x")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkatest.Client(t, k, kc).ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce through TLS and SASL: %v", err)
	}

	z := zktest.Start(t)
	conn := zktest.Connect(t, z.Addr)
	auth := zklayout.Auth{User: "ktransfer", Password: "zk-pass"}
	if err := auth.Authenticate(conn, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	private := zk.DigestACL(zk.PermAll, auth.User, auth.Password)
	dir := zklayout.Offsets("/mq/c1", "m", "a")
	if err := zklayout.CreateAll(conn, dir, private); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Create(dir+"/0", []byte("3"), 0, private); err != nil {
		t.Fatal(err)
	}

	port := bintest.FreePort(t)
	tmp := t.TempDir()
	zkPass := filepath.Join(tmp, "zk.secret")
	os.WriteFile(zkPass, []byte("zk-pass\n"), 0o600)
	f := filepath.Join(tmp, "kmonitor.yaml")
	os.WriteFile(f, []byte(fmt.Sprintf("base:\n log_dir: %s\n clusters: [c1]\n poll_interval_ms: 100\n"+
		"http_server:\n port: %d\n listen_host: 127.0.0.1\n read_timeout_ms: 10000\n write_timeout_ms: 10000\n"+
		"c1:\n chroot: /mq/c1\n zk_hosts: [%s]\n broker_hosts: [%s]\n"+
		" zk_auth:\n  user: ktransfer\n  password_file: %s\n"+
		" kafka:\n  tls: {enable: true, ca_file: %s, cert_file: %s, key_file: %s}\n"+
		"  sasl: {mechanism: SCRAM-SHA-256, user: %s, password: %s}\n",
		filepath.Join(tmp, "log"), port, z.Addr, k.ListenAddrs()[0], zkPass,
		kc.TLS.CAFile, kc.TLS.CertFile, kc.TLS.KeyFile, kc.SASL.User, kc.SASL.Password)), 0o600)
	cmd, stderr := bintest.Start(t, bintest.Build(t, "."), "-f", f)
	exited := bintest.Exited(t, cmd)
	url := fmt.Sprintf("http://127.0.0.1:%d/delay", port)
	// Its start, then ZooKeeper's and Kafka's answers through digest, TLS
	// and SASL: a loaded machine's time, not kmonitor's.
	bintest.AwaitServing(t, cmd, exited, bintest.StartWithin, stderr, bintest.LogFile(filepath.Join(tmp, "log", "kmonitor.log")), func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := string(b); got != `{"c1":{"m":{"0":4}}}`+"\n" {
			return fmt.Errorf("/delay: %q, want lag 4", got)
		}
		return nil
	})
}

// TestLongIntervalsRefusedAtStart: a value in ms (or minutes) so large
// that it does not fit a time.Duration is refused at start (and by
// -check), naming the file, the key and the value, as kproxy's and
// lib/kafkaconf's are (1..2147483647 ms, Kafka's int32, about 24.8 days).
// Accepted, poll_interval_ms: 10000000000000 became a negative interval
// and the log-end poller's time.NewTicker panicked once ZooKeeper answered.
func TestLongIntervalsRefusedAtStart(t *testing.T) {
	z := zktest.Start(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "kmonitor.yaml")
	os.WriteFile(f, []byte(fmt.Sprintf("base:\n log_dir: %s\n clusters: [c1]\n poll_interval_ms: 10000000000000\n"+
		" history_minutes: 200000000\nhttp_server:\n port: %d\n listen_host: 127.0.0.1\n read_timeout_ms: 10000000000000\n"+
		"c1:\n chroot: /mq/c1\n zk_hosts: [%s]\n zk_session_timeout_ms: 3000000000\n",
		filepath.Join(dir, "log"), bintest.FreePort(t), z.Addr)), 0o644)
	bin := bintest.Build(t, ".")
	for _, args := range [][]string{{"-f", f, "-check"}, {"-f", f}} {
		ctx, cancel := context.WithTimeout(context.Background(), bintest.StartWithin) // the refusal is at start
		cmd := exec.CommandContext(ctx, bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		_ = cmd.Run()
		cancel()
		for _, want := range []string{
			f + ": base.poll_interval_ms: must be 100..2147483647, got 10000000000000",
			f + ": base.history_minutes: must be 1..153722867 (a time.Duration), got 200000000",
			f + ": http_server.read_timeout_ms: must be 1..2147483647, got 10000000000000",
			f + ": c1.zk_session_timeout_ms: must be 1000..2147483647, got 3000000000",
		} {
			if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(stderr.String(), want) {
				t.Errorf("%v: exit %d, stderr:\n%s\nlacks %q", args, cmd.ProcessState.ExitCode(), stderr.String(), want)
			}
		}
	}
}
