package ktransfer_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestReloadRefusedWarnsOfNoKeyWithoutEffect: a key without effect is
// warned of when the module starts. A reload that changes module m to
// such a key (breaker_cooldown_ms without breaker_failures) and adds a
// module whose topic the brokers refuse to describe (not authorized) is
// refused: m goes on as it
// was, and the log must not warn of a value that is not in use beside the
// refusal. (Before, the module was built for the reload, warnings and
// all, and then thrown away.)
func TestReloadRefusedWarnsOfNoKeyWithoutEffect(t *testing.T) {
	var logs runtest.Log
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	bk := newBackend(t, nil)
	c := e.reloadConf(t, "m")
	c.module(t, "m", "t", "m", bk.URL, "")
	r := startConf(t, c, slog.New(slog.NewTextHandler(&logs, nil)))
	waitFor(t, "the partition owned", 20*time.Second, func() bool { return len(e.owners(t, "m", "t")) == 1 })

	c.enable(t, "", "m", "n")
	c.module(t, "m", "t", "m", bk.URL, "breaker_cooldown_ms: 7000\n")
	c.module(t, "n", "forbidden", "n", bk.URL, "")
	var on atomic.Bool
	on.Store(true)
	topicMetadataError(t, e, "forbidden", kerr.TopicAuthorizationFailed, &on, 1)
	if err := r.tr.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("reload adding a module of a topic not described: %v, want refused naming the topic", err)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "no effect") {
			t.Errorf("a refused reload logged %q", line)
		}
	}
}
