package ktransfer_test

import (
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

var partitionSeries = regexp.MustCompile(`(?m)^(ktransfer_committed_offset|ktransfer_high_water_offset|ktransfer_lag)\{module="m",partition="(\d+)"\}`)

// seriesPartitions returns, per per-partition metric, the partitions
// admin's /metrics has a series for.
func seriesPartitions(t *testing.T, admin string) map[string][]string {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string][]string{}
	for _, m := range partitionSeries.FindAllStringSubmatch(string(body), -1) {
		out[m[1]] = append(out[m[1]], m[2])
	}
	for _, ps := range out {
		sort.Strings(ps)
	}
	return out
}

// TestMetricsForgetMovedPartitions: a process's per-partition series are
// removed when a partition moves to another process; only the partitions
// it holds are left in its /metrics.
func TestMetricsForgetMovedPartitions(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 4})
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	produceN(t, e, 0, 200)
	first, admin := e.startAdmin(t, 0, m)
	all := []string{"0", "1", "2", "3"}
	waitFor(t, "series for the 4 partitions", 20*time.Second, func() bool {
		s := seriesPartitions(t, admin)
		return len(b.got()) >= 200 && slices.Equal(s["ktransfer_committed_offset"], all) && slices.Equal(s["ktransfer_high_water_offset"], all)
	})
	e.start(t, m)
	waitFor(t, "2 + 2", 10*time.Second, func() bool {
		return halves(e.owners(t, "m", "t"), 4) &&
			len(first.tr.Status()[0].Partitions) == 2
	})
	var held []string
	for id, owner := range e.owners(t, "m", "t") {
		if owner == first.tr.ID() {
			held = append(held, id)
		}
	}
	sort.Strings(held)
	produceN(t, e, 200, 400) // the first process commits its partitions again
	waitFor(t, "400 records", 20*time.Second, func() bool { return len(b.got()) >= 400 })
	s := seriesPartitions(t, admin)
	for _, metric := range []string{"ktransfer_committed_offset", "ktransfer_high_water_offset", "ktransfer_lag"} {
		if !slices.Equal(s[metric], held) {
			t.Errorf("%s has series for partitions %v; the process holds %v", metric, s[metric], held)
		}
	}
}
