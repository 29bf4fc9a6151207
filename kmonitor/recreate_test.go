package kmonitor_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// ageDetail is one partition of /delay?detail=1 with its lag in seconds.
type ageDetail struct {
	Lag        *int64   `json:"lag"`
	LogEnd     *int64   `json:"log_end"`
	LagSeconds *float64 `json:"lag_seconds"`
	AtLeast    bool     `json:"lag_seconds_at_least"`
	Error      string   `json:"error"`
}

// ageOf polls /delay?detail=1 until partition part of module m satisfies
// cond, for up to limit, and returns it.
func (e *env) ageOf(t *testing.T, m, part string, limit time.Duration, cond func(ageDetail) bool) ageDetail {
	t.Helper()
	var last string
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		code, body := e.get(t, "?detail=1")
		last = body
		var v map[string]map[string]map[string]ageDetail
		if code != 200 || json.Unmarshal([]byte(body), &v) != nil {
			continue
		}
		if d, ok := v["test_cluster"][m][part]; ok && cond(d) {
			return d
		}
	}
	t.Fatalf("/delay?detail=1 after %v: %s", limit, last)
	return ageDetail{}
}

// A topic deleted and created again starts its log at 0: the records
// waiting after that are as old as the new topic's, not as old as the
// first log end kmonitor saw of the topic that was deleted.
func TestLagSecondsAfterTopicCreatedAgain(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 10)
	setOffset(t, e.conn, "m", "a", "0", "10")
	e.ageOf(t, "m", "0", 10*time.Second, func(d ageDetail) bool { return d.LogEnd != nil && *d.LogEnd == 10 && d.Lag != nil && *d.Lag == 0 })

	recreateTopicA(t, e)
	setOffset(t, e.conn, "m", "a", "0", "0") // the module starts the new log from its start
	e.ageOf(t, "m", "0", 10*time.Second, func(d ageDetail) bool { return d.LogEnd != nil && *d.LogEnd == 0 && d.Lag != nil })

	before := time.Now()
	produce(t, e.kafka, "a", 0, 3)
	d := e.ageOf(t, "m", "0", 10*time.Second, func(d ageDetail) bool { return d.LogEnd != nil && *d.LogEnd == 3 && d.Lag != nil })
	since := time.Since(before).Seconds()
	if d.LagSeconds == nil {
		t.Fatalf("no lag_seconds for a known lag: %+v", d)
	}
	if *d.Lag != 3 || *d.LagSeconds > since || d.AtLeast {
		t.Errorf("lag %d, lag_seconds %v (at least: %v); want 3 records produced at most %.3f s ago, the age known",
			*d.Lag, *d.LagSeconds, d.AtLeast, since)
	}
}

// The same, when kmonitor reads no log end of the new topic before records
// arrive in it (its reads failed meanwhile, and the module had already
// gone back to the new log's start): the log end went back, from the
// deleted topic's 10 to 3, and those 3 records are newer than the
// deletion; lag_seconds must not date them from the first log end seen
// of the topic that was deleted.
func TestLagSecondsAfterTopicCreatedAgainNotReadBeforeRecords(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 10)
	// The deleted topic's log end is first seen at least a second before
	// the deletion: its records wait that long, then are pushed.
	setOffset(t, e.conn, "m", "a", "0", "0")
	e.ageOf(t, "m", "0", 10*time.Second, func(d ageDetail) bool { return d.LagSeconds != nil && *d.LagSeconds >= 1 })
	setOffset(t, e.conn, "m", "a", "0", "10")
	e.ageOf(t, "m", "0", 10*time.Second, func(d ageDetail) bool { return d.LogEnd != nil && *d.LogEnd == 10 && d.Lag != nil && *d.Lag == 0 })

	// Every ListOffsets fails until the new topic holds its records.
	stopFailing := failListOffsets(t, e)

	deleted := time.Now()
	recreateTopicA(t, e)
	setOffset(t, e.conn, "m", "a", "0", "0") // the module starts the new log from its start
	produce(t, e.kafka, "a", 0, 3)
	stopFailing()

	d := e.ageOf(t, "m", "0", 10*time.Second, func(d ageDetail) bool { return d.LogEnd != nil && *d.LogEnd == 3 && d.Lag != nil })
	since := time.Since(deleted).Seconds()
	if d.LagSeconds == nil {
		t.Fatalf("no lag_seconds for a known lag: %+v", d)
	}
	if *d.Lag != 3 || *d.LagSeconds > since {
		t.Errorf("lag %d, lag_seconds %v (at least: %v); want 3 records produced after the deletion, at most %.3f s ago",
			*d.Lag, *d.LagSeconds, d.AtLeast, since)
	}
}

// The same, with more records in the new topic by the time kmonitor reads
// its log end than the deleted one held: the log end never went back
// (10, then 15), and the new topic's records were dated from the first
// log end seen of the deleted one. The topic's ID, which the brokers give
// with its leaders (read while the log ends were not), tells the new log
// from the old.
func TestLagSecondsAfterTopicCreatedAgainWithMoreRecords(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 10)
	setOffset(t, e.conn, "m", "a", "0", "0")
	e.ageOf(t, "m", "0", 10*time.Second, func(d ageDetail) bool { return d.LagSeconds != nil && *d.LagSeconds >= 2 })
	setOffset(t, e.conn, "m", "a", "0", "10")
	e.ageOf(t, "m", "0", 10*time.Second, func(d ageDetail) bool { return d.LogEnd != nil && *d.LogEnd == 10 && d.Lag != nil && *d.Lag == 0 })

	// Every ListOffsets fails until the new topic holds its records.
	stopFailing := failListOffsets(t, e)

	deleted := time.Now()
	recreateTopicA(t, e)
	setOffset(t, e.conn, "m", "a", "0", "0")
	produce(t, e.kafka, "a", 0, 15)
	// Polls meanwhile: the leaders (and the topic's ID) are read, the log
	// ends are not.
	time.Sleep(time.Second)
	stopFailing()

	d := e.ageOf(t, "m", "0", 10*time.Second, func(d ageDetail) bool { return d.LogEnd != nil && *d.LogEnd == 15 && d.Lag != nil })
	since := time.Since(deleted).Seconds()
	if d.LagSeconds == nil {
		t.Fatalf("no lag_seconds for a known lag: %+v", d)
	}
	if *d.Lag != 15 || *d.LagSeconds > since {
		t.Errorf("lag %d, lag_seconds %v (at least: %v); want 15 records produced after the deletion, at most %.3f s ago",
			*d.Lag, *d.LagSeconds, d.AtLeast, since)
	}
}

// recreateTopicA deletes topic a and creates it again (1 partition).
func recreateTopicA(t *testing.T, e *env) {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, kafkaconf.Default()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if res, err := adm.DeleteTopics(ctx, "a"); err != nil || res.Error() != nil {
		t.Fatalf("delete topic a: %v %v", err, res.Error())
	}
	if !waitFor(10*time.Second, func() bool { d, err := adm.ListTopics(ctx, "a"); return err == nil && !d.Has("a") }) {
		t.Fatal("topic a still listed after its deletion")
	}
	if res, err := adm.CreateTopic(ctx, 1, -1, nil, "a"); err != nil || res.Err != nil {
		t.Fatalf("create topic a again: %v %v", err, res.Err)
	}
}

// failListOffsets has every ListOffsets request fail until the function
// it returns is called.
func failListOffsets(t *testing.T, e *env) (stop func()) {
	var failing atomic.Bool
	failing.Store(true)
	e.kafka.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		if !failing.Load() {
			return nil, nil, false
		}
		return listOffsetsFailed(req), nil, true
	})
	t.Cleanup(e.kafka.DropControl)
	return func() { failing.Store(false) }
}

// listOffsetsFailed answers a ListOffsets request with
// UNKNOWN_SERVER_ERROR (not retried) for every partition it asks for.
func listOffsetsFailed(req kmsg.Request) kmsg.Response {
	r := req.(*kmsg.ListOffsetsRequest)
	resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = -1 // UNKNOWN_SERVER_ERROR: not retried
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
