package ktransfer_test

import (
	"io"
	"log/slog"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// startAdmin runs a Transfer with its admin listener on a free loopback
// port and the ZooKeeper session timeout given (0: envZKTimeoutMs); it
// returns the Transfer and the admin base URL.
func (e *env) startAdmin(t *testing.T, zkTimeoutMs int, modules ...ktransfer.Module) (*running, string) {
	t.Helper()
	cfg := e.config(t, zkTimeoutMs, modules...)
	cfg.AdminAddr = "127.0.0.1:0"
	tr, err := ktransfer.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	stop := runtest.Start(t, tr.Run, 20*time.Second)
	return &running{tr: tr, stop: stop}, "http://" + tr.AdminAddr().String()
}

// healthStatus is GET /health's status code, 0 when it did not answer.
func healthStatus(base string) int {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(base + "/health")
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestHealthFollowsZooKeeperSession freezes the only ZooKeeper server
// (SIGSTOP: connections stay open, nothing answers) past the session
// timeout. /health answers 503 within the grace (2/3 of zk_timeout_ms,
// after which the process stops its partitions) and keeps answering 503
// while the process holds no session; once ZooKeeper answers again it
// answers 200.
func TestHealthFollowsZooKeeperSession(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 2}})
	z := zktest.Start(t)
	t.Cleanup(func() { syscall.Kill(z.Pid(), syscall.SIGCONT) }) // before the server's own cleanup
	e := &env{kafka: k, zkAdr: z.Addr, kc: kafkaconf.Default()}
	b := newBackend(t, nil)
	const zkTimeout = 2000
	grace := zkTimeout * time.Millisecond * 2 / 3
	r, admin := e.startAdmin(t, zkTimeout, module("m", "t", b.URL))
	waitFor(t, "both partitions", 10*time.Second, func() bool { return len(r.tr.Status()[0].Partitions) == 2 })
	if code := healthStatus(admin); code != http.StatusOK {
		t.Fatalf("/health %d with a session", code)
	}

	if err := syscall.Kill(z.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	// The process gives the session up 2/3 of zk_timeout_ms after the
	// last answer (TestSessionLossStopsEveryPartitionInTime holds it to
	// that), then stops its partitions: /health says 503 by then. Awaited
	// with room for a loaded host rather than timed here.
	waitFor(t, "the partitions stopped", 10*time.Second, func() bool { return len(r.tr.Status()[0].Partitions) == 0 })
	if code := healthStatus(admin); code != http.StatusServiceUnavailable {
		t.Fatalf("/health %d with every partition stopped, %v after ZooKeeper froze", code, time.Since(frozen))
	}
	took := time.Since(frozen)
	// Frozen past the session timeout: the process holds nothing, and
	// says so every time it is asked.
	for time.Since(frozen) < 2*zkTimeout*time.Millisecond {
		if code := healthStatus(admin); code != http.StatusServiceUnavailable {
			t.Fatalf("/health %d %v after ZooKeeper froze (partitions held: %d)", code, time.Since(frozen),
				len(r.tr.Status()[0].Partitions))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(z.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	thawed := time.Now()
	waitFor(t, "/health 200 once ZooKeeper answers", 30*time.Second, func() bool { return healthStatus(admin) == http.StatusOK })
	t.Logf("/health 503 %v after ZooKeeper froze (grace %v); 200 %v after it answered again", took.Round(time.Millisecond),
		grace, time.Since(thawed).Round(time.Millisecond))
	waitFor(t, "partitions claimed again", 30*time.Second, func() bool { return len(r.tr.Status()[0].Partitions) == 2 })
}
