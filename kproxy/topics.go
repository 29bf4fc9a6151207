package kproxy

import (
	"errors"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// missingTTL is how long a topic the brokers said does not exist is
// answered 404 without asking again.
const missingTTL = time.Second

// maxMissing bounds the negative cache, so that requests naming endless
// distinct garbage topics cannot grow memory.
const maxMissing = 10_000

// topicCheck answers whether a topic exists. Known topics come from the
// metadata client's cache (refreshed in the background); unknown ones cost
// one metadata request, then are remembered as missing for missingTTL.
type topicCheck struct {
	client sarama.Client

	mu      sync.Mutex
	missing map[string]time.Time // topic → until when it is known missing

	knownMu sync.RWMutex
	known   map[string]string // topics seen to exist, to reuse their name
}

func newTopicCheck(c sarama.Client) *topicCheck {
	return &topicCheck{client: c, missing: map[string]time.Time{}, known: map[string]string{}}
}

// exists returns the topic's name when it has partitions, an error
// wrapping sarama.ErrUnknownTopicOrPartition when the brokers do not know
// it, or the error that kept it from finding out. A topic seen once is not
// asked about again: should it be deleted, the producer's own error says so.
func (tc *topicCheck) exists(name []byte) (string, error) {
	tc.knownMu.RLock()
	topic, ok := tc.known[string(name)] // no allocation for the lookup
	tc.knownMu.RUnlock()
	if ok {
		return topic, nil
	}
	topic = string(name)
	if err := tc.ask(topic); err != nil {
		return "", err
	}
	tc.knownMu.Lock()
	tc.known[topic] = topic
	tc.knownMu.Unlock()
	return topic, nil
}

func (tc *topicCheck) ask(topic string) error {
	tc.mu.Lock()
	until, ok := tc.missing[topic]
	tc.mu.Unlock()
	if ok && time.Now().Before(until) {
		return sarama.ErrUnknownTopicOrPartition
	}
	parts, err := tc.client.Partitions(topic)
	if err == nil && len(parts) == 0 {
		err = sarama.ErrLeaderNotAvailable
	}
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		tc.mu.Lock()
		if len(tc.missing) >= maxMissing {
			clear(tc.missing)
		}
		tc.missing[topic] = time.Now().Add(missingTTL)
		tc.mu.Unlock()
	} else if ok {
		tc.mu.Lock()
		delete(tc.missing, topic)
		tc.mu.Unlock()
	}
	return err
}
