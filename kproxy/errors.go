package kproxy

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/IBM/sarama"
	"github.com/eapache/go-resiliency/breaker"
)

// classify maps a produce error to the HTTP status and the one-line reason
// the client gets. Every error is a non-200: a record is never reported
// written unless Kafka said so.
func classify(err error) (int, string) {
	var kerr sarama.KError
	if errors.As(err, &kerr) {
		switch kerr {
		case sarama.ErrUnknownTopicOrPartition:
			return 404, "unknown topic"
		case sarama.ErrInvalidTopic:
			return 400, "invalid topic name"
		case sarama.ErrTopicAuthorizationFailed:
			return 403, "kafka denied writing to this topic"
		case sarama.ErrMessageSizeTooLarge, sarama.ErrMessageSetSizeTooLarge:
			// The broker refused the batch as too large: the topic's
			// max.message.bytes is below the record.
			return 413, "kafka refused the record as too large"
		case sarama.ErrInvalidRecord, sarama.ErrPolicyViolation, sarama.ErrInvalidMessage:
			return 400, "kafka rejected the record: " + kerr.Error()
		case sarama.ErrRequestTimedOut:
			// The leader timed out waiting for replicas; the record may be in
			// the log.
			return 504, "kafka timed out; the record may have been written"
		case sarama.ErrNotEnoughReplicas, sarama.ErrNotEnoughReplicasAfterAppend:
			// acks=-1 with too few in-sync replicas. After append, the record
			// is in the leader's log but not acknowledged.
			if kerr == sarama.ErrNotEnoughReplicasAfterAppend {
				return 503, "kafka has too few in-sync replicas; the record may have been written"
			}
			return 503, "kafka has too few in-sync replicas"
		case sarama.ErrLeaderNotAvailable, sarama.ErrNotLeaderForPartition, sarama.ErrBrokerNotAvailable:
			return 503, "kafka partition leader unavailable"
		}
		return 502, "kafka error: " + kerr.Error()
	}
	var cerr sarama.ConfigurationError
	switch {
	case errors.As(err, &cerr) && strings.Contains(string(cerr), "MaxMessageBytes"):
		return 413, "record larger than max_message_bytes"
	case errors.Is(err, sarama.ErrMessageSizeTooLarge):
		return 413, "record larger than max_message_bytes"
	case errors.Is(err, sarama.ErrShuttingDown), errors.Is(err, sarama.ErrClosedClient):
		return 503, "kproxy is shutting down"
	case errors.Is(err, breaker.ErrBreakerOpen):
		// sarama stops asking for a topic's metadata for a while after
		// repeated failures.
		return 503, "kafka unavailable for this topic, retry later"
	case errors.Is(err, sarama.ErrOutOfBrokers), errors.Is(err, sarama.ErrNotConnected),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return 503, "kafka unreachable"
	}
	var nerr net.Error
	if errors.As(err, &nerr) {
		if nerr.Timeout() {
			// The request may have reached the broker.
			return 504, "kafka timed out; the record may have been written"
		}
		return 503, "kafka unreachable"
	}
	return 502, "kafka error: " + err.Error()
}
