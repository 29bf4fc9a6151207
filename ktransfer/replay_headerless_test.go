package ktransfer_test

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestReplayDoesNotTakeHeaderlessRecordsForOldDeadLetters: a module with
// target_header whose records carry no header (they go to its uri) has
// them refused (400) and dead-lettered. The replay counted and warned of
// them as dead letters "written before dead letters kept the record's
// headers", whose target is lost (README: "replay those with care, or
// drop them"): they never had one. A dead letter now says how many
// headers of the record's own it carries (ktransfer-headers).
func TestReplayDoesNotTakeHeaderlessRecordsForOldDeadLetters(t *testing.T) {
	var accepting atomic.Bool
	e, _, m := dlqModule(t, func(_ int, _ push, w http.ResponseWriter) {
		if !accepting.Load() {
			w.WriteHeader(400)
		}
	})
	m.Protocol.TargetHeader = "target"
	var recs []*kgo.Record
	for i := range 5 {
		recs = append(recs, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("v" + strconv.Itoa(i))}) // no headers: pushed to uri
	}
	e.produceRecords(t, recs...)
	r := e.start(t, m)
	waitFor(t, "5 dead letters", 15*time.Second, func() bool { return kafkatest.Records(t, e.kafka, e.kc, "dlq") == 5 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	accepting.Store(true)
	var logs runtest.Log
	rep := replayLogging(t, e.config(t, 0, m), 20*time.Second, slog.New(slog.NewTextHandler(&logs, nil)))
	t.Logf("report: %v", rep)
	if rep.Replayed != 5 {
		t.Fatalf("replayed %d, want 5", rep.Replayed)
	}
	if rep.WithoutHeaders != 0 || strings.Contains(logs.String(), "dead letter without the record's own headers") {
		t.Errorf("dead letters written by this version of records that never had headers reported as %d \"without original headers\" (README: written before this version, lost their target, \"replay those with care, or drop them\"); warning logged: %v",
			rep.WithoutHeaders, strings.Contains(logs.String(), "dead letter without the record's own headers"))
	}
}
