package kproxy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// missingTTL is how long a topic the brokers said does not exist is
// answered 404 without asking again.
const missingTTL = time.Second

// maxMissing bounds the negative cache, so that requests naming endless
// distinct garbage topics cannot grow memory.
const maxMissing = 10_000

// topicCheck answers whether a topic exists, asking the brokers about that
// one topic (a metadata request) the first time it is named; a topic seen
// to exist is not asked about again (should it be deleted, the producer's
// own error says so), one said not to exist is remembered for missingTTL.
type topicCheck struct {
	client     *kgo.Client
	autoCreate bool
	timeout    time.Duration

	mu      sync.Mutex
	missing map[string]time.Time // topic → until when it is known missing

	knownMu sync.RWMutex
	known   map[string]string // topics seen to exist, to reuse their name
}

func newTopicCheck(c *kgo.Client, autoCreate bool, timeout time.Duration) *topicCheck {
	return &topicCheck{client: c, autoCreate: autoCreate, timeout: timeout,
		missing: map[string]time.Time{}, known: map[string]string{}}
}

// exists returns the topic's name when the brokers know it, a *kerr.Error
// when they refuse it (UNKNOWN_TOPIC_OR_PARTITION, …), or the error that
// kept it from finding out.
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
		return kerr.UnknownTopicOrPartition
	}
	err := tc.metadata(topic)
	tc.mu.Lock()
	defer tc.mu.Unlock()
	switch {
	case err == kerr.UnknownTopicOrPartition:
		if len(tc.missing) >= maxMissing {
			clear(tc.missing)
		}
		tc.missing[topic] = time.Now().Add(missingTTL)
	case ok:
		delete(tc.missing, topic)
	}
	return err
}

// metadata asks a broker about topic alone (creating it when
// auto_create_topics is on and the brokers allow it).
func (tc *topicCheck) metadata(topic string) error {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = tc.autoCreate
	ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
	defer cancel()
	resp, err := req.RequestWith(ctx, tc.client)
	if err != nil {
		return fmt.Errorf("metadata of topic %s: %w", topic, err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		switch err := kerr.ErrorForCode(t.ErrorCode); err {
		case nil, kerr.LeaderNotAvailable:
			// LEADER_NOT_AVAILABLE: just created, or electing; kgo waits
			// for the leader within the record's deadline.
			return nil
		default:
			return err
		}
	}
	return fmt.Errorf("metadata of topic %s: not in the brokers' answer", topic)
}
