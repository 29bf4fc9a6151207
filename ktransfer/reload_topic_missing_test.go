package ktransfer_test

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
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

	e.createTopic(t, "later", 1)
	e.produce(t, "later", [][2]string{{"c", "3"}, {"d", "4"}, {"e", "5"}})
	waitFor(t, "the records of the topic created after the reload pushed", 30*time.Second, func() bool { return pushedTo("/n/") >= 3 })
	waitFor(t, "module n's offset committed", 20*time.Second, func() bool { return e.storedOffset(t, "n", "later", 0) == "3" })
}

// TestReloadedModuleNewestFromTheReload: a reload adds module n
// (start_from newest) whose topic does not exist, and removes module s,
// whose hand-over waits for a push in progress. The topic is created, and
// written to, during that hand-over, before n starts. Every record of the
// topic came after the reload started n's wait, and none may be skipped:
// the reload's finding was thrown away, n's first look found the topic,
// and newest started n at the log end, after them.
func TestReloadedModuleNewestFromTheReload(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	var letGo atomic.Bool
	t.Cleanup(func() { letGo.Store(true) })
	bk := newBackend(t, func(_ int, p push, _ http.ResponseWriter) {
		for p.body == "slow" && !letGo.Load() {
			time.Sleep(5 * time.Millisecond)
		}
	})
	c := e.reloadConf(t, "s")
	c.shutdownMs = 20000
	c.enable(t, "", "s")
	c.module(t, "s", "t", "s", bk.URL, "")
	r := startConf(t, c, nil)
	e.produce(t, "t", [][2]string{{"k", "slow"}})
	waitFor(t, "the slow push in progress", 20*time.Second, func() bool { return pushed(bk, "slow") })

	c.enable(t, "", "n") // s removed: its hand-over waits for the slow push
	c.module(t, "n", "later", "n", bk.URL, "start_from: newest\n")
	reloaded := make(chan error, 1)
	go func() { reloaded <- r.tr.Reload(context.Background()) }()
	sIDs := zklayout.ConsumerIDs(chroot, "s")
	waitFor(t, "s deregistered: the reload checked n's topic and is handing s over", 20*time.Second, func() bool {
		names, _, err := e.conn.Children(sIDs)
		return err == nil && len(names) == 0
	})
	e.createTopic(t, "later", 1)
	e.produce(t, "later", [][2]string{{"c", "3"}, {"d", "4"}, {"e", "5"}})
	letGo.Store(true)
	if err := <-reloaded; err != nil {
		t.Fatalf("reload: %v", err)
	}
	waitFor(t, "the records written to the new topic during the hand-over pushed", 20*time.Second, func() bool {
		return pushed(bk, "3") && pushed(bk, "4") && pushed(bk, "5")
	})
}

// TestReloadedModuleOfADeletedTopicWaits: a topic read while the process
// runs (module g's) is deleted, and a reload adds module n on it. The
// process's partition list of the topic, read last, is the deleted
// topic's: n took it, registered and claimed partitions of a topic that
// does not exist, retrying their start for ever, without saying the topic
// is missing. It waits for the topic as a module whose topic was never
// read does.
func TestReloadedModuleOfADeletedTopicWaits(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "gone", Partitions: 2})
	bk := newBackend(t, nil)
	c := e.reloadConf(t, "m", "g")
	c.module(t, "m", "t", "m", bk.URL, "")
	c.module(t, "g", "gone", "g", bk.URL, "")
	var logs runtest.Log
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the Transfer's log:\n%s", logs.String())
		}
	})
	r := startConf(t, c, slog.New(slog.NewTextHandler(&logs, nil)))
	waitFor(t, "g's partitions owned", 20*time.Second, func() bool { return len(e.owners(t, "g", "gone")) == 2 })
	c.enable(t, "", "m") // g removed
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := adm.DeleteTopics(ctx, "gone"); err != nil || res.Error() != nil {
		t.Fatalf("delete topic gone: %v %v", err, res.Error())
	}
	// The deletion is not at once in every broker's answer (failed once
	// in CI: the reload still saw the topic).
	waitFor(t, "topic gone gone", 10*time.Second, func() bool {
		d, err := adm.ListTopics(ctx, "gone")
		return err == nil && !d.Has("gone")
	})

	c.enable(t, "", "m", "n")
	c.module(t, "n", "gone", "n", bk.URL, "")
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload adding a module of a deleted topic: %v; want it applied, the module waiting", err)
	}
	waitFor(t, "the missing topic logged", 10*time.Second, func() bool {
		return slices.ContainsFunc(strings.Split(logs.String(), "\n"), func(line string) bool {
			return strings.Contains(line, "topic does not exist") && strings.Contains(line, "module=n")
		})
	})
	time.Sleep(2 * time.Second) // reassignments: none may register or claim
	ids := zklayout.ConsumerIDs(chroot, "n")
	if names, _, err := e.conn.Children(ids); err == nil && len(names) > 0 {
		t.Errorf("%s holds %v while the module waits for its deleted topic; want no registration", ids, names)
	}
	if o := e.owners(t, "n", "gone"); len(o) > 0 {
		t.Errorf("owner nodes %v of the deleted topic; want none", o)
	}
}

// TestReloadedWaitingModuleKeepsItsWaitMark: module n (start_from newest)
// waits for its topic, which is created and written to; a reload that
// changes n (its uri) comes before n's run looks again (it looks about
// once a second). Every record of the topic came after n began to wait,
// and none may be skipped. The reload found the topic there and built the
// new run without the old run's mark of the wait: with no stored offset,
// newest started it at the log end, after the three records.
func TestReloadedWaitingModuleKeepsItsWaitMark(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	bk := newBackend(t, nil)
	c := e.reloadConf(t, "n")
	c.module(t, "n", "later", "n", bk.URL, "start_from: newest\n")
	var logs runtest.Log
	r := startConf(t, c, slog.New(slog.NewTextHandler(&logs, nil)))
	waitFor(t, "n waiting for its topic", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "topic does not exist") && strings.Contains(logs.String(), "module=n")
	})
	e.createTopic(t, "later", 1)
	e.produce(t, "later", [][2]string{{"c", "3"}, {"d", "4"}, {"e", "5"}})
	c.module(t, "n", "later", "n2", bk.URL, "start_from: newest\n")
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	waitFor(t, "the records written while n waited pushed", 20*time.Second, func() bool {
		return pushed(bk, "3") && pushed(bk, "4") && pushed(bk, "5")
	})
}
