package ktransfer_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestDeposedPartitionAbandonsHungPushAtOnce: a process pushes partition 0;
// the push of key "h" (offset 1) gets no answer (read_timeout_ms 0), the
// push of key "s" (offset 0) is held by the backend. Another owner takes
// the partition over (its owner node replaced, its offset written); then
// "s" is answered, and the commit that follows is refused: the partition
// is lost. The hung push of "h" is of no use any more (nothing of a lost
// partition is committed) and the new owner pushes the key meanwhile: its
// connection must be closed at once, as a session loss does, not after
// shutdown_timeout_ms.
func TestDeposedPartitionAbandonsHungPushAtOnce(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	slow := make(chan struct{})
	done := make(chan struct{})
	hStarted := make(chan struct{}, 1)
	hEnded := make(chan struct{}, 1)
	sStarted := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		switch r.URL.Query().Get("key") {
		case "s":
			select {
			case sStarted <- struct{}{}:
			default:
			}
			select {
			case <-slow:
			case <-done:
			}
		case "h":
			select {
			case hStarted <- struct{}{}:
			default:
				return // a later push of h (none expected)
			}
			select {
			case <-r.Context().Done(): // the connection was closed
				hEnded <- struct{}{}
			case <-done:
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) }) // before srv.Close, which waits for the handlers
	m := module("m", "t", srv.URL)
	m.Protocol.ReadTimeoutMs = 0
	cfg := e.config(t, 0, m)
	cfg.ShutdownTimeoutMs = 10000
	tr := startClaimingPartition0(t, cfg)
	e.produce(t, "t", [][2]string{{"s", "v"}, {"h", "v"}})
	for _, c := range []chan struct{}{sStarted, hStarted} {
		select {
		case <-c:
		case <-time.After(10 * time.Second):
			t.Fatal("the pushes of s and h never came")
		}
	}
	takeOverPartition0(t, e)
	if _, err := e.conn.Set(zklayout.Offsets(chroot, "m", "t")+"/0", []byte("0"), -1); err != nil {
		t.Fatal(err)
	}
	close(slow) // s answered: the commit that follows is refused
	select {
	case <-hEnded:
	case <-time.After(3 * time.Second):
		t.Fatal("the lost partition's hung push still holds its connection 3 s after the loss (shutdown_timeout_ms 10000), while the new owner pushes the key")
	}
	waitFor(t, "the deposed process to drop the partition", 5*time.Second, func() bool { return len(tr.Status()[0].Partitions) == 0 })
	if o := e.owners(t, "m", "t")["0"]; !strings.EqualFold(o, "intruder") {
		t.Errorf("owner node now %q, want the new owner's", o)
	}
}
