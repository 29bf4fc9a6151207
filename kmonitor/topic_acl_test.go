package kmonitor_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// kmonitor's principal may describe topic a, not b (another team's
// module in the same chroot, or a topic a module left). b's partition is
// an error on the dashboard; a's lag is shown all the same. Before, one
// topic the brokers refused failed the whole metadata answer: every
// partition of the cluster showed null, the error naming no topic.
func TestTopicNotDescribableHidesNoOtherLag(t *testing.T) {
	k, kc := kafkatest.StartSecure(t, []kafkatest.Topic{{Name: "a", Partitions: 2}, {Name: "b", Partitions: 1}}, "PLAIN",
		kfake.EnableACLs(),
		kfake.User("PLAIN", "kmon", "kmon-pass", kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "a",
			Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationDescribe, Allow: true}))
	produceWith(t, k, kc, "a", 1, 5) // as the superuser
	mon := kc
	mon.SASL.User, mon.SASL.Password = "kmon", "kmon-pass"
	e := startOn(t, k, mon, zklayout.Auth{})
	setOffset(t, e.conn, "ma", "a", "1", "2")
	setOffset(t, e.conn, "mb", "b", "0", "0")
	e.eventually(t, "", `{"test_cluster":{"ma":{"1":3},"mb":{"0":null}}}`+"\n", 15*time.Second)
	e.eventuallyContains(t, "?detail=1", 5*time.Second, `"error":"log-end offset unknown: log end of b/0: topic b: TOPIC_AUTHORIZATION_FAILED`)
}
