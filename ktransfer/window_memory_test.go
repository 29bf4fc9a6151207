package ktransfer_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestWindowHoldsItsRecordsNotTheirFetches: a module's memory is what
// README says: its window's records, plus what the Kafka client fetched
// for each broker (1 MiB per partition read there). Partition 0's key is
// stuck (its backend never answers its first push), so its next records
// wait in the window, each read in the same fetch as 900 KB of partition
// 1's records (uncompressed, as kproxy writes them by default), which are
// pushed at once. A record waiting in the window
// held the whole fetch it came in (the client's records point into the
// fetch's buffer): 16 small records held about 15 MB.
func TestWindowHoldsItsRecordsNotTheirFetches(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2}, kafkatest.Topic{Name: "u", Partitions: 1})
	var mu sync.Mutex
	fast, slow := 0, 0
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		if r.Header.Get("X-Kafka-Partition") == "1" {
			fast++
			mu.Unlock()
			return
		}
		slow++
		mu.Unlock()
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hang) })
	count := func() (int, int) { mu.Lock(); defer mu.Unlock(); return fast, slow }

	const window, rounds, bigPerRound, bigSize = 20, 16, 9, 100_000
	c := e.reloadConf(t, "m", "n")
	c.shutdownMs = 300
	c.enable(t, "", "m", "n")
	write := func(name, topic string) {
		t.Helper()
		data := fmt.Sprintf("topic: %s\nprotocol:\n name: http\n uri: /p\n write_timeout_ms: 2000\n conn_timeout_ms: 2000\n"+
			"worker_num: 2\nwindow_size: %d\nbackend_servers: [%s]\n", topic, window, strings.TrimPrefix(srv.URL, "http://"))
		if err := os.WriteFile(filepath.Join(c.dir, "modules", name+".yaml"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("m", "t")
	write("n", "u")
	r := startConf(t, c, nil)
	prod := kafkatest.Client(t, e.kafka, e.kc, kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression())) // as kproxy writes by default
	big := strings.Repeat("x", bigSize)
	for i := range rounds {
		rs := []*kgo.Record{{Topic: "t", Partition: 0, Key: []byte("stuck"), Value: []byte("s" + strconv.Itoa(i))}}
		for range bigPerRound {
			rs = append(rs, &kgo.Record{Topic: "t", Partition: 1, Value: []byte(big)})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := prod.ProduceSync(ctx, rs...).FirstErr()
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "round "+strconv.Itoa(i)+" pushed", 10*time.Second, func() bool { f, _ := count(); return f == bigPerRound*(i+1) })
	}
	waitFor(t, "the stuck key's first push", 10*time.Second, func() bool { _, s := count(); return s == 1 })
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	running := heap()
	// Module m removed: what it held is freed.
	c.enable(t, "", "n")
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	held := int64(running) - int64(heap())
	// README: window_size × (the largest record + 1 KiB), plus 1 MiB per
	// partition read for each broker; 2 MiB for the module's own
	// structures and the measure's noise.
	bound := int64(window*(bigSize+1024) + 2*(1<<20) + 2*(1<<20))
	t.Logf("module m held %.1f MiB (bound %.1f MiB)", float64(held)/(1<<20), float64(bound)/(1<<20))
	if held > bound {
		t.Errorf("module m held %d bytes with %d records in its window; README's bound is %d", held, rounds, bound)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}
