package ktransfer_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/tcpproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestModuleOfAMissingTopicDoesNotStopTheOthers: modules do not affect
// each other (DESIGN). One module's topic does not exist as the process
// starts (a typo, a topic created later in a deploy): the process exited
// 1, its healthy modules with it — under a service manager that restarts
// it, never running them. The other modules run; the start names the
// module, its file and the topic, as an error. The waiting module does not
// register in ids/ meanwhile (the fleet would leave it a share of the
// partitions it cannot claim). Once the topic is created the module pushes
// its records, all of them under start_from newest too: every record of
// the topic came after the module started (newest at the claim skipped
// those written between the topic's creation and the claim).
func TestModuleOfAMissingTopicDoesNotStopTheOthers(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	b := newBackend(t, nil)
	good, waiting := module("good", "t", b.URL), module("waiting", "later", b.URL)
	waiting.StartFrom = "newest"
	var logs runtest.Log
	tr, err := ktransfer.New(e.config(t, 0, good, waiting), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("ktransfer still running 20 s after its stop")
		}
	}()
	go func() { done <- tr.Run(ctx) }()

	e.produce(t, "t", [][2]string{{"a", "1"}, {"b", "2"}})
	pushedOf := func(topic string) int {
		n := 0
		for _, p := range b.got() {
			if p.topic == topic {
				n++
			}
		}
		return n
	}
	for end := time.Now().Add(20 * time.Second); pushedOf("t") < 2; {
		select {
		case err := <-done:
			done <- err // for the deferred wait
			t.Fatalf("ktransfer ended with a module of a missing topic: %v; want its other modules running", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(end) {
			t.Fatalf("%d records of t pushed after 20 s, want 2", pushedOf("t"))
		}
	}
	named := false
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, "module=waiting") && strings.Contains(line, "topic=later") &&
			strings.Contains(line, "modules/waiting.yaml") && strings.Contains(line, "does not exist") {
			named = true
		}
	}
	if !named {
		t.Errorf("no ERROR naming module waiting, its file and its topic as missing; log:\n%s", logs.String())
	}

	ids := zklayout.ConsumerIDs(e.config(t, 0).ZKChroot, "waiting")
	if names, _, err := e.conn.Children(ids); err == nil && len(names) > 0 {
		t.Errorf("%s holds %v while the module waits for its topic; want no registration", ids, names)
	}

	e.createTopic(t, "later", 2)
	e.produce(t, "later", [][2]string{{"c", "3"}, {"d", "4"}, {"e", "5"}})
	waitFor(t, "the records of the topic created later pushed", 30*time.Second, func() bool { return pushedOf("later") >= 3 })
	if names, _, err := e.conn.Children(ids); err != nil || len(names) != 1 {
		t.Errorf("%s: %v %v once the topic exists; want this process registered", ids, names, err)
	}
	found := strings.Count(logs.String(), "topic found: the module starts")
	said := strings.Count(logs.String(), "topic does not exist: the module waits for it")
	if found != 1 || said != 1 {
		t.Errorf("logged %d times that the topic is missing and %d times that it was found, want once each (a minute had not passed)", said, found)
	}
}

// TestMissingTopicNotFoundByASessionLoss: a module waits for its topic
// and the process loses its ZooKeeper session a while (its connection
// frozen past two thirds of the session timeout). A reassignment without a
// session does nothing and fails nothing; it must not be taken for the
// topic found (logged "topic found", and the missing topic said again at
// once when the session came back, not a minute later).
func TestMissingTopicNotFoundByASessionLoss(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	px, err := tcpproxy.Start(e.zkAdr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	b := newBackend(t, nil)
	cfg := e.config(t, 3000, module("waiting", "later", b.URL))
	cfg.ZKHosts = []string{px.Addr()}
	var logs runtest.Log
	tr, err := ktransfer.New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	const said, found = "topic does not exist: the module waits for it", "topic found: the module starts"
	waitFor(t, "the missing topic logged", 20*time.Second, func() bool { return strings.Contains(logs.String(), said) })
	px.Freeze()
	waitFor(t, "the session given up", 20*time.Second, func() bool { return !ktransfer.SessionUp(tr) })
	time.Sleep(time.Second) // reassignments without a session
	px.Thaw()
	waitFor(t, "a session again", 30*time.Second, func() bool { return ktransfer.SessionUp(tr) })
	time.Sleep(2 * time.Second) // reassignments with it: the topic still missing
	if n := strings.Count(logs.String(), found); n != 0 {
		t.Errorf("%q logged %d times while the topic is still missing", found, n)
	}
	if n := strings.Count(logs.String(), said); n != 1 {
		t.Errorf("%q logged %d times within a minute, want once", said, n)
	}
}

// TestDeletedOffsetNodeAfterTheWaitStartsAtNewest: a module (start_from
// newest) waited for its topic, which was created and pushed from its
// first record. Later an operator deletes a partition's offset node to
// have it start again at the newest record (README, Delivery). The wait's
// rule — every record of the topic came after the module began waiting —
// held for the rest of the run: the partition started again at the
// topic's first record and pushed it all again. It applies to a
// partition's first start in the run only.
func TestDeletedOffsetNodeAfterTheWaitStartsAtNewest(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	b := newBackend(t, nil)
	m := module("m", "later", b.URL)
	m.StartFrom = "newest"
	var logs runtest.Log
	e.startAs(t, "1-a", slog.New(slog.NewTextHandler(&logs, nil)), m)
	waitFor(t, "the missing topic logged", 20*time.Second, func() bool {
		return strings.Contains(logs.String(), "topic does not exist: the module waits for it")
	})
	e.createTopic(t, "later", 1)
	e.produce(t, "later", [][2]string{{"a", "a"}, {"b", "b"}, {"c", "c"}})
	waitFor(t, "the topic's records pushed and committed", 30*time.Second, func() bool { return e.storedOffset(t, "m", "later", 0) == "3" })

	if err := e.conn.Delete(zklayout.Offsets(chroot, "m", "later")+"/0", -1); err != nil {
		t.Fatal(err)
	}
	e.produce(t, "later", [][2]string{{"d", "d"}}) // its commit finds the node gone: the partition starts again
	waitFor(t, "the partition started again, its start stored", 30*time.Second, func() bool { return e.storedOffset(t, "m", "later", 0) == "4" })
	eachPushedOnce(t, b)
}

// eachPushedOnce waits for the pushes of a partition started again from
// its topic's first record, if any, and fails for each record pushed
// more than once.
func eachPushedOnce(t *testing.T, b *backend) {
	t.Helper()
	time.Sleep(500 * time.Millisecond)
	pushes := map[string]int{}
	for _, p := range b.got() {
		pushes[p.body]++
	}
	for body, n := range pushes {
		if n != 1 {
			t.Errorf("record %s pushed %d times; want once (an offset node deleted starts the partition at the newest record)", body, n)
		}
	}
}

// TestDeletedOffsetNodeAfterTheWaitStartsAtNewestInTheFleet: the same
// across the fleet. Two processes waited for the topic; an operator
// deletes a partition's offset node and its owner stops. The other
// process had never started that partition itself: it took the wait's
// rule and pushed the partition again from the topic's first record. An
// offset node of the topic ever deleted (the offsets/<topic> node's
// children changed by more than their creates) ends the rule for the
// whole fleet.
func TestDeletedOffsetNodeAfterTheWaitStartsAtNewestInTheFleet(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	b := newBackend(t, nil)
	m := module("m", "later", b.URL)
	m.StartFrom = "newest"
	var la, lb runtest.Log
	runs := map[string]*running{
		"1-a": e.startAs(t, "1-a", slog.New(slog.NewTextHandler(&la, nil)), m),
		"2-b": e.startAs(t, "2-b", slog.New(slog.NewTextHandler(&lb, nil)), m),
	}
	const waiting = "topic does not exist: the module waits for it"
	waitFor(t, "both processes waiting for the topic", 20*time.Second, func() bool {
		return strings.Contains(la.String(), waiting) && strings.Contains(lb.String(), waiting)
	})
	e.createTopic(t, "later", 2)
	var recs [][2]string
	for i := range 20 {
		recs = append(recs, [2]string{"k" + strconv.Itoa(i), "v" + strconv.Itoa(i)})
	}
	e.produce(t, "later", recs)
	waitFor(t, "the partitions shared, every record pushed and committed", 30*time.Second, func() bool {
		o0, o1 := e.storedOffset(t, "m", "later", 0), e.storedOffset(t, "m", "later", 1)
		n0, err0 := strconv.Atoi(o0)
		n1, err1 := strconv.Atoi(o1)
		return err0 == nil && err1 == nil && n0+n1 == 20 && len(distinctOwners(e.owners(t, "m", "later"))) == 2
	})

	if err := e.conn.Delete(zklayout.Offsets(chroot, "m", "later")+"/0", -1); err != nil {
		t.Fatal(err)
	}
	owner := e.owners(t, "m", "later")["0"]
	if err := runs[owner].stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "partition 0 started again by the other process", 30*time.Second, func() bool {
		_, err := strconv.Atoi(e.storedOffset(t, "m", "later", 0))
		return err == nil
	})
	eachPushedOnce(t, b)
}
