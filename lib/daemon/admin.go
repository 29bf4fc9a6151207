package daemon

import (
	"net/http"
	"net/http/pprof"
	"time"
)

// AdminServer is the HTTP server of an admin listener serving h (kproxy's
// and ktransfer's /health, /metrics, /status, /debug/pprof). What one
// client can hold there is bounded: a connection is closed after 60 s
// without a request, a request's headers must arrive within 5 s and the
// whole request within 10 s, and an answer must be taken within 60 s
// (profiles: 60 s beyond the seconds asked for).
func AdminServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
}

// HandlePprof adds /debug/pprof/ to mux.
func HandlePprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
