package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// configStatus is the part of /status's configuration the test reads.
type configStatus struct {
	Hash       string `json:"hash"`
	LastReload *struct {
		Result string `json:"result"`
		Error  string `json:"error"`
	} `json:"last_reload"`
}

func getStatus(t *testing.T, admin string) configStatus {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/status")
	if err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	defer resp.Body.Close()
	var s struct {
		Config configStatus `json:"config"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("/status: %v", err)
	}
	return s.Config
}

func metricsText(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestSIGHUPReloads runs ktransfer_bin while records arrive, points its
// module at another backend and sends SIGHUP: /status's hash changes, the
// module pushes to the new backend (the time from the signal is printed),
// the reload is counted. A broken module file and SIGHUP again: refused,
// the hash kept, the process goes on, and SIGTERM stops it cleanly.
func TestSIGHUPReloads(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 4}})
	s := newSetupOn(t, k, kafkaconf.Default(), "", 100)
	withoutAdminAddr(t, s)
	p := s.start(t)
	conn := zktest.Connect(t, s.zkAddr)
	var admin string
	waitFor(t, "the admin address in ids/", func() bool {
		dir := "/mq/c/consumers/m/ids"
		ids, _, err := conn.Children(dir)
		if err != nil || len(ids) != 1 {
			return false
		}
		data, _, err := conn.Get(dir + "/" + ids[0])
		var r registration
		if err != nil || json.Unmarshal(data, &r) != nil {
			return false
		}
		admin = r.Admin
		return admin != ""
	}, p)
	waitFor(t, "100 records", func() bool { d, _, _ := s.backend.snapshot(); return d == 100 }, p)
	before := getStatus(t, admin)

	// Records keep arriving.
	cl := kafkatest.Client(t, k, kafkaconf.Default())
	ctx, stopProducing := context.WithCancel(context.Background())
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; ctx.Err() == nil; i++ {
			_ = cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Key: []byte(fmt.Sprint("k", i%50)), Value: []byte("v")}).FirstErr()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	defer func() { stopProducing(); <-produced }()

	var firstPush, pushes atomic.Int64
	moved := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		firstPush.CompareAndSwap(0, time.Now().UnixNano())
		pushes.Add(1)
	}))
	t.Cleanup(moved.Close)
	module := filepath.Join(s.dir, "modules", "m.yaml")
	text, err := os.ReadFile(module)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(text), "backend_servers: [", "backend_servers: ["+strings.TrimPrefix(moved.URL, "http://")+"]\n#", 1)
	if err := os.WriteFile(module, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	hup := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pushes to the module's new backend", func() bool { return firstPush.Load() != 0 }, p)
	took := time.Duration(firstPush.Load() - hup.UnixNano())
	var after configStatus
	waitFor(t, "a new hash in /status", func() bool { after = getStatus(t, admin); return after.Hash != before.Hash }, p)
	t.Logf("SIGHUP to the changed module's first push: %v; hash %s → %s", took.Round(time.Millisecond), before.Hash, after.Hash)
	if after.LastReload == nil || after.LastReload.Result != "ok" {
		t.Errorf("last reload: %+v", after.LastReload)
	}
	if m := metricsText(t, admin); !strings.Contains(m, `ktransfer_config_reloads_total{result="ok"} 1`) {
		t.Errorf("/metrics lacks one ok reload:\n%s", m)
	}

	// A broken file: refused, the running configuration kept.
	if err := os.WriteFile(module, []byte(changed+"max_retry_times: -5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var refused configStatus
	waitFor(t, "the refused reload in /status", func() bool {
		refused = getStatus(t, admin)
		return refused.LastReload != nil && refused.LastReload.Result == "refused"
	}, p)
	if refused.Hash != after.Hash || !strings.Contains(refused.LastReload.Error, module+": max_retry_times: must be -1 (retry until success) or >= 0, got -5") {
		t.Errorf("after a refused reload: hash %s (want %s), error %q", refused.Hash, after.Hash, refused.LastReload.Error)
	}
	m := metricsText(t, admin)
	for _, want := range []string{`ktransfer_config_reloads_total{result="refused"} 1`, "ktransfer_config_last_reload_ok 0"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	n := pushes.Load()
	waitFor(t, "the running configuration pushing on", func() bool { return pushes.Load() > n+50 }, p)
	bintest.StopWithin(t, p.cmd, p.exited, 30*time.Second, "after the refused reload", p.stderr)
}
