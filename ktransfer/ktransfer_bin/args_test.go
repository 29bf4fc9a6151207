package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestStrayArgumentRefused: a word that is not a flag ends Go's flag
// parsing, so `-f FILE stray -check` started the daemon (pushing records)
// instead of checking the file. It is refused with exit 2, before the
// file is read.
func TestStrayArgumentRefused(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	s := newSetupOn(t, k, kafkaconf.Default(), "", 10)
	bin := bintest.Build(t, ".")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-f", s.conf, "stray", "-check"}, `unexpected argument "stray"`},
		// The file without -f: the default one would be read instead.
		{[]string{s.conf}, `unexpected argument "` + s.conf + `"`},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), bintest.StartWithin) // the refusal is at start
		cmd := exec.CommandContext(ctx, bin, c.args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		_ = cmd.Run()
		cancel()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and %q", c.args, code, stdout.String(), stderr.String(), c.want)
		}
	}
	if _, total, _ := s.backend.snapshot(); total != 0 {
		t.Errorf("the backend got %d pushes: a daemon ran", total)
	}
}

// TestEmptyReplayModuleRefused: -replay-dead-letters with an empty module
// name (a script's variable left unset: -replay-dead-letters "$MODULE")
// is refused with exit 2 and a reason that says so. It was taken for no
// replay, and the daemon's own flag parsing answered "flag provided but
// not defined: -replay-dead-letters", a flag that is defined.
func TestEmptyReplayModuleRefused(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	s := newSetupOn(t, k, kafkaconf.Default(), "", 10)
	bin := bintest.Build(t, ".")
	for _, args := range [][]string{
		{"-f", s.conf, "-replay-dead-letters", ""},
		{"-f", s.conf, "-replay-dead-letters="},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), bintest.StartWithin) // the refusal is at start
		cmd := exec.CommandContext(ctx, bin, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		_ = cmd.Run()
		cancel()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(stderr.String(), "-replay-dead-letters needs a module name") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and \"-replay-dead-letters needs a module name\"", args, code, stdout.String(), stderr.String())
		}
	}
	if _, total, _ := s.backend.snapshot(); total != 0 {
		t.Errorf("the backend got %d pushes: a daemon ran", total)
	}
}

// TestEmptySinceWithoutReplayRefused: -since with an empty value and no
// -replay-dead-letters is refused as a -since without a replay, as with a
// value; it was answered "flag provided but not defined: -since".
func TestEmptySinceWithoutReplayRefused(t *testing.T) {
	bin := bintest.Build(t, ".")
	ctx, cancel := context.WithTimeout(context.Background(), bintest.StartWithin) // the refusal is at start
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-f", "no-such.yaml", "-since", "")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(stderr.String(), "-since needs -replay-dead-letters MODULE") {
		t.Errorf("exit %d, stderr %q; want 2 and \"-since needs -replay-dead-letters MODULE\"", code, stderr.String())
	}
}
