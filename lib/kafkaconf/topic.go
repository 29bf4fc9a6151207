package kafkaconf

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrNoMaxBytes is TopicMaxBytes's error when the brokers answered
// without a usable max.message.bytes.
var ErrNoMaxBytes = errors.New("no usable max.message.bytes in the brokers' answer")

// TopicMaxBytes asks the brokers, through cl, for topic's
// max.message.bytes (a DescribeConfigs request). A broker's refusal (a
// principal that may not describe configs, an unknown topic) comes back as
// a *kerr.Error; an answer without a usable value, ErrNoMaxBytes; any
// other error says no broker answered within ctx.
func TopicMaxBytes(ctx context.Context, cl *kgo.Client, topic string) (int32, error) {
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeTopic
	res.ResourceName = topic
	res.ConfigNames = []string{"max.message.bytes"}
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, fmt.Errorf("max.message.bytes of topic %s: %w", topic, err)
	}
	for _, r := range resp.Resources {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			return 0, fmt.Errorf("max.message.bytes of topic %s: %w", topic, err)
		}
		for _, c := range r.Configs {
			if c.Name == "max.message.bytes" && c.Value != nil {
				v, err := strconv.ParseInt(*c.Value, 10, 32)
				if err != nil || v < 1 {
					return 0, fmt.Errorf("max.message.bytes of topic %s: %q is not a size: %w", topic, *c.Value, ErrNoMaxBytes)
				}
				return int32(v), nil
			}
		}
	}
	return 0, fmt.Errorf("max.message.bytes of topic %s: %w", topic, ErrNoMaxBytes)
}

// ValidTopic reports whether name is a name Kafka accepts for a topic:
// ASCII letters, digits, '.', '_' and '-', 1 to 249 of them, not "." or
// "..". The brokers refuse any other name, so a configured one is checked
// at start.
func ValidTopic(name string) bool {
	if name == "" || len(name) > 249 || name == "." || name == ".." {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
