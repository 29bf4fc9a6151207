package kafkaconf

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

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
	tc, err := DescribeTopic(ctx, cl, topic)
	return tc.MaxBytes, err
}

// TopicConfig is what a producer needs of a topic's configuration.
type TopicConfig struct {
	MaxBytes int32 // max.message.bytes; 0 when the answer had no usable one
	// Compacted: cleanup.policy has compact ("compact" or
	// "compact,delete"). The brokers refuse a record without a key
	// (INVALID_RECORD) and with it the whole batch holding it.
	Compacted bool
}

// DescribeTopic asks the brokers, through cl, for topic's
// max.message.bytes and cleanup.policy in one DescribeConfigs request. Its
// error is TopicMaxBytes's; Compacted is read from any answer that has it,
// one without a usable max.message.bytes included.
func DescribeTopic(ctx context.Context, cl *kgo.Client, topic string) (TopicConfig, error) {
	var tc TopicConfig
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeTopic
	res.ResourceName = topic
	res.ConfigNames = []string{"max.message.bytes", "cleanup.policy"}
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return tc, fmt.Errorf("max.message.bytes of topic %s: %w", topic, err)
	}
	err = fmt.Errorf("max.message.bytes of topic %s: %w", topic, ErrNoMaxBytes)
	for _, r := range resp.Resources {
		if rerr := kerr.ErrorForCode(r.ErrorCode); rerr != nil {
			return TopicConfig{}, fmt.Errorf("max.message.bytes of topic %s: %w", topic, rerr)
		}
		for _, c := range r.Configs {
			switch {
			case c.Value == nil:
			case c.Name == "cleanup.policy":
				for _, p := range strings.Split(*c.Value, ",") {
					tc.Compacted = tc.Compacted || strings.TrimSpace(p) == "compact"
				}
			case c.Name == "max.message.bytes":
				v, perr := strconv.ParseInt(*c.Value, 10, 32)
				if perr != nil || v < 1 {
					err = fmt.Errorf("max.message.bytes of topic %s: %q is not a size: %w", topic, *c.Value, ErrNoMaxBytes)
					continue
				}
				tc.MaxBytes, err = int32(v), nil
			}
		}
	}
	return tc, err
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
