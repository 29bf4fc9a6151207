package ktransfer_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// A dead letter a replay gives up again stays where it is, not written
// again (README, Dead-letter replay). Its log line says so and names the
// record by its topic, partition and offset; it used to be the daemon's
// "record given up" line, with dead_letter_topic=dlq written twice and no
// topic, so that it read as the record dlq/0/<offset> dead-lettered anew.
func TestReplayGivenUpAgainLogSaysItStays(t *testing.T) {
	e, _, m := dlqModule(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(400) })
	e.produceRecords(t, deadLetterOf("m", "t", 7, "refused again"))
	var logs runtest.Log
	rep := replayLogging(t, e.config(t, 0, m), 20*time.Second, slog.New(slog.NewTextHandler(&logs, nil)))
	if rep.GivenUp != 1 {
		t.Fatalf("replay: %v; want 1 given up", rep)
	}
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "level=ERROR") && strings.Contains(l, "given up") {
			line = l
		}
	}
	switch {
	case line == "":
		t.Fatalf("no error line for the dead letter given up again:\n%s", logs.String())
	case strings.Count(line, "dead_letter_topic=") != 1 || !strings.Contains(line, "stays") ||
		!strings.Contains(line, " topic=t ") || !strings.Contains(line, " partition=0 ") || !strings.Contains(line, " offset=7 "):
		t.Errorf("given up again: %s\nwant one dead_letter_topic, the record's topic=t partition=0 offset=7, and that the dead letter stays", line)
	}
}
