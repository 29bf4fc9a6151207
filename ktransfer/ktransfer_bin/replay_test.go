package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestReplayFlag runs ktransfer_bin -replay-dead-letters: it pushes the
// module's dead letters to its backend, prints its report and exits 0;
// a module that is not enabled, a bad -since, -since alone and a stray
// argument (which would end the flags before a -since) are refused with
// their reason.
func TestReplayFlag(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}, {Name: "dlq", Partitions: 1}})
	s := newSetupOn(t, k, kafkaconf.Default(), "", 0)
	module := filepath.Join(s.dir, "modules", "m.yaml")
	text, _ := os.ReadFile(module)
	os.WriteFile(module, append(text, "dead_letter_topic: dlq\n"...), 0o644)
	var dead []*kgo.Record
	for i := range 5 { // as module.deadLetter writes them
		dead = append(dead, &kgo.Record{Topic: "dlq", Key: []byte("k"), Value: []byte("v"), Headers: []kgo.RecordHeader{
			{Key: "ktransfer-module", Value: []byte("m")}, {Key: "ktransfer-reason", Value: []byte("status 400")},
			{Key: "ktransfer-topic", Value: []byte("t")}, {Key: "ktransfer-partition", Value: []byte("0")},
			{Key: "ktransfer-offset", Value: []byte(strconv.Itoa(100 + i))}}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkatest.Client(t, k, kafkaconf.Default()).ProduceSync(ctx, dead...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	bin := bintest.Build(t, ".")
	run := func(args ...string) (int, string, string) {
		cmd := exec.Command(bin, append([]string{"-f", s.conf}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		_ = cmd.Run()
		return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
	}
	code, out, errText := run("-replay-dead-letters", "m")
	if code != 0 || !strings.HasPrefix(out, "replayed 5, given up 0, skipped 0, other modules' 0, without original headers 0, without value 0, past the end 0, deleted before read 0, in ") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errText)
	}
	if distinct, total, _ := s.backend.snapshot(); distinct != 5 || total != 5 {
		t.Errorf("the backend got %d pushes of %d records, want 5 of 5", total, distinct)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if code, out, _ := run("-replay-dead-letters", "m", "-since", future); code != 0 || !strings.HasPrefix(out, "replayed 0,") {
		t.Errorf("-since an hour ahead: exit %d, stdout %q", code, out)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-replay-dead-letters", "nope"}, 1, `-replay-dead-letters nope: no such module in module_enabled ["m"]`},
		{[]string{"-replay-dead-letters", "m", "-since", "yesterday"}, 2, `-since "yesterday": not an RFC 3339 time`},
		{[]string{"-since", future}, 2, "-since needs -replay-dead-letters MODULE"},
		// A script's variable left unset (-since "$SINCE"): every dead
		// letter was replayed again, not refused as a bad time.
		{[]string{"-replay-dead-letters", "m", "-since", ""}, 2, `-since "": not an RFC 3339 time`},
		// A stray word ends the flags: the -since after it was ignored and
		// every dead letter replayed again.
		{[]string{"-replay-dead-letters", "m", "again", "-since", future}, 2, `unexpected argument "again"`},
		{[]string{"-replay-dead-letters", "m", future}, 2, `unexpected argument "` + future + `"`},
	} {
		if code, _, errText := run(c.args...); code != c.code || !strings.Contains(errText, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errText, c.code, c.want)
		}
	}
	if _, total, _ := s.backend.snapshot(); total != 5 {
		t.Errorf("the backend got %d pushes, want the first replay's 5 alone", total)
	}
	// Every dead letter given up again (no backend listens, no retry):
	// a script that checks the exit status must not take that for a
	// replay done. Exit 3, the report on standard output as before.
	text, _ = os.ReadFile(module)
	noBackend := regexp.MustCompile(`backend_servers: \[[^\]]*\]`).ReplaceAllString(string(text), "max_retry_times: 0\nbackend_servers: [127.0.0.1:1]")
	os.WriteFile(module, []byte(noBackend), 0o644)
	if code, out, errText := run("-replay-dead-letters", "m"); code != 3 || !strings.HasPrefix(out, "replayed 0, given up 5,") ||
		!strings.Contains(errText, "5 dead letters given up again") {
		t.Errorf("replay with no backend: exit %d, stdout %q, stderr %q; want 3, given up 5 and the reason", code, out, errText)
	}
	// Dead letters deleted (retention) while the replay runs, before it
	// read them: lost, and not a replay done either. The first fetch, at
	// the log start, is held while offsets 0 to 6 are deleted; the
	// replay, which listed 0 to 9, then reads 7 to 9.
	os.WriteFile(module, text, 0o644)
	var deleted atomic.Bool
	k.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		for _, rt := range req.(*kmsg.FetchRequest).Topics {
			for _, rp := range rt.Partitions {
				if rp.FetchOffset == 0 && deleted.CompareAndSwap(false, true) {
					k.SleepControl(func() {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						o := kadm.Offsets{}
						o.Add(kadm.Offset{Topic: "dlq", Partition: 0, At: 7})
						if res, err := kadm.NewClient(kafkatest.Client(t, k, kafkaconf.Default())).DeleteRecords(ctx, o); err != nil || res.Error() != nil {
							t.Errorf("delete records: %v %v", err, res.Error())
						}
					})
					k.DropControl()
				}
			}
		}
		return nil, nil, false
	})
	if err := kafkatest.Client(t, k, kafkaconf.Default()).ProduceSync(ctx, dead...).FirstErr(); err != nil { // offsets 5 to 9
		t.Fatal(err)
	}
	if code, out, errText := run("-replay-dead-letters", "m"); code != 3 || !strings.HasPrefix(out, "replayed 3, given up 0,") ||
		!strings.Contains(out, "deleted before read 7,") || !strings.Contains(errText, "7 dead letters were deleted (retention) before the replay read them") {
		t.Errorf("replay losing 7 dead letters to retention: exit %d, stdout %q, stderr %q; want 3, replayed 3, deleted before read 7 and the reason", code, out, errText)
	}
}

// TestReplayStopsOnHangup: a replay whose terminal closes (SIGHUP) stops
// as on an interrupt: the push under way gets shutdown_timeout_ms, and it
// exits 1 with its report so far. Before, the hangup killed it at once,
// without a word.
func TestReplayStopsOnHangup(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}, {Name: "dlq", Partitions: 1}})
	s := newSetupOn(t, k, kafkaconf.Default(), "shutdown_timeout_ms: 500\n", 0)
	// A backend that takes the push and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	pushed := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go func() {
				if _, err := c.Read(make([]byte, 1)); err == nil {
					select {
					case pushed <- struct{}{}:
					default:
					}
				}
			}()
		}
	}()
	module := filepath.Join(s.dir, "modules", "m.yaml")
	text, _ := os.ReadFile(module)
	text = regexp.MustCompile(`backend_servers: \[[^\]]*\]`).ReplaceAll(text, []byte("backend_servers: ["+ln.Addr().String()+"]"))
	os.WriteFile(module, append(text, "dead_letter_topic: dlq\n"...), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dead := &kgo.Record{Topic: "dlq", Key: []byte("k"), Value: []byte("v"), Headers: []kgo.RecordHeader{
		{Key: "ktransfer-module", Value: []byte("m")}, {Key: "ktransfer-reason", Value: []byte("status 400")},
		{Key: "ktransfer-topic", Value: []byte("t")}, {Key: "ktransfer-partition", Value: []byte("0")},
		{Key: "ktransfer-offset", Value: []byte("0")}}}
	if err := kafkatest.Client(t, k, kafkaconf.Default()).ProduceSync(ctx, dead).FirstErr(); err != nil {
		t.Fatal(err)
	}
	bin := bintest.Build(t, ".")
	// A test run started ignoring hangups (nohup go test) would pass that
	// on to the replay: caught here, SIGHUP is reset in the children.
	caught := make(chan os.Signal, 1)
	signal.Notify(caught, syscall.SIGHUP)
	defer signal.Stop(caught)
	// replayHungUp starts the replay (through nohup: hangups ignored),
	// waits for its push and sends it SIGHUP; it returns the command, a
	// channel closed once it exited, and its standard error.
	replayHungUp := func(nohup bool) (*exec.Cmd, chan struct{}, *bytes.Buffer) {
		args := []string{bin, "-f", s.conf, "-replay-dead-letters", "m"}
		if nohup {
			args = append([]string{"nohup"}, args...) // nohup execs the binary: the same process
		}
		cmd := exec.Command(args[0], args[1:]...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		select {
		case <-pushed:
		case <-exited:
			t.Fatalf("the replay ended before its push: stdout %q, stderr %q", stdout.String(), stderr.String())
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Fatalf("the dead letter was never pushed: stderr %q", stderr.String())
		}
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		return cmd, exited, &stderr
	}
	cmd, exited, stderr := replayHungUp(false)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("the replay did not stop within 15 s of a hangup: stderr %q", stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr.String(), "so far: replayed 0,") {
		t.Errorf("replay after a hangup: %v (exit %d), stderr %q; want exit 1 and its report so far", cmd.ProcessState, code, stderr.String())
	}

	// Started with hangups ignored (nohup), it goes on: a hangup must not
	// stop it (it did once SIGHUP was caught: Notify undoes the ignoring).
	cmd, exited, stderr = replayHungUp(true)
	select {
	case <-exited:
		t.Fatalf("a replay started under nohup stopped at a hangup: %v, stderr %q", cmd.ProcessState, stderr.String())
	case <-time.After(2 * time.Second):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("the replay did not stop within 15 s of SIGTERM: stderr %q", stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("replay under nohup after SIGTERM: exit %d, stderr %q; want 1", code, stderr.String())
	}
}
