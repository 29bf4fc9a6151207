package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestSIGTERMWhileWaitingForKafkaStopsAtOnce: at start kproxy waits for a
// broker to answer, up to kafka.dial_timeout_ms. A SIGTERM then was only
// noticed after that wait, which ended in "start failed" and exit 1: the
// stop took the whole wait and looked like a failure. It must end the
// start at once, say so in the log, and exit 0 as a stop does.
func TestSIGTERMWhileWaitingForKafkaStopsAtOnce(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	silence := make(chan struct{})
	t.Cleanup(func() { close(silence) })
	var held atomic.Int64
	c.ControlKey(int16(kmsg.ApiVersions), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		held.Add(1)
		c.SleepControl(func() { <-silence })
		return nil, nil, false
	})
	dir := t.TempDir()
	f := filepath.Join(dir, "kproxy.yaml")
	os.WriteFile(f, []byte(fmt.Sprintf("log_level: 4\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\nbroker_hosts: [%s]\n"+
		"kafka:\n dial_timeout_ms: 25000\n", freePort(t), c.ListenAddrs()[0])), 0o644)
	cmd, stderr := bintest.Start(t, binary(t), "-f", f) // log_dir unset: the log is standard error
	exited := bintest.Exited(t, cmd)
	bintest.AwaitServing(t, cmd, exited, bintest.StartWithin, stderr, nil, func() error {
		if held.Load() == 0 {
			return errors.New("no broker asked yet")
		}
		return nil
	})
	bintest.StopWithin(t, cmd, exited, 5*time.Second, "while waiting for Kafka (dial_timeout_ms 25000)", stderr)
	if log := stderr.String(); !strings.Contains(log, "stopped while starting") || strings.Contains(log, "start failed") {
		t.Errorf("log does not say the start was stopped: %s", log)
	}
}

// TestSIGTERMWhileReplayingALargeSpoolStopsAtOnce: at start kproxy reads
// every segment its spool_dir holds (left by the run before, Kafka away).
// A large spool takes seconds to read, and a SIGTERM then was noticed only
// once every segment had been read and kproxy had started. It must end
// the start at once, exit 0, and leave the spool exactly as it was:
// nothing cut, removed or rewritten, every record there for the next
// start.
func TestSIGTERMWhileReplayingALargeSpoolStopsAtOnce(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	dir := t.TempDir()
	spoolDir := filepath.Join(dir, "spool")
	segs := largeSpool(t, spoolDir, 4, 1_000_000) // about 1 s to read, unstopped
	before := spoolFiles(t, spoolDir)
	f := filepath.Join(dir, "kproxy.yaml")
	os.WriteFile(f, []byte(fmt.Sprintf("log_level: 4\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\nbroker_hosts: [%s]\n"+
		"spool_dir: %s\n", freePort(t), c.ListenAddrs()[0], spoolDir)), 0o644)
	cmd, stderr := bintest.Start(t, binary(t), "-f", f) // log_dir unset: the log is standard error
	exited := bintest.Exited(t, cmd)
	// Reading: a segment open that is not the last one (the last one
	// stays open for writing once the spool is read).
	fds := fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid)
	bintest.AwaitServing(t, cmd, exited, bintest.StartWithin, stderr, nil, func() error {
		ents, _ := os.ReadDir(fds)
		for _, e := range ents {
			target, _ := os.Readlink(filepath.Join(fds, e.Name()))
			if filepath.Dir(target) == spoolDir && filepath.Ext(target) == ".seg" && target != segs[len(segs)-1] {
				return nil
			}
		}
		return errors.New("no segment but the last one open")
	})
	sent := time.Now()
	// The bound is one segment's read with room for a loaded machine; the
	// log below tells a stopped start from one that read everything.
	bintest.StopWithin(t, cmd, exited, 5*time.Second, "while reading a spool of 4 segments", stderr)
	t.Logf("stopped %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
	if log := stderr.String(); !strings.Contains(log, "stopped while starting") || strings.Contains(log, "start failed") {
		t.Errorf("log does not say the start was stopped: %s", log)
	}
	if after := spoolFiles(t, spoolDir); !maps.Equal(before, after) {
		t.Errorf("spool changed by the stopped start:\nbefore %v\nafter  %v", before, after)
	}
}

// largeSpool fills dir with a spool of n segments of per records each,
// none acknowledged, and returns the segments' paths in order. The spool
// writes the first; the others are copies of it under the names of the
// segments that follow (an entry does not hold its seq).
func largeSpool(t *testing.T, dir string, n, per int) []string {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: dir, SegmentBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]spool.Record, 100_000)
	for i := range recs {
		recs[i] = spool.Record{Topic: "t", Key: []byte("k"), Value: []byte("v")}
	}
	for range per / len(recs) {
		if _, err := sp.Append(recs); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(dir, segName(0))
	segs := []string{first}
	for i := 1; i < n; i++ {
		seg := filepath.Join(dir, segName(uint64(i*per)))
		copyFile(t, first, seg)
		segs = append(segs, seg)
	}
	return segs
}

// segName is the name of the segment whose first entry has seq base.
func segName(base uint64) string { return fmt.Sprintf("%020d.seg", base) }

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// spoolFiles is, per file of dir, its size and SHA-256.
func spoolFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = strconv.Itoa(len(b)) + " bytes, sha256 " + fmt.Sprintf("%x", sha256.Sum256(b))[:16]
	}
	return files
}
