package ktransfer

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestHealthIsTheProcessSessionView: the ZooKeeper client holds a session,
// but the process has given it up (what watchSession's give-up leaves:
// every partition stopped until it handles a new session — which it can
// miss for a while, as go-zookeeper drops session events while its
// six-event channel is full, e.g. when a give-up waits for pushes in
// flight). /health answers 503 then, as it does without a session, and
// 200 once the process counts on its session again.
func TestHealthIsTheProcessSessionView(t *testing.T) {
	conn := zktest.ConnectSession(t, zktest.Start(t).Addr, 10*time.Second)
	tr := &Transfer{metrics: newMetrics(), zk: conn, zkUp: true}
	health := func() int {
		w := httptest.NewRecorder()
		tr.adminMux().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/health", nil))
		return w.Code
	}
	if code := health(); code != http.StatusOK {
		t.Fatalf("/health %d with a session", code)
	}
	tr.zkMu.Lock()
	tr.zkUp = false // given up
	tr.zkMu.Unlock()
	if s := conn.State(); s != zk.StateHasSession {
		t.Fatalf("client state %v: the test needs a client with a session", s)
	}
	if code := health(); code != http.StatusServiceUnavailable {
		t.Errorf("/health %d while the process has given its session up (client state %v), want 503", code, conn.State())
	}
	tr.zkMu.Lock()
	tr.zkUp = true
	tr.zkMu.Unlock()
	if code := health(); code != http.StatusOK {
		t.Errorf("/health %d once the session is the process's again, want 200", code)
	}
}
