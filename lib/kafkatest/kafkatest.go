// Package kafkatest gives tests an in-process Kafka: franz-go's kfake, which
// speaks the real protocol, in clusters of one or three brokers, with the
// faults a real cluster brings (faults.go).
package kafkatest

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// Topic is a topic to create with its partition count.
type Topic struct {
	Name       string
	Partitions int32
}

// Start runs a one-broker cluster holding topics and closes it at cleanup.
// Topics not listed do not exist and are not created on demand unless opts
// include kfake.AllowAutoTopicCreation.
func Start(t testing.TB, topics []Topic, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	return StartBrokers(t, 1, topics, opts...)
}

// StartBrokers runs a cluster of n brokers holding topics, partition p of
// each led by broker p mod n, and closes it at cleanup. Fault tests use
// three.
func StartBrokers(t testing.TB, n int, topics []Topic, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	all := []kfake.Opt{kfake.NumBrokers(n)}
	for _, tp := range topics {
		all = append(all, kfake.SeedTopics(tp.Partitions, tp.Name))
	}
	all = append(all, opts...)
	c, err := kfake.NewCluster(all...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	// kfake places each leader at random (all of a topic's on one broker
	// now and then): partition p is led by broker p mod n, before any
	// client is there to see a move.
	for _, tp := range topics {
		for p := range tp.Partitions {
			if err := c.MoveTopicPartition(tp.Name, p, p%int32(n)); err != nil {
				t.Fatalf("place the leader of %s/%d: %v", tp.Name, p, err)
			}
		}
	}
	return c
}

// StartSecure runs a cluster like Start whose listener needs TLS with a
// client certificate and SASL with mechanism (PLAIN, SCRAM-SHA-256 or
// SCRAM-SHA-512), and returns the kafka section that reaches it.
func StartSecure(t testing.TB, topics []Topic, mechanism string, opts ...kfake.Opt) (*kfake.Cluster, kafkaconf.Config) {
	t.Helper()
	certs := testcert.New(t)
	const user, password = "wrapper", "s3cret-for-tests"
	c := Start(t, topics, append([]kfake.Opt{
		kfake.TLS(certs.ServerConfig(true)),
		kfake.EnableSASL(),
		kfake.Superuser(mechanism, user, password),
	}, opts...)...)
	kc := kafkaconf.Default()
	kc.TLS = kafkaconf.TLS{Enable: true, CAFile: certs.CAFile, CertFile: certs.ClientCert, KeyFile: certs.ClientKey}
	kc.SASL = kafkaconf.SASL{Mechanism: mechanism, User: user, Password: password}
	return c, kc
}

// Client is a kgo client of c configured by kc (kafkaconf.Default() for a
// plain cluster) and opts, closed at cleanup.
func Client(t testing.TB, c *kfake.Cluster, kc kafkaconf.Config, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	base, err := kc.Opts("kafkatest", c.ListenAddrs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// EndOffsets are the log-end offsets of topic's partitions on c.
func EndOffsets(t testing.TB, c *kfake.Cluster, kc kafkaconf.Config, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(Client(t, c, kc))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// stableOffsets are the last stable offsets of topic's partitions on c:
// their end offsets but for an open transaction, which starts there.
func stableOffsets(t testing.TB, c *kfake.Cluster, kc kafkaconf.Config, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(Client(t, c, kc))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("last stable offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// Records is the number of records in topic on c: the sum of its
// partitions' end offsets, read with a client configured by kc.
func Records(t testing.TB, c *kfake.Cluster, kc kafkaconf.Config, topic string) int64 {
	t.Helper()
	var n int64
	for _, end := range EndOffsets(t, c, kc, topic) {
		n += end
	}
	return n
}

// ReadAll consumes topic from the start to the end offsets found first,
// read_committed (records of aborted transactions and control records are
// not returned), and returns the records partition by partition in offset
// order.
func ReadAll(t testing.TB, c *kfake.Cluster, kc kafkaconf.Config, topic string) []*kgo.Record {
	t.Helper()
	// The last stable offsets: read_committed returns nothing of an open
	// transaction, which starts there.
	ends := stableOffsets(t, c, kc, topic)
	parts := map[int32]kgo.Offset{}
	left := 0
	for p, end := range ends {
		if end > 0 {
			parts[p] = kgo.NewOffset().AtStart()
			left++
		}
	}
	if left == 0 {
		return nil
	}
	// Control records (a transaction's commit or abort marker) are kept so
	// that a partition whose tail is one is read to its end offset; they
	// are not returned.
	cl := Client(t, c, kc, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	byPart := map[int32][]*kgo.Record{}
	complete := func() bool {
		for p, end := range ends {
			recs := byPart[p]
			if end > 0 && (len(recs) == 0 || recs[len(recs)-1].Offset+1 < end) {
				return false
			}
		}
		return true
	}
	// A partition whose last stable offset follows records of an aborted
	// transaction whose marker comes after it (transactions interleaved)
	// never shows a record at end-1: 5 quiet seconds end the read then,
	// counted after the first 5 s (a loaded machine's broker can answer a
	// fetch seconds late, and the read must not end before it).
	quiet := 0
	for !complete() {
		if time.Now().After(deadline) {
			t.Fatalf("read %s: not read to its end offsets %v within 30s", topic, ends)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			for _, r := range fp.Records {
				byPart[r.Partition] = append(byPart[r.Partition], r)
				n++
			}
		})
		fs.EachError(func(_ string, p int32, err error) {
			if err != context.DeadlineExceeded {
				t.Logf("read %s/%d: %v", topic, p, err)
			}
		})
		if n > 0 || ctx.Err() == nil || time.Since(start) < 6*time.Second {
			quiet = 0
		} else {
			quiet++
		}
		if quiet >= 5 {
			// Expected only for a tail of aborted records; anything else
			// (records the broker acknowledged and no fetch returns) is
			// for the test's own counts to catch, with this to explain it.
			for p, end := range ends {
				if recs := byPart[p]; end > 0 && (len(recs) == 0 || recs[len(recs)-1].Offset+1 < end) {
					t.Logf("read %s/%d: nothing fetched for 5 s, stopped at %d records of last stable offset %d", topic, p, len(recs), end)
				}
			}
			break
		}
	}
	var out []*kgo.Record
	for p := range int32(len(ends)) {
		for _, r := range byPart[p] {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		}
	}
	return out
}
