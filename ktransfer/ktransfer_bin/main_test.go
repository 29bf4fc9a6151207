package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// counter is a backend counting the pushes of each record.
type counter struct {
	mu    sync.Mutex
	times map[string]int // "partition/offset" → pushes
	total int
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	time.Sleep(time.Millisecond) // keep a window's worth in flight
	id := r.Header.Get("X-Kafka-Partition") + "/" + r.Header.Get("X-Kafka-Offset")
	c.mu.Lock()
	c.times[id]++
	c.total++
	c.mu.Unlock()
}

func (c *counter) snapshot() (distinct, total int, repeated int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.times {
		repeated += n - 1
	}
	return len(c.times), c.total, repeated
}

type setup struct {
	dir, conf, zkAddr string
	backend           *counter
}

const windowSize = 50

func newSetup(t *testing.T, records int) *setup {
	t.Helper()
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 4}})
	return newSetupOn(t, k, kafkaconf.Default(), "", records)
}

// newSetupOn writes records to k (reached with kc) and a configuration
// whose last lines are extra.
func newSetupOn(t *testing.T, k *kfake.Cluster, kc kafkaconf.Config, extra string, records int) *setup {
	t.Helper()
	z := zktest.Start(t)
	var recs []*kgo.Record
	for i := range records {
		recs = append(recs, &kgo.Record{Topic: "t", Key: []byte("k" + strconv.Itoa(i%300)), Value: []byte("v")})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkatest.Client(t, k, kc).ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records: %v", records, err)
	}
	c := &counter{times: map[string]int{}}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "modules"), 0o755)
	os.WriteFile(filepath.Join(dir, "modules", "m.yaml"), []byte(fmt.Sprintf("topic: t\nprotocol:\n name: http\n uri: /p?key={#KEY}\n"+
		" write_timeout_ms: 2000\n conn_timeout_ms: 2000\nworker_num: 10\nwindow_size: %d\nbackend_servers: [%s]\n",
		windowSize, strings.TrimPrefix(srv.URL, "http://"))), 0o644)
	conf := filepath.Join(dir, "ktransfer.yaml")
	os.WriteFile(conf, []byte(fmt.Sprintf("log_dir: %s\nzk_chroot: /mq/c\nzk_hosts: [%s]\nbroker_hosts: [%s]\n"+
		"module_conf_dir: %s\nmodule_enabled: [m]\nadmin_addr: \"\"\n%s", filepath.Join(dir, "log"), z.Addr, k.ListenAddrs()[0],
		filepath.Join(dir, "modules"), extra)), 0o644)
	return &setup{dir: dir, conf: conf, zkAddr: z.Addr, backend: c}
}

func (s *setup) start(t *testing.T) watched {
	t.Helper()
	return s.startConf(t, s.conf)
}

// startConf starts the process with the configuration file conf, whose
// log_dir is the setup's.
func (s *setup) startConf(t *testing.T, conf string) watched {
	t.Helper()
	p := startWatched(t, conf)
	p.log = bintest.LogFile(filepath.Join(s.dir, "log", "ktransfer.log"))
	return p
}

// waitFor polls cond until it holds, at most 60 s: what it waits for
// includes the processes' start, which a loaded machine (the race
// detector, other packages' tests) can make take tens of seconds. It fails
// at once, with the exit status, standard error and log, when one of
// running ended first.
func waitFor(t *testing.T, what string, cond func() bool, running ...watched) {
	t.Helper()
	deadline := time.Now().Add(bintest.StartWithin)
	for !cond() {
		for _, p := range running {
			select {
			case <-p.exited:
				t.Fatalf("waiting for %s: ktransfer_bin %d ended: %v; stderr: %s; log:\n%s", what, p.cmd.Process.Pid, p.cmd.ProcessState, p.stderr, p.log)
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%v)", what, bintest.StartWithin)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestKill9RepushesAtMostWindow kills the process in the middle of the
// stream: after a restart every record is delivered, and the records
// pushed twice are at most window_size.
func TestKill9RepushesAtMostWindow(t *testing.T) {
	const records = 3000
	s := newSetup(t, records)
	first := s.start(t)
	waitFor(t, "1000 pushes", func() bool { _, total, _ := s.backend.snapshot(); return total >= 1000 }, first)
	first.cmd.Process.Signal(syscall.SIGKILL)
	<-first.exited
	_, atKill, _ := s.backend.snapshot()
	second := s.start(t)
	waitFor(t, "every record", func() bool { d, _, _ := s.backend.snapshot(); return d == records }, second)
	time.Sleep(300 * time.Millisecond)
	distinct, total, repeated := s.backend.snapshot()
	t.Logf("killed after %d pushes; %d records, %d pushes, %d repeated (window_size %d)", atKill, distinct, total, repeated, windowSize)
	if repeated > windowSize {
		t.Errorf("%d records pushed again after kill -9; window_size is %d", repeated, windowSize)
	}
}

func TestSIGTERMCommitsAndExitsZero(t *testing.T) {
	s := newSetup(t, 500)
	p := s.start(t)
	waitFor(t, "every record", func() bool { d, _, _ := s.backend.snapshot(); return d == 500 }, p)
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	if !p.cmd.ProcessState.Success() {
		t.Fatalf("exit after SIGTERM: %v; stderr: %s", p.cmd.ProcessState, p.stderr)
	}
	// A clean stop committed everything: a new process pushes nothing again
	// once it owns the partitions (from then on it would push what it found
	// uncommitted; the second after leaves it the time to).
	again := s.start(t)
	conn := zktest.Connect(t, s.zkAddr)
	waitFor(t, "the new process to own every partition", func() bool {
		o := owners(t, conn)
		for _, id := range o {
			if !strings.Contains(id, "-"+strconv.Itoa(again.cmd.Process.Pid)+"-") {
				return false
			}
		}
		return len(o) == 4
	}, again)
	time.Sleep(time.Second)
	if _, total, repeated := s.backend.snapshot(); repeated != 0 || total != 500 {
		t.Errorf("after a clean restart: %d pushes, %d repeated", total, repeated)
	}
	logText, _ := os.ReadFile(filepath.Join(s.dir, "log", "ktransfer.log"))
	if !strings.Contains(string(logText), "msg=stopped") {
		t.Errorf("log lacks the stop: %s", logText)
	}
	// Both processes wrote the one log file: every line says which (the
	// start's and the stop's lines too).
	pids := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(logText)), "\n") {
		m := regexp.MustCompile(` pid=(\d+)( |$)`).FindStringSubmatch(line)
		if m == nil {
			t.Errorf("a line without pid=: %s", line)
			continue
		}
		pids[m[1]]++
	}
	for _, pid := range []int{p.cmd.Process.Pid, again.cmd.Process.Pid} {
		if pids[strconv.Itoa(pid)] == 0 {
			t.Errorf("no line of process %d in the log; lines by pid: %v", pid, pids)
		}
	}
}

func TestBadModuleExitsWithReason(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ktransfer.yaml")
	os.WriteFile(conf, []byte("zk_chroot: /mq/c\nzk_hosts: [h:1]\nmodule_conf_dir: "+dir+"\nmodule_enabled: [nope]\n"), 0o644)
	cmd := exec.Command(bintest.Build(t, "."), "-f", conf)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run()
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(stderr.String(), "module nope:") {
		t.Errorf("exit %d, stderr %q", cmd.ProcessState.ExitCode(), stderr.String())
	}
}

// owners reads partition → instance from the owners/ nodes.
func owners(t *testing.T, conn *zk.Conn) map[string]string {
	t.Helper()
	dir := "/mq/c/consumers/m/owners/t"
	names, _, err := conn.Children(dir)
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, n := range names {
		if data, _, err := conn.Get(dir + "/" + n); err == nil {
			out[n] = string(data)
		}
	}
	return out
}

// TestFleetFailoverAfterKill9: two processes share a 4-partition topic;
// one is killed with SIGKILL. Its partitions move to the other once its
// ZooKeeper session expires, every record is delivered, and the records
// pushed twice are at most window_size per moved partition.
func TestFleetFailoverAfterKill9(t *testing.T) {
	const records = 4000
	s := newSetup(t, records)
	// Only the process killed, a, has the short session: its expiry is the
	// takeover measured. A process gives its session up after 2/3 of its
	// timeout without an answer, and drops its partitions; with 2 s the
	// survivor did so whenever a loaded host's ZooKeeper took 1.33 s to
	// answer, delaying the takeover. Its 10 s session leaves it 6.7 s.
	conf, _ := os.ReadFile(s.conf)
	confA, confB := s.conf+".a", s.conf+".b"
	os.WriteFile(confA, append(conf, []byte("zk_timeout_ms: 2000\n")...), 0o644)
	os.WriteFile(confB, append(conf, []byte("zk_timeout_ms: 10000\n")...), 0o644)
	conn := zktest.Connect(t, s.zkAddr)
	a := s.startConf(t, confA)
	waitFor(t, "the first process to own every partition", func() bool { return len(owners(t, conn)) == 4 }, a)
	b := s.startConf(t, confB) // the survivor
	waitFor(t, "two owners", func() bool {
		c := map[string]bool{}
		for _, id := range owners(t, conn) {
			c[id] = true
		}
		return len(c) == 2 && len(owners(t, conn)) == 4
	}, a, b)
	waitFor(t, "1500 pushes", func() bool { _, total, _ := s.backend.snapshot(); return total >= 1500 }, a, b)
	// Kill a, which owns some of the partitions (two owners above).
	victim := a
	o := owners(t, conn)
	moved := 0
	for _, id := range o {
		if strings.Contains(id, "-"+strconv.Itoa(victim.cmd.Process.Pid)+"-") {
			moved++
		}
	}
	killed := time.Now()
	victim.cmd.Process.Signal(syscall.SIGKILL)
	<-victim.exited
	waitFor(t, "the survivor to own every partition", func() bool {
		o := owners(t, conn)
		if len(o) != 4 {
			return false
		}
		for _, id := range o {
			if strings.Contains(id, "-"+strconv.Itoa(victim.cmd.Process.Pid)+"-") {
				return false
			}
		}
		return true
	}, b)
	takeover := time.Since(killed)
	waitFor(t, "every record", func() bool { d, _, _ := s.backend.snapshot(); return d == records }, b)
	time.Sleep(300 * time.Millisecond)
	_, total, repeated := s.backend.snapshot()
	t.Logf("kill -9 of the owner of %d partitions: taken over after %v (session timeout 2s); %d pushes, %d repeated (bound %d)",
		moved, takeover.Round(time.Millisecond), total, repeated, moved*windowSize)
	// The session expires on ZooKeeper's 500 ms tick, then the survivor
	// claims with a few ZooKeeper round trips per partition: 2 s beyond
	// the session timeout, 3 s more for a loaded host (the figure is
	// logged above).
	if takeover > 7*time.Second {
		t.Errorf("takeover after %v; want within session timeout + 5 s", takeover)
	}
	if repeated > moved*windowSize {
		t.Errorf("%d records pushed twice; bound is window_size per moved partition (%d)", repeated, moved*windowSize)
	}
}

// TestSecureFromConfig: brokers that need TLS with a client certificate and
// SASL SCRAM, and ZooKeeper digest auth, all from ktransfer.yaml with the
// passwords in files only their owner may read.
func TestSecureFromConfig(t *testing.T) {
	k, kc := kafkatest.StartSecure(t, []kafkatest.Topic{{Name: "t", Partitions: 4}}, "SCRAM-SHA-512")
	secrets := t.TempDir()
	kafkaPass, zkPass := filepath.Join(secrets, "kafka.secret"), filepath.Join(secrets, "zk.secret")
	os.WriteFile(kafkaPass, []byte(kc.SASL.Password+"\n"), 0o600)
	os.WriteFile(zkPass, []byte("zk-pass\n"), 0o600)
	extra := fmt.Sprintf("kafka:\n tls:\n  enable: true\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\n"+
		" sasl:\n  mechanism: SCRAM-SHA-512\n  user: %s\n  password_file: %s\n"+
		"zk_auth:\n user: ktransfer\n password_file: %s\nlog_level: 16\n",
		kc.TLS.CAFile, kc.TLS.CertFile, kc.TLS.KeyFile, kc.SASL.User, kafkaPass, zkPass)
	s := newSetupOn(t, k, kc, extra, 400)
	p := s.start(t)
	waitFor(t, "every record", func() bool { d, _, _ := s.backend.snapshot(); return d == 400 }, p)

	conn := zktest.Connect(t, s.zkAddr)
	if err := (zklayout.Auth{User: "ktransfer", Password: "zk-pass"}).Authenticate(conn, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	acl, _, err := conn.GetACL("/mq/c/consumers/m/offsets/t/0")
	if err != nil {
		t.Fatal(err)
	}
	want := append(zk.DigestACL(zk.PermAll, "ktransfer", "zk-pass"), zk.WorldACL(zk.PermRead)...)
	if fmt.Sprint(acl) != fmt.Sprint(want) {
		t.Errorf("offset node ACL %v, want %v", acl, want)
	}
	// Not even the most verbose log level shows a secret.
	logText, err := os.ReadFile(filepath.Join(s.dir, "log", "ktransfer.log"))
	if err != nil || len(logText) == 0 {
		t.Fatalf("log file: %v", err)
	}
	for _, secret := range []string{"zk-pass", kc.SASL.Password} {
		if strings.Contains(string(logText), secret) {
			t.Errorf("the log shows the secret %q", secret)
		}
	}
}
