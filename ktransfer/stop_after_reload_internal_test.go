package ktransfer

import (
	"log/slog"
	"testing"
	"time"
)

// TestStopDuringReloadWaitsForZooKeeperOnce attacks "a SIGTERM during a
// reload ... the stop takes no longer than one without a reload": a
// reload hands a module over while ZooKeeper does not answer, so the
// module's release never ends. The reload's wait gives up at its deadline
// plus two session timeouts and 2 s; then the stop waits for the same
// stuck run. The stop's own wait must end when a stop without the reload
// would have (its deadline plus two session timeouts and 2 s), not wait
// those again from where the reload's ended.
func TestStopDuringReloadWaitsForZooKeeperOnce(t *testing.T) {
	tr := &Transfer{log: slog.New(slog.DiscardHandler)}
	tr.cfg.ZKTimeoutMs = 500
	stuck := make(chan struct{}) // the module's release: never ends
	start := time.Now()
	reloadDeadline := start.Add(100 * time.Millisecond) // the reload began first
	stopDeadline := start.Add(200 * time.Millisecond)   // SIGTERM 100 ms later
	if tr.awaitStop(stuck, func() {}, reloadDeadline) {
		t.Fatal("the reload's wait saw the stuck release end")
	}
	if tr.awaitStop(stuck, func() {}, stopDeadline) {
		t.Fatal("the stop's wait saw the stuck release end")
	}
	alone := stopDeadline.Add(2*tr.sessionTimeout() + 2*time.Second) // a stop without the reload ends here
	if late := time.Since(alone); late > time.Second {
		t.Errorf("the stop ended %v after a stop without the reload would have", late.Round(10*time.Millisecond))
	} else if late < -100*time.Millisecond {
		t.Errorf("the stop gave up on ZooKeeper %v before a stop without the reload would have", (-late).Round(10*time.Millisecond))
	}
}

// TestStopWaitsForAHandOverEndingAfterTheCut: a hand-over that ends after
// the pushes were cut short (its commit and owner-node delete answered
// late by ZooKeeper) is waited for: the stop does not go on without it,
// leaving its partitions to be pushed again.
func TestStopWaitsForAHandOverEndingAfterTheCut(t *testing.T) {
	tr := &Transfer{log: slog.New(slog.DiscardHandler)}
	tr.cfg.ZKTimeoutMs = 500
	released := make(chan struct{})
	cut := make(chan struct{})
	go func() {
		<-cut
		time.Sleep(1500 * time.Millisecond) // within two session timeouts and 2 s of the cut
		close(released)
	}()
	if !tr.awaitStop(released, func() { close(cut) }, time.Now().Add(100*time.Millisecond)) {
		t.Error("the stop went on without a hand-over that ended 1.5 s after the cut")
	}
}
