package ktransfer_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestReloadAddsAModuleWaitingForItsTopic: a module whose topic does not
// exist yet starts and waits for it at the process's start; a reload
// adding one (a module file deployed before its topic is created) was
// refused whole, the other changes it carried with it, and the module
// never ran until a reload after the topic's creation. The reload is
// applied: the module is logged as waiting for its topic (an error naming
// the module, its file and the topic), does not register meanwhile, the
// running module goes on, and once the topic is created its records are
// pushed.
func TestReloadAddsAModuleWaitingForItsTopic(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	bk := newBackend(t, nil)
	c := e.reloadConf(t, "m")
	c.module(t, "m", "t", "m", bk.URL, "")
	var logs runtest.Log
	r := startConf(t, c, slog.New(slog.NewTextHandler(&logs, nil)))
	waitFor(t, "the partition owned", 20*time.Second, func() bool { return len(e.owners(t, "m", "t")) == 1 })

	c.enable(t, "", "m", "n")
	c.module(t, "n", "later", "n", bk.URL, "")
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload adding a module whose topic is not created yet: %v; want it applied, the module waiting", err)
	}
	if last := r.tr.ConfigStatus().LastReload; last == nil || last.Result != "ok" || !slices.Equal(last.Started, []string{"n"}) {
		t.Errorf("last reload: %+v, want ok, n started", last)
	}
	waitFor(t, "the missing topic logged", 10*time.Second, func() bool {
		return slices.ContainsFunc(strings.Split(logs.String(), "\n"), func(line string) bool {
			return strings.Contains(line, "level=ERROR") && strings.Contains(line, "topic does not exist") &&
				strings.Contains(line, "module=n") && strings.Contains(line, "topic=later") && strings.Contains(line, "modules/n.yaml")
		})
	})
	ids := zklayout.ConsumerIDs(chroot, "n")
	if names, _, err := e.conn.Children(ids); err == nil && len(names) > 0 {
		t.Errorf("%s holds %v while the module waits for its topic; want no registration", ids, names)
	}
	pushedTo := func(prefix string) int {
		n := 0
		for _, p := range bk.got() {
			if strings.HasPrefix(p.path, prefix) {
				n++
			}
		}
		return n
	}
	e.produce(t, "t", [][2]string{{"a", "1"}, {"b", "2"}})
	waitFor(t, "module m pushing after the reload", 20*time.Second, func() bool { return pushedTo("/m/") >= 2 })

	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "later"); err != nil {
		t.Fatalf("create topic later: %v", err)
	}
	e.produce(t, "later", [][2]string{{"c", "3"}, {"d", "4"}, {"e", "5"}})
	waitFor(t, "the records of the topic created after the reload pushed", 30*time.Second, func() bool { return pushedTo("/n/") >= 3 })
	waitFor(t, "module n's offset committed", 20*time.Second, func() bool { return e.storedOffset(t, "n", "later", 0) == "3" })
}
