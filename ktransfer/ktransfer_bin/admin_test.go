package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// withoutAdminAddr removes admin_addr from s's ktransfer.yaml: the default
// (127.0.0.1:5050) applies.
func withoutAdminAddr(t *testing.T, s *setup) {
	t.Helper()
	conf, err := os.ReadFile(s.conf)
	if err != nil {
		t.Fatal(err)
	}
	without := strings.Replace(string(conf), "admin_addr: \"\"\n", "", 1)
	if without == string(conf) {
		t.Fatalf("no admin_addr line in %s", conf)
	}
	if err := os.WriteFile(s.conf, []byte(without), 0o644); err != nil {
		t.Fatal(err)
	}
}

// watched is a ktransfer_bin process whose exit the test watches.
type watched struct {
	cmd    *exec.Cmd
	stderr *bintest.Output
	exited <-chan struct{} // closed once the process is reaped
	log    fmt.Stringer    // its log when not stderr (startConf), else empty
}

// startWatched starts ktransfer_bin -f conf; exited tells when it ends.
func startWatched(t *testing.T, conf string) watched {
	t.Helper()
	cmd, stderr := bintest.Start(t, bintest.Build(t, "."), "-f", conf)
	return watched{cmd: cmd, stderr: stderr, exited: bintest.Exited(t, cmd), log: bintest.LogFile("")}
}

// registration is an ids/ node's JSON.
type registration struct {
	Pid   int    `json:"pid"`
	Admin string `json:"admin"`
}

// TestDefaultAdminPortTakenFallsBack: three processes run on one host with
// the same files, which leave admin_addr to its default. All three run;
// the ones that find the default port taken listen on a free port, say so
// in the log, and every process publishes its own admin address in its
// ids/ registration, where /health answers.
func TestDefaultAdminPortTakenFallsBack(t *testing.T) {
	s := newSetup(t, 100)
	withoutAdminAddr(t, s)
	conn := zktest.Connect(t, s.zkAddr)
	var procs []watched
	for range 3 {
		procs = append(procs, s.start(t))
	}
	admin := map[int]string{} // pid → published admin address
	deadline := time.Now().Add(bintest.StartWithin)
	for len(admin) < 3 {
		for _, p := range procs {
			select {
			case <-p.exited:
				t.Fatalf("process %d exited: %v; stderr: %s; log:\n%s", p.cmd.Process.Pid, p.cmd.ProcessState, p.stderr, p.log)
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, admin addresses published: %v; log:\n%s", bintest.StartWithin, admin, procs[0].log)
		}
		time.Sleep(20 * time.Millisecond)
		dir := "/mq/c/consumers/m/ids"
		ids, _, err := conn.Children(dir)
		if err != nil {
			continue
		}
		for _, id := range ids {
			data, _, err := conn.Get(dir + "/" + id)
			if err != nil {
				continue
			}
			var r registration
			if err := json.Unmarshal(data, &r); err != nil {
				t.Fatalf("ids/%s: %q: %v", id, data, err)
			}
			if r.Admin != "" {
				admin[r.Pid] = r.Admin
			}
		}
	}
	seen := map[string]bool{}
	for _, p := range procs {
		addr, ok := admin[p.cmd.Process.Pid]
		if !ok {
			t.Fatalf("process %d published no admin address; published: %v", p.cmd.Process.Pid, admin)
		}
		if seen[addr] {
			t.Fatalf("admin address %s published twice: %v", addr, admin)
		}
		seen[addr] = true
		if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
			t.Errorf("admin address %q: want the default's host 127.0.0.1", addr)
		}
		resp, err := http.Get("http://" + addr + "/health")
		if err != nil {
			t.Fatalf("GET /health at %s: %v", addr, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
			t.Errorf("GET /health at %s: %d %q", addr, resp.StatusCode, body)
		}
	}
	// At most one of them had the default port; the others said what
	// they took instead.
	logText, _ := os.ReadFile(filepath.Join(s.dir, "log", "ktransfer.log"))
	if n := strings.Count(string(logText), "admin port taken"); n < 2 {
		t.Errorf("%d warnings that the admin port was taken, want at least 2; log:\n%s", n, logText)
	}
	for _, p := range procs {
		select {
		case <-p.exited:
			t.Errorf("process %d exited", p.cmd.Process.Pid)
		default:
		}
	}
}

// TestExplicitAdminAddrTakenStopsStart: an admin_addr set in the file
// whose port is taken is not replaced: the start fails and says which
// address and key.
func TestExplicitAdminAddrTakenStopsStart(t *testing.T) {
	s := newSetup(t, 0)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	withoutAdminAddr(t, s)
	conf, _ := os.ReadFile(s.conf)
	os.WriteFile(s.conf, append(conf, fmt.Sprintf("admin_addr: %s\n", addr)...), 0o644)
	p := startWatched(t, s.conf)
	select {
	case <-p.exited:
	case <-time.After(bintest.StartWithin):
		t.Fatalf("still running %v after start with admin_addr %s taken", bintest.StartWithin, addr)
	}
	want := "listen on " + addr + " (admin_addr"
	if code := p.cmd.ProcessState.ExitCode(); code == 0 || !strings.Contains(p.stderr.String(), want) ||
		!strings.Contains(p.stderr.String(), s.conf) {
		t.Errorf("exit %d, stderr %q; want a failure naming %q and the file %s", code, p.stderr.String(), want, s.conf)
	}
}
