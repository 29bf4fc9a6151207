package bintest

import (
	"strings"
	"testing"
	"time"
)

// TestOutputReadWhileWritten: a test printing a process's standard error
// while the process still writes it (a failure message) is no data race
// (under -race: os/exec copies into the Output from its own goroutine).
func TestOutputReadWhileWritten(t *testing.T) {
	cmd, stderr := Start(t, "sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line >&2; i=$((i+1)); done")
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(stderr.String(), "line\n") < 2000 {
		if time.Now().After(deadline) {
			t.Fatalf("read %d lines of 2000 in 10 s", strings.Count(stderr.String(), "line\n"))
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}
