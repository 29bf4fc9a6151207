// Package kafkatest gives tests an in-process Kafka: franz-go's kfake, which
// speaks the real protocol.
package kafkatest

import (
	"testing"

	"github.com/IBM/sarama"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
	"github.com/twmb/franz-go/pkg/kfake"
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
	all := []kfake.Opt{kfake.NumBrokers(1)}
	for _, tp := range topics {
		all = append(all, kfake.SeedTopics(tp.Partitions, tp.Name))
	}
	all = append(all, opts...)
	c, err := kfake.NewCluster(all...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
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

// Records is the number of records in topic on c: the sum of its
// partitions' end offsets, read with a client configured by sc.
func Records(t testing.TB, c *kfake.Cluster, sc *sarama.Config, topic string) int64 {
	t.Helper()
	client, err := sarama.NewClient(c.ListenAddrs(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, p := range parts {
		off, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		n += off
	}
	return n
}
