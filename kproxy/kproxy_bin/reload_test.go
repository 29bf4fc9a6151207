package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSIGHUPReloadsClients: an operator rotates a client's secret (its
// secret_file rewritten), adds a client and changes a key that needs a
// restart, then sends SIGHUP: the new secret is taken and the old one
// refused 401, the new client writes, the other key is logged as needing a
// restart, and nothing stops. A file that then names a secret_file that
// does not exist is refused whole: the clients in force stay.
func TestSIGHUPReloadsClients(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	dir := t.TempDir()
	port := freePort(t)
	logFile := filepath.Join(dir, "log", "kproxy.log")
	secret := filepath.Join(dir, "shop.secret")
	if err := os.WriteFile(secret, []byte("one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "kproxy.yaml")
	write := func(logLevel int, shopSecretFile, more string) {
		t.Helper()
		cfg := fmt.Sprintf("log_dir: %s\nlog_level: %d\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\n"+
			"broker_hosts: [%s]\nclients:\n - name: shop\n   secret_file: %s\n   topics: [t]\n%s",
			filepath.Join(dir, "log"), logLevel, port, c.ListenAddrs()[0], shopSecretFile, more)
		if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(4, secret, "")
	url := fmt.Sprintf("http://127.0.0.1:%d/commit?topic=t&key=k", port)
	post := func(user, pw string) (int, error) {
		req, err := http.NewRequest("POST", url, bytes.NewReader([]byte{0x01}))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(user, pw)
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	status := func(user, pw string) int {
		t.Helper()
		code, err := post(user, pw)
		if err != nil {
			t.Fatalf("POST as %s: %v", user, err)
		}
		return code
	}
	cmd, stderr := bintest.Start(t, binary(t), "-f", f)
	exited := bintest.Exited(t, cmd)
	bintest.AwaitServing(t, cmd, exited, bintest.StartWithin, stderr, bintest.LogFile(logFile), func() error {
		code, err := post("shop", "one")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
	if code := status("audit", "a"); code != 401 {
		t.Fatalf("a client not configured yet: %d, want 401", code)
	}

	if err := os.WriteFile(secret, []byte("two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write(4, secret, " - name: audit\n   secret: a\n   topics: [t]\nproduce_timeout_ms: 7000\n")
	cmd.Process.Signal(syscall.SIGHUP)
	awaitLog(t, logFile, "configuration reloaded", 1)
	if code := status("shop", "two"); code != 200 {
		t.Errorf("the rotated secret after SIGHUP: %d, want 200", code)
	}
	if code := status("shop", "one"); code != 401 {
		t.Errorf("the old secret after SIGHUP: %d, want 401", code)
	}
	if code := status("audit", "a"); code != 200 {
		t.Errorf("the client added: %d, want 200", code)
	}
	if log := bintest.LogFile(logFile).String(); !strings.Contains(log, "changed key needs a restart; the running value is kept") || !strings.Contains(log, "key=produce_timeout_ms") {
		t.Errorf("log does not say produce_timeout_ms needs a restart:\n%s", log)
	}

	// log_level 2 (errors and warnings): the reload's own line, at info,
	// is the last one logged at info.
	write(2, secret, " - name: audit\n   secret: a\n   topics: [t]\n")
	cmd.Process.Signal(syscall.SIGHUP)
	awaitLog(t, logFile, "configuration reloaded", 2)

	write(2, filepath.Join(dir, "missing.secret"), "")
	cmd.Process.Signal(syscall.SIGHUP)
	awaitLog(t, logFile, "configuration reload refused", 1)
	if log := bintest.LogFile(logFile).String(); !strings.Contains(log, "kproxy.yaml: clients[0].secret_file: cannot read the file it names") {
		t.Errorf("the refusal does not name the file and field:\n%s", log)
	}
	if code := status("shop", "two"); code != 200 {
		t.Errorf("after a refused reload, the secret in force: %d, want 200", code)
	}
	if code := status("audit", "a"); code != 200 {
		t.Errorf("after a refused reload, the client in force: %d, want 200", code)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	if !cmd.ProcessState.Success() {
		t.Fatalf("exit after SIGTERM: %v; stderr: %s; log: %s", cmd.ProcessState, stderr, bintest.LogFile(logFile))
	}
	if log := bintest.LogFile(logFile).String(); strings.Contains(log, "msg=stopped") {
		t.Errorf("the stop's info line was logged after a reload set log_level 2:\n%s", log)
	}
}

// awaitLog waits up to 10 s for the log file to hold want n times.
func awaitLog(t *testing.T, file, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(bintest.LogFile(file).String(), want) < n {
		if time.Now().After(deadline) {
			t.Fatalf("log does not say %q %d times within 10 s:\n%s", want, n, bintest.LogFile(file))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
