package daemon

import (
	"context"
	"net/http"
	"time"
)

// StopHTTP stops srv: it waits up to limit for the requests in progress to
// finish, then closes whatever connections remain. A connection that was
// opened but never sent a request (a port scan, a health checker that
// connected late) would otherwise hold net/http's Shutdown for up to five
// seconds; it carries nothing that could be lost, so it is not an error.
// StopHTTP reports whether every request in progress finished in time.
func StopHTTP(srv *http.Server, limit time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
		return false
	}
	return true
}
