package kmonitor_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// http_server.write_timeout_ms bounds the writing of an answer (100 ms by
// default, from the 2015 files). A Prometheus answer is gathered at scrape
// time, six series per partition, and takes longer the more partitions
// there are: at the README's benchmark size (1,600 partitions) a scrape
// takes 50-90 ms on a loaded 2-core machine, and one in five was cut by the
// default 100 ms, Prometheus reading an EOF and every series of kmonitor
// missing from that scrape. Here a write timeout of 5 ms makes the
// gathering of 1,600 partitions outlast it on any machine: every scrape
// must still come whole.
func TestPrometheusAnswerNotCutByWriteTimeout(t *testing.T) {
	const modules, partitions = 50, 32
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: partitions}})
	e := startWith(t, k, func(c *kmonitor.Config) { c.HTTPServer.WriteTimeoutMs = 5 }, io.Discard)
	for m := range modules {
		dir := zklayout.Offsets(chroot, fmt.Sprintf("module_%02d", m), "a")
		if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		var ops []any
		for p := range partitions {
			ops = append(ops, &zk.CreateRequest{Path: dir + "/" + strconv.Itoa(p), Data: []byte("0"), Acl: zk.WorldACL(zk.PermAll)})
		}
		if _, err := e.conn.Multi(ops...); err != nil {
			t.Fatal(err)
		}
	}
	if !waitFor(30*time.Second, func() bool {
		known := 0
		for _, l := range e.mon.Lags() {
			if l.Err == "" {
				known++
			}
		}
		return known == modules*partitions
	}) {
		t.Fatalf("the %d lags not all known after 30 s", modules*partitions)
	}
	for _, path := range []string{"/metrics", "/delay?format=prometheus"} {
		for range 3 {
			req, err := http.NewRequest(http.MethodGet, e.url+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept-Encoding", "gzip") // as Prometheus asks
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v after %v (write_timeout_ms 5); want the whole answer", path, err, time.Since(start))
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET %s: %d, %d bytes, %v after %v (write_timeout_ms 5); want the whole answer", path, resp.StatusCode, len(body), err, time.Since(start))
			}
			if resp.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err == nil {
					body, err = io.ReadAll(zr)
				}
				if err != nil {
					t.Fatalf("GET %s: gzip: %v", path, err)
				}
			}
			if n := strings.Count(string(body), "kmonitor_lag_known{"); n != modules*partitions {
				t.Fatalf("GET %s: %d kmonitor_lag_known series, want %d", path, n, modules*partitions)
			}
		}
	}
}
