package kmonitor

import (
	"net/http"
	"testing"
	"time"
)

// Handler is the monitor's HTTP handler, for requests made up by a test
// (another client address than this host has).
func (m *Monitor) Handler() http.Handler { return m.srv.Handler }

// DelayOffsetWatcherEnds makes every offset watcher that ends (its znode
// deleted, or gone from its folder's listing) take d more before it drops
// its offset, as on a machine too busy to run it at once, until the test
// and its monitor end (call it before starting the monitor).
func DelayOffsetWatcherEnds(t testing.TB, d time.Duration) {
	offsetWatcherEndDelay.Store(int64(d))
	t.Cleanup(func() { offsetWatcherEndDelay.Store(0) })
}

// DelayOffsetRereads makes every offset watcher woken by a change of its
// znode take d more between seeing its context alive and reading the
// znode again, as on a machine too busy to run it at once, until the test
// and its monitor end (call it before starting the monitor).
func DelayOffsetRereads(t testing.TB, d time.Duration) {
	offsetRereadDelay.Store(int64(d))
	t.Cleanup(func() { offsetRereadDelay.Store(0) })
}

// DelayOffsetFirstReads makes every offset watcher take d more before it
// reads its znode the first time, as a slow ZooKeeper or a busy machine
// can, until the test and its monitor end (call it before starting the
// monitor).
func DelayOffsetFirstReads(t testing.TB, d time.Duration) {
	offsetFirstReadDelay.Store(int64(d))
	t.Cleanup(func() { offsetFirstReadDelay.Store(0) })
}

// DelayConsumersRelists makes the listing of <chroot>/consumers that
// follows a change (a module created or deleted, a module's watchers
// ended) take d more, as on a machine too busy to run it at once, until
// the test and its monitor end (call it before starting the monitor).
func DelayConsumersRelists(t testing.TB, d time.Duration) {
	consumersRelistDelay.Store(int64(d))
	t.Cleanup(func() { consumersRelistDelay.Store(0) })
}

// DelayClaimsRelists makes every watcher of a module's owners/<topic>
// woken by a change take d more between seeing its context alive and
// listing the folder again, as on a machine too busy to run it at once,
// until the test and its monitor end (call it before starting the
// monitor).
func DelayClaimsRelists(t testing.TB, d time.Duration) {
	claimsRelistDelay.Store(int64(d))
	t.Cleanup(func() { claimsRelistDelay.Store(0) })
}

// DelayFolderRelists makes every watcher of a module's offsets/ and
// owners/, and of offsets/<topic>, woken by a change take d more between
// seeing its context alive and listing the folder again, as on a machine
// too busy to run it at once, until the test and its monitor end (call it
// before starting the monitor).
func DelayFolderRelists(t testing.TB, d time.Duration) {
	foldersRelistDelay.Store(int64(d))
	t.Cleanup(func() { foldersRelistDelay.Store(0) })
}

// DelayParentWaits makes every folder watcher that finds its folder
// deleted take d more before it lists the folder's parent to wait for it,
// as on a machine too busy to run it at once, until the test and its
// monitor end (call it before starting the monitor).
func DelayParentWaits(t testing.TB, d time.Duration) {
	parentWaitDelay.Store(int64(d))
	t.Cleanup(func() { parentWaitDelay.Store(0) })
}
