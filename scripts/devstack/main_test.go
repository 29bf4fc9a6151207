package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// stack is a running devstack: its ready file's lines, and stop.
type stack struct {
	ready map[string]string
	stop  func()
}

// startStack runs the devstack binary until stop or the test's end.
func startStack(t *testing.T, args ...string) stack {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	cmd, stderr := bintest.Start(t, bintest.Build(t, "."), append(args, "-ready-file", ready)...)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("devstack exit after SIGTERM: %v; stderr: %s", err, stderr)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("devstack still running 20s after SIGTERM")
			}
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := os.ReadFile(ready)
		if err == nil {
			out := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				k, v, _ := strings.Cut(line, "=")
				out[k] = v
			}
			return stack{out, stop}
		}
		select {
		case err := <-exited:
			exited <- err // for stop
			t.Fatalf("devstack exited before it was ready (%v); stderr: %s", err, stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("devstack not ready after 60s; stderr: %s", stderr)
		}
	}
}

// TestThreeBrokersOnConsecutivePorts: the stack's Kafka is three brokers
// on -kafka-port, +1 and +2, each registered in ZooKeeper with its host
// and port, serving the topics asked for; records written survive a
// restart on the same directory, and topics named at the restart are
// created.
func TestThreeBrokersOnConsecutivePorts(t *testing.T) {
	dir := t.TempDir()
	port := bintest.FreePorts(t, 3)
	args := []string{"-dir", dir, "-zk-port", "0", "-kafka-port", strconv.Itoa(port), "-topics", "t1:4,t2:1"}
	st := startStack(t, args...)
	got := st.ready
	var want []string
	for i := range 3 {
		want = append(want, fmt.Sprintf("127.0.0.1:%d", port+i))
	}
	if got["kafka"] != strings.Join(want, ",") {
		t.Fatalf("kafka=%s, want %s", got["kafka"], strings.Join(want, ","))
	}

	conn := zktest.Connect(t, got["zookeeper"])
	ids := zklayout.BrokerIDs(got["chroot"])
	children, _, err := conn.Children(ids)
	if err != nil {
		t.Fatalf("list %s: %v", ids, err)
	}
	slices.Sort(children)
	if !slices.Equal(children, []string{"0", "1", "2"}) {
		t.Fatalf("%s: %v, want 0 1 2", ids, children)
	}
	for i, id := range children {
		data, _, err := conn.Get(ids + "/" + id)
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			Host string `json:"host"`
			Port int    `json:"port"`
		}
		if err := json.Unmarshal(data, &b); err != nil || b.Host != "127.0.0.1" || b.Port != port+i {
			t.Errorf("%s/%s: %s (%v), want host 127.0.0.1 port %d", ids, id, data, err, port+i)
		}
	}
	discovered, err := zklayout.DiscoverBrokers(conn, got["chroot"])
	if slices.Sort(discovered); err != nil || !slices.Equal(discovered, want) {
		t.Errorf("brokers discovered from ZooKeeper: %v %v, want %v", discovered, err, want)
	}

	// Every broker answers and leads some partitions.
	cl, err := kgo.NewClient(kgo.SeedBrokers(want[2]))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	md, err := adm.Metadata(ctx, "t1", "t2")
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 3 {
		t.Errorf("metadata lists %d brokers: %v", len(md.Brokers), md.Brokers)
	}
	if n := len(md.Topics["t1"].Partitions); n != 4 {
		t.Errorf("t1 has %d partitions, want 4", n)
	}
	// The same leader layout in every topic: partition p on broker p mod 3.
	for topic, td := range md.Topics {
		for p, pd := range td.Partitions {
			if pd.Leader != p%3 {
				t.Errorf("%s/%d: leader %d, want %d", topic, p, pd.Leader, p%3)
			}
		}
	}
	for i, a := range want {
		bc, err := kgo.NewClient(kgo.SeedBrokers(a))
		if err != nil {
			t.Fatal(err)
		}
		err = bc.Ping(ctx)
		bc.Close()
		if err != nil {
			t.Errorf("broker %d at %s: %v", i, a, err)
		}
	}
	var recs []*kgo.Record
	for i := range 40 {
		recs = append(recs, &kgo.Record{Topic: "t1", Key: []byte(strconv.Itoa(i)), Value: []byte("x")})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	cl.Close()

	// Restarted on the same directory: the records are there, and a topic
	// named now is added.
	st.stop()
	args[len(args)-1] += ",t3:2"
	startStack(t, args...)
	// Its own time: the stop and the start took much of the first one.
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl2, err := kgo.NewClient(kgo.SeedBrokers(want[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	ends, err := kadm.NewClient(cl2).ListEndOffsets(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	if n != 40 {
		t.Errorf("after a restart t1 holds %d records, want 40", n)
	}
	md, err = kadm.NewClient(cl2).Metadata(ctx, "t3")
	if err != nil || len(md.Topics["t3"].Partitions) != 2 || md.Topics["t3"].Err != nil {
		t.Errorf("t3 after the restart: %v %+v", err, md.Topics["t3"])
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-brokers", "0"}, {"-kafka-port", "65534"}, {"-topics", "x"}} {
		if code := run(args); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
