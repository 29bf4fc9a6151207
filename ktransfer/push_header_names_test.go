package ktransfer_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestConfiguredHeaderDoesNotShadowAPushHeader attacks DESIGN's "every
// push carries X-Ktransfer-Epoch … so a backend can refuse a push older
// than one it has seen" and the signing promise. A protocol.headers entry
// named, in any case, like a header ktransfer sets on each push was sent
// beside it (header names are sent as written): two X-Ktransfer-Epoch
// values, two webhook-ids, and a backend reading the first read the
// file's, not the record's — a forged epoch defeats the fencing, a fixed
// webhook-id fails every verification, a configured X-Ktransfer-Replay
// marks every push a replay. Each push must carry the record's value
// alone, and the entry is warned of as having no effect.
func TestConfiguredHeaderDoesNotShadowAPushHeader(t *testing.T) {
	var logs runtest.Log
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	bk := newBackend(t, nil)
	c := e.reloadConf(t, "m")
	file := filepath.Join(c.dir, "modules", "m.yaml")
	yaml := "topic: t\nprotocol:\n name: http\n uri: /p\n write_timeout_ms: 2000\n conn_timeout_ms: 2000\n" +
		" signing_secrets: [" + vectorSecret + "]\n" +
		" headers:\n  - x-ktransfer-epoch: \"999999999999\"\n  - webhook-id: forged\n  - X-KAFKA-OFFSET: \"7\"\n" +
		"  - x-ktransfer-replay: \"1\"\n  - X-Tenant: a\n" +
		"worker_num: 2\nwindow_size: 10\nbackend_servers: [" + strings.TrimPrefix(bk.URL, "http://") + "]\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	startConf(t, c, slog.New(slog.NewTextHandler(&logs, nil)))
	e.produce(t, "t", [][2]string{{"k", "v0"}, {"k", "v1"}})
	waitFor(t, "two pushes", 10*time.Second, func() bool { return len(bk.got()) >= 2 })
	for _, p := range bk.got() {
		for _, name := range []string{"X-Ktransfer-Epoch", "Webhook-Id", "X-Kafka-Offset", "X-Ktransfer-Replay"} {
			if vs := p.header.Values(name); len(vs) > 1 {
				t.Errorf("push of offset %s: %s sent %d times: %q; want the record's alone", p.offset, name, len(vs), vs)
			}
		}
		if got := p.header.Get("X-Kafka-Offset"); got != p.offset || got == "7" {
			t.Errorf("push: X-Kafka-Offset %q (all: %q)", got, p.header.Values("X-Kafka-Offset"))
		}
		if got := p.header.Get("X-Ktransfer-Epoch"); got == "999999999999" {
			t.Errorf("push of offset %s: X-Ktransfer-Epoch is the file's %q", p.offset, got)
		}
		if p.header.Get("X-Ktransfer-Replay") != "" {
			t.Errorf("push of offset %s: marked a replay (X-Ktransfer-Replay %q)", p.offset, p.header.Values("X-Ktransfer-Replay"))
		}
		if err := verifyWebhook(vectorSecret, p.header, []byte(p.body), time.Now(), time.Minute); err != nil {
			t.Errorf("push of offset %s: the signature does not verify: %v (webhook-id %q)", p.offset, err, p.header.Values("Webhook-Id"))
		}
		if p.header.Get("X-Tenant") != "a" {
			t.Errorf("push of offset %s: X-Tenant %q; want a", p.offset, p.header.Get("X-Tenant"))
		}
	}
	for _, name := range []string{"x-ktransfer-epoch", "webhook-id", "X-KAFKA-OFFSET", "x-ktransfer-replay"} {
		found := false
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, "no effect") && strings.Contains(line, file) && strings.Contains(line, name) {
				found = true
			}
		}
		if !found {
			t.Errorf("no warning naming %s, %s and having no effect; log:\n%s", file, name, logs.String())
		}
	}
}
