package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

func binary(t *testing.T) string { return bintest.Build(t, ".") }

func freePort(t *testing.T) int { return bintest.FreePort(t) }

func TestBadConfigExitsWithReason(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kproxy.yaml")
	os.WriteFile(f, []byte("port: 5030\nreq_pool_size: 0\nbroker_host: [a:1]\n"), 0o644)
	cmd := exec.Command(binary(t), "-f", f)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Fatalf("exit %d (%v), want 2", code, err)
	}
	for _, want := range []string{f + ":3: broker_host: unknown key"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q lacks %q", stderr.String(), want)
		}
	}
	os.WriteFile(f, []byte("port: 5030\nreq_pool_size: 0\nbroker_hosts: [a:1]\n"), 0o644)
	out, _ := exec.Command(binary(t), "-f", f, "-check").CombinedOutput()
	if !strings.Contains(string(out), f+": req_pool_size: must be >= 1, got 0") {
		t.Errorf("-check output %q", out)
	}
}

// TestSIGTERMDrainsAndExitsZero runs the binary, keeps requests flowing,
// sends SIGTERM, and checks: exit 0, every 200 is in Kafka, the log file
// is in log_dir.
func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 2}})
	dir := t.TempDir()
	port := freePort(t)
	cfg := fmt.Sprintf("log_dir: %s\nlog_level: 4\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\n"+
		"read_timeout_ms: 2000\nwrite_timeout_ms: 2000\nbroker_hosts: [%s]\n", filepath.Join(dir, "log"), port, c.ListenAddrs()[0])
	f := filepath.Join(dir, "kproxy.yaml")
	os.WriteFile(f, []byte(cfg), 0o644)
	cmd, stderr := bintest.Start(t, binary(t), "-f", f)
	exited := bintest.Exited(t, cmd)
	url := fmt.Sprintf("http://127.0.0.1:%d/commit?topic=t&key=k", port)
	bintest.AwaitServing(t, cmd, exited, bintest.StartWithin, stderr, bintest.LogFile(filepath.Join(dir, "log", "kproxy.log")), func() error {
		return bintest.Answers200(http.Post(url, "", bytes.NewReader([]byte{0x01})))
	})
	ok := 1
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Post(url, "", bytes.NewReader([]byte{0x02}))
				if err != nil {
					return // listener closed: the request was not taken
				}
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	close(stop)
	wg.Wait()
	if !cmd.ProcessState.Success() {
		t.Fatalf("exit after SIGTERM: %v; stderr: %s", cmd.ProcessState, stderr.String())
	}
	if written := kafkatest.Records(t, c, kafkaconf.Default(), "t"); written != int64(ok) {
		t.Errorf("%d records in Kafka, %d requests answered 200", written, ok)
	}
	logText, err := os.ReadFile(filepath.Join(dir, "log", "kproxy.log"))
	if err != nil || !strings.Contains(string(logText), "kproxy started") || !strings.Contains(string(logText), "msg=stopped") {
		t.Errorf("log file: %v\n%s", err, logText)
	}
}

// TestSecureFromConfig: HTTPS on the port, a client with a secret file and
// a rate limit, and brokers that need TLS with a client certificate and
// SASL PLAIN, all from kproxy.yaml.
func TestSecureFromConfig(t *testing.T) {
	c, kc := kafkatest.StartSecure(t, []kafkatest.Topic{{Name: "orders", Partitions: 2}}, "PLAIN")
	certs := testcert.New(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "shop.secret")
	os.WriteFile(secret, []byte("shop-pass\n"), 0o600)
	port := freePort(t)
	cfg := fmt.Sprintf("log_dir: %s\nlog_level: 16\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\nbroker_hosts: [%s]\n"+
		"read_timeout_ms: 2000\nwrite_timeout_ms: 2000\n"+
		"tls_cert_file: %s\ntls_key_file: %s\n"+
		"clients:\n - name: shop\n   secret_file: %s\n   topics: [orders]\n   rate_limit: 1\n   burst: 5\n"+
		"kafka:\n tls:\n  enable: true\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\n"+
		" sasl:\n  mechanism: PLAIN\n  user: %s\n  password: %s\n",
		filepath.Join(dir, "log"), port, c.ListenAddrs()[0], certs.ServerCert, certs.ServerKey, secret,
		kc.TLS.CAFile, kc.TLS.CertFile, kc.TLS.KeyFile, kc.SASL.User, kc.SASL.Password)
	f := filepath.Join(dir, "kproxy.yaml")
	os.WriteFile(f, []byte(cfg), 0o600)
	cmd, stderr := bintest.Start(t, binary(t), "-f", f)
	exited := bintest.Exited(t, cmd)

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.CA}}}
	post := func(user, pass string) (int, error) {
		req, _ := http.NewRequest("POST", fmt.Sprintf("https://127.0.0.1:%d/commit?topic=orders&key=k", port), bytes.NewReader([]byte{0x01}))
		req.SetBasicAuth(user, pass)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	bintest.AwaitServing(t, cmd, exited, bintest.StartWithin, stderr, bintest.LogFile(filepath.Join(dir, "log", "kproxy.log")), func() error {
		if code, err := post("shop", "shop-pass"); code != 200 {
			return fmt.Errorf("answered %d (%v)", code, err)
		}
		return nil
	})
	if code, _ := post("shop", "wrong"); code != 401 {
		t.Errorf("wrong secret: %d", code)
	}
	codes := map[int]int{}
	for range 10 {
		code, _ := post("shop", "shop-pass")
		codes[code]++
	}
	if codes[429] == 0 || codes[200]+codes[429] != 10 {
		t.Errorf("10 requests over a burst of 5 at 1/s: %v", codes)
	}
	n := kafkatest.Records(t, c, kc, "orders")
	if want := int64(1 + codes[200]); n != want {
		t.Errorf("%d records in Kafka, %d answered 200", n, want)
	}
	// Not even the most verbose log level shows a secret.
	logText, err := os.ReadFile(filepath.Join(dir, "log", "kproxy.log"))
	if err != nil || len(logText) == 0 {
		t.Fatalf("log file: %v", err)
	}
	for _, secret := range []string{"shop-pass", kc.SASL.Password} {
		if bytes.Contains(logText, []byte(secret)) {
			t.Errorf("the log shows the secret %q", secret)
		}
	}
}
