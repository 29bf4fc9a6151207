package kmonitor_test

import (
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// withUnstoredPartition starts kmonitor on topic t of 3 partitions
// (log ends 5, 3, 7) for module m, whose offsets node records a count of
// 2 and offsets 5 and 3 for partitions 0 and 1: partition 2, without an
// offset znode, is reported from its log start (lag 7). It returns the
// /delay answer that says so, once it does.
func withUnstoredPartition(t *testing.T) (*kfake.Cluster, *env, string) {
	t.Helper()
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 3}})
	e := startOn(t, k, kafkaconf.Default(), zklayout.Auth{})
	produce(t, e.kafka, "t", 0, 5)
	produce(t, e.kafka, "t", 1, 3)
	produce(t, e.kafka, "t", 2, 7)
	setPartitionCount(t, e.conn, "m", "t", 2)
	setOffset(t, e.conn, "m", "t", "0", "5")
	setOffset(t, e.conn, "m", "t", "1", "3")
	want := `{"test_cluster":{"m":{"0":0,"1":0,"2":7}}}` + "\n"
	e.eventually(t, "", want, 30*time.Second)
	return k, e, want
}

// TestUnstoredPartitionSurvivesABriefUnknownTopic: one
// UNKNOWN_TOPIC_OR_PARTITION metadata answer for the topic (a broker whose
// metadata cache is behind), well within the staleness bound that keeps
// the stored partitions reported, made the unstored partition vanish from
// /delay and zabbix_lld at once: a discovery answer without it has Zabbix
// mark its item lost. It is forgotten only once the brokers have said so
// for the staleness bound.
func TestUnstoredPartitionSurvivesABriefUnknownTopic(t *testing.T) {
	unstoredSurvivesOneAnswer(t, "UNKNOWN_TOPIC_OR_PARTITION", func(mt *kmsg.MetadataResponseTopic) {
		mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
	})
}

// TestUnstoredPartitionSurvivesABehindPartitionCount: as above, but the
// broker behind still lists 2 of the topic's 3 partitions (it has not
// learnt of the one added). The count is lowered only once the brokers
// have said so for the staleness bound. Before, one such answer made
// partition 2 vanish from /delay and zabbix_lld at once.
func TestUnstoredPartitionSurvivesABehindPartitionCount(t *testing.T) {
	unstoredSurvivesOneAnswer(t, "listing 2 of 3 partitions", func(mt *kmsg.MetadataResponseTopic) {
		for p := range int32(2) {
			mp := kmsg.NewMetadataResponseTopicPartition()
			mp.Partition, mp.Leader, mp.LeaderEpoch = p, 0, 0
			mp.Replicas, mp.ISR = []int32{0}, []int32{0}
			mt.Partitions = append(mt.Partitions, mp)
		}
	})
}

// unstoredSurvivesOneAnswer answers one metadata request naming topic t
// with a topic answer fill writes (what), and checks that the unstored
// partition 2 stays in every /delay and zabbix_lld answer meanwhile.
func unstoredSurvivesOneAnswer(t *testing.T, what string, fill func(*kmsg.MetadataResponseTopic)) {
	k, e, want := withUnstoredPartition(t)

	var failing atomic.Bool
	var injected atomic.Int64
	k.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		r := req.(*kmsg.MetadataRequest)
		named := false
		for _, rt := range r.Topics {
			if rt.Topic != nil && *rt.Topic == "t" {
				named = true
			}
		}
		if !named || !failing.CompareAndSwap(true, false) {
			return nil, nil, false // one answer only
		}
		injected.Add(1)
		resp := r.ResponseKind().(*kmsg.MetadataResponse)
		for i, addr := range k.ListenAddrs() {
			host, port, _ := net.SplitHostPort(addr)
			p, _ := strconv.Atoi(port)
			b := kmsg.NewMetadataResponseBroker()
			b.NodeID, b.Host, b.Port = int32(i), host, int32(p)
			resp.Brokers = append(resp.Brokers, b)
		}
		resp.ControllerID = 0
		for _, rt := range r.Topics {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic = rt.Topic
			fill(&mt)
			resp.Topics = append(resp.Topics, mt)
		}
		return resp, nil, true
	})
	t.Cleanup(k.DropControl)

	failing.Store(true)
	var bad []string
	end := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(end) || injected.Load() == 0 && time.Now().Before(end.Add(10*time.Second)) {
		_, body := e.get(t, "")
		_, lld := e.get(t, "?format=zabbix_lld")
		if !strings.Contains(body, `"2":`) || !strings.Contains(lld, `"{#PARTITION}":"2"`) {
			bad = append(bad, strings.TrimSpace(body)+" | lld has partition 2: "+strconv.FormatBool(strings.Contains(lld, `"{#PARTITION}":"2"`)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	failing.Store(false)
	if injected.Load() == 0 {
		t.Fatal("no metadata answer injected")
	}
	if len(bad) > 0 {
		t.Errorf("%d metadata answer %s: %d of the /delay answers left out partition 2 (stored partitions 0 and 1 stayed); first: %s", injected.Load(), what, len(bad), bad[0])
	}
	e.eventually(t, "", want, 10*time.Second)
}

// TestUnstoredLagSurvivesOneFailedLogStartAnswer: a log end that one
// ListOffsets answer fails to read keeps its last value until it is stale
// (poll interval + 5 s), so one failed answer changes no reported lag. The
// log start of an unstored partition turned the partition into an error
// at the first failed answer: one UNKNOWN_SERVER_ERROR answer to the
// log-start request must not take partition 2's known lag (7) away.
func TestUnstoredLagSurvivesOneFailedLogStartAnswer(t *testing.T) {
	k, e, want := withUnstoredPartition(t)

	var armed atomic.Bool
	var injected atomic.Int64
	k.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		r := req.(*kmsg.ListOffsetsRequest)
		start := false
		for _, rt := range r.Topics {
			for _, rp := range rt.Partitions {
				start = start || rp.Timestamp == -2
			}
		}
		if !start || !armed.CompareAndSwap(true, false) {
			return nil, nil, false
		}
		injected.Add(1)
		return listOffsetsFailed(req), nil, true // one answer only
	})
	t.Cleanup(k.DropControl)
	armed.Store(true)
	var bad []string
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, body := e.get(t, ""); body != want {
			_, detail := e.get(t, "?detail=1")
			bad = append(bad, strings.TrimSpace(body)+" detail: "+strings.TrimSpace(detail))
		}
	}
	if injected.Load() != 1 {
		t.Fatalf("%d log-start answers injected, want 1", injected.Load())
	}
	if len(bad) > 0 {
		t.Errorf("one failed log-start answer: %d /delay answers differed from %q; first: %s", len(bad), strings.TrimSpace(want), bad[0])
	}
}
