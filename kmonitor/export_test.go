package kmonitor

import "net/http"

// Handler is the monitor's HTTP handler, for requests made up by a test
// (another client address than this host has).
func (m *Monitor) Handler() http.Handler { return m.srv.Handler }
