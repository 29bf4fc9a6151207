package bintest

import (
	"net"
	"strconv"
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

// TestFreePortsBelowEphemeralRange: the ports are consecutive, free, and
// below 32768, where the kernel picks no port for a connection.
func TestFreePortsBelowEphemeralRange(t *testing.T) {
	first := FreePorts(t, 3)
	if first < 1024 || first+2 >= 32768 {
		t.Fatalf("ports %d-%d, want them within 1024-32767", first, first+2)
	}
	for p := first; p < first+3; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d of %d-%d: %v", p, first, first+2, err)
		}
		l.Close()
	}
}
