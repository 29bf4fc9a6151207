// Package kafkatest gives tests an in-process Kafka: franz-go's kfake, which
// speaks the real protocol.
package kafkatest

import (
	"testing"

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
