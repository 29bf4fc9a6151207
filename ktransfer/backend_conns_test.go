package ktransfer_test

import (
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestBackendListedTwiceKeepsWorkerNumConnections: a backend listed twice
// in backend_servers (twice the share) is one backend: it gets at most
// worker_num keep-alive connections, as README says. Each entry had a
// connection pool of its own, of worker_num each: the backend held up to
// twice worker_num connections open.
func TestBackendListedTwiceKeepsWorkerNumConnections(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	var mu sync.Mutex
	open, most := 0, 0
	var pushed atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An answer taking 0-4 ms: the two workers' pushes overlap
		// in every way over the round robin.
		time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
		pushed.Add(1)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case http.StateNew:
			open++
			most = max(most, open)
		case http.StateClosed, http.StateHijacked:
			open--
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	const workers, n = 2, 300
	m := module("m", "t", srv.URL, srv.URL)
	m.WorkerNum = workers
	recs := make([][2]string, n)
	for i := range recs {
		recs[i] = [2]string{"k" + strconv.Itoa(i), "v"}
	}
	e.produce(t, "t", recs)
	e.start(t, m)
	waitFor(t, "every record pushed", 20*time.Second, func() bool { return pushed.Load() >= n })
	mu.Lock()
	defer mu.Unlock()
	if most > workers {
		t.Errorf("the backend listed twice had %d connections open at once; worker_num is %d", most, workers)
	}
}
