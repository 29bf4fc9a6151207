package kproxy_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestBatchShapeCheckedBeforeTopics: every record's shape is checked before
// any topic is looked up, so that a batch refused anyway creates no topic
// (auto_create_topics is on): record 0 names a topic that does not exist,
// record 1 has no value. The answer names record 1 (400, as the README
// says), and the topic of record 0 is not created.
func TestBatchShapeCheckedBeforeTopics(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	body, _ := json.Marshal([]map[string]any{{"topic": "fresh-topic", "value": 1}, {"topic": topic}})
	resp, err := http.Post(p.url+"/batch", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var a struct {
		Error string `json:"error"`
		Index *int   `json:"index"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer %d %q: %v", resp.StatusCode, b, err)
	}
	if resp.StatusCode != 400 || a.Index == nil || *a.Index != 1 || a.Error != "record 1: no value" {
		t.Errorf("answer %d %s, want 400 naming record 1: no value", resp.StatusCode, b)
	}
	if topicExists(t, c, "fresh-topic") {
		t.Error("topic fresh-topic created for a batch refused 400, which wrote nothing")
	}
}
