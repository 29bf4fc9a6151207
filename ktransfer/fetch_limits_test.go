package ktransfer_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestFetchLimitsAreModuleKeys: fetch_max_bytes and
// fetch_max_partition_bytes set what a module's fetches ask the brokers
// for; a module without them asks for franz-go's defaults (50 MiB per
// fetch, 1 MiB per partition), as before the keys existed. Out-of-range
// values are refused with the key, the value and the rule. Before, the
// limits were fixed: an operator with records or fetches over them could
// not raise them, and the keys were refused as unknown.
func TestFetchLimitsAreModuleKeys(t *testing.T) {
	for _, c := range []struct{ keys, want string }{
		{"fetch_max_bytes: 0\n", "fetch_max_bytes: must be 1024..536870912, got 0"},
		{"fetch_max_bytes: 536870913\n", "fetch_max_bytes: must be 1024..536870912, got 536870913"},
		{"fetch_max_partition_bytes: -1\n", "fetch_max_partition_bytes: must be 1..fetch_max_bytes (52428800), got -1"},
		{"fetch_max_bytes: 1048576\nfetch_max_partition_bytes: 2097152\n", "fetch_max_partition_bytes: must be 1..fetch_max_bytes (1048576), got 2097152"},
	} {
		_, err := loadModuleText(t, "topic: t\nprotocol: {uri: /p}\nbackend_servers: [127.0.0.1:80]\n"+c.keys)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got error %v, want one saying %q", c.keys, err, c.want)
		}
	}

	// fetch_max_bytes alone below the partition limit's default (1 MiB)
	// takes that limit down with it: the file never named it.
	f, err := loadModuleText(t, "topic: t\nprotocol: {uri: /p}\nbackend_servers: [127.0.0.1:80]\nfetch_max_bytes: 65536\n")
	small, _ := ktransfer.LoadModule(f)
	if err != nil {
		t.Errorf("fetch_max_bytes: 65536 alone: %v", err)
	} else if small.FetchMaxPartitionBytes != 65536 {
		t.Errorf("fetch_max_bytes: 65536 alone: fetch_max_partition_bytes %d, want 65536", small.FetchMaxPartitionBytes)
	}

	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	b := newBackend(t, nil)
	dir := t.TempDir()
	load := func(name, keys string) ktransfer.Module {
		t.Helper()
		f := filepath.Join(dir, name+".yaml")
		text := fmt.Sprintf("topic: t\nprotocol: {uri: /p}\nbackend_servers: [%s]\n%s", strings.TrimPrefix(b.URL, "http://"), keys)
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := ktransfer.LoadModule(f)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	set := load("set", "fetch_max_bytes: 2097152\nfetch_max_partition_bytes: 65536\n")
	def := load("def", "")

	type limits struct{ fetch, partition int32 }
	var mu sync.Mutex
	seen := map[limits]bool{}
	e.kafka.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		f := req.(*kmsg.FetchRequest)
		for _, tp := range f.Topics {
			for _, p := range tp.Partitions {
				mu.Lock()
				seen[limits{f.MaxBytes, p.PartitionMaxBytes}] = true
				mu.Unlock()
			}
		}
		return nil, nil, false
	})
	e.start(t, set, def)
	e.produce(t, "t", [][2]string{{"a", "1"}, {"b", "2"}})
	waitFor(t, "both modules pushing the records", 10*time.Second, func() bool { return len(b.got()) >= 4 })
	waitFor(t, "fetches with the configured limits and with the defaults", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[limits{2 << 20, 64 << 10}] && seen[limits{50 << 20, 1 << 20}]
	})
	mu.Lock()
	defer mu.Unlock()
	for l := range seen {
		if l != (limits{2 << 20, 64 << 10}) && l != (limits{50 << 20, 1 << 20}) {
			t.Errorf("a fetch asked for %d bytes, %d per partition: neither module's limits", l.fetch, l.partition)
		}
	}
}
