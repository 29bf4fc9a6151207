// Command faultbench measures what broker faults cost kproxy: it starts a
// 3-broker kfake cluster in-process and kproxy_bin as a process against it,
// and per acks level (1, -1, 0) runs a closed-loop HTTP load (16
// connections, a unique id in every msgpack body) for clean + faults +
// clean seconds. During the faults, every second, the partition leaders
// are shuffled and the produce connection of one broker (in turn) is
// closed on its next produce request. Then it reads the topic back and
// prints per acks level: refusals (non-200 answers, by status), duplicates
// (ids in Kafka more than once), lost (answered 200, not in Kafka), and how
// long after the faults the rate of 200s per 100 ms is back at 90% of the
// clean rate.
//
// With -refused-appends D, the connection closes give way to a leader that
// appends the next acks=-1 produce request of one broker (in turn), answers it
// NOT_LEADER_OR_FOLLOWER (as a leader that lost the leadership before its
// replicas acknowledged the batch; the new leader has it) and refuses every
// produce request so for D (the election): with D above kproxy's
// produce_timeout_ms (-produce-timeout-ms), Kafka's client gives those records
// up, and at acks=-1 went on to number the partition's next batch as the
// given-up one, which the broker took for a retry: answered 200, not written.
//
//	go run ./scripts/faultbench -kproxy bin/kproxy_bin [-conns 16] [-clean 5s] [-faults 10s] [-acks 1,-1,0]
//	go run ./scripts/faultbench -acks -1 -refused-appends 1.5s -produce-timeout-ms 1000
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("faultbench", flag.ContinueOnError)
	bin := fs.String("kproxy", "bin/kproxy_bin", "kproxy binary")
	conns := fs.Int("conns", 16, "HTTP connections, each sending its next request when the last is answered")
	clean := fs.Duration("clean", 5*time.Second, "clean load before and after the faults")
	faults := fs.Duration("faults", 10*time.Second, "faults: every second a leader shuffle and one broker's produce connection closed")
	levels := fs.String("acks", "1,-1,0", "acks levels to run, comma separated")
	partitions := fs.Int("partitions", 4, "partitions of each run's topic")
	keep := fs.Bool("keep", false, "keep the work directory (kproxy's config and log)")
	refused := fs.Duration("refused-appends", 0, "instead of the connection closes: every second one broker (in turn) appends its next acks=-1 produce request, "+
		"answers it NOT_LEADER_OR_FOLLOWER and refuses every acks=-1 produce request so for this long (an election); 0: off")
	timeoutMs := fs.Int("produce-timeout-ms", 0, "kproxy's produce_timeout_ms (0: its default)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ackss := strings.Split(*levels, ",")
	seen := map[string]bool{}
	for _, a := range ackss {
		if a != "1" && a != "-1" && a != "0" || seen[a] {
			fmt.Fprintf(os.Stderr, "faultbench: -acks: %q is not 1, -1 or 0, or is given twice\n", a)
			return 2
		}
		seen[a] = true
	}
	if err := bench(*bin, *conns, *clean, *faults, ackss, int32(*partitions), *keep, *refused, *timeoutMs); err != nil {
		fmt.Fprintln(os.Stderr, "faultbench:", err)
		return 1
	}
	return 0
}

func topicOf(acks string) string {
	return "fault_acks" + strings.NewReplacer("-1", "all").Replace(acks)
}

func bench(bin string, conns int, clean, faults time.Duration, ackss []string, partitions int32, keep bool, refused time.Duration, timeoutMs int) error {
	var topics []string
	for _, a := range ackss {
		topics = append(topics, topicOf(a))
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		return fmt.Errorf("start kfake: %w", err)
	}
	defer cluster.Close()
	layout := leaderLayout(cluster, topics, partitions)

	dir, err := os.MkdirTemp("", "faultbench")
	if err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	if keep {
		defer fmt.Println("kept", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	kp, err := startKproxy(bin, dir, cluster.ListenAddrs(), timeoutMs)
	if err != nil {
		return err
	}
	defer kp.stop()
	var ra *refusedAppends
	if refused > 0 {
		side, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
		if err != nil {
			return fmt.Errorf("client forwarding the appended requests: %w", err)
		}
		defer side.Close()
		ra = &refusedAppends{window: refused, side: side}
	}

	fmt.Printf("kproxy under faults: 3 kfake brokers, %d partitions, %d connections (closed loop), %v clean, %v faults, %v clean\n",
		partitions, conns, clean, faults, clean)
	var results []result
	for _, acks := range ackss {
		fmt.Fprintf(os.Stderr, "acks=%s: %v of load…\n", acks, 2*clean+faults)
		r, err := runLevel(cluster, kp, acks, topicOf(acks), layout, conns, clean, faults, ra)
		if err != nil {
			return fmt.Errorf("acks=%s: %w", acks, err)
		}
		results = append(results, r)
	}
	printTable(results)
	if err := kp.exited(); err != nil {
		return err
	}
	return nil
}

// kproxy is kproxy_bin running as a process.
type kproxy struct {
	cmd   *exec.Cmd
	url   string // http://host:port
	admin string
	log   string
	done  chan error
}

// startKproxy writes a kproxy.yaml for brokers into dir, starts bin with
// it and waits for its /health.
func startKproxy(bin, dir string, brokers []string, timeoutMs int) (*kproxy, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("log_dir: %s\nlog_level: 2\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: 127.0.0.1:%d\nbroker_hosts: [%s]\n",
		filepath.Join(dir, "log"), port, admin, strings.Join(brokers, ", "))
	if timeoutMs > 0 {
		conf += fmt.Sprintf("produce_timeout_ms: %d\n", timeoutMs)
	}
	path := filepath.Join(dir, "kproxy.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	out, err := os.Create(filepath.Join(dir, "kproxy.out"))
	if err != nil {
		return nil, fmt.Errorf("kproxy output file: %w", err)
	}
	defer out.Close() // the process has its own descriptor
	kp := &kproxy{
		cmd:   exec.Command(bin, "-f", path),
		url:   fmt.Sprintf("http://127.0.0.1:%d", port),
		admin: fmt.Sprintf("http://127.0.0.1:%d", admin),
		log:   out.Name(),
		done:  make(chan error, 1),
	}
	kp.cmd.Stdout, kp.cmd.Stderr = out, out
	if err := kp.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { kp.done <- kp.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, err := fasthttp.Get(nil, kp.admin+"/health")
		if err == nil && code == fasthttp.StatusOK {
			return kp, nil
		}
		select {
		case err := <-kp.done:
			kp.done <- err
			return nil, fmt.Errorf("kproxy exited at start (%v); its output: %s", err, kp.log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			kp.stop()
			return nil, fmt.Errorf("kproxy not healthy within 30s; its output: %s", kp.log)
		}
	}
}

// exited reports kproxy's exit if it ended on its own.
func (kp *kproxy) exited() error {
	select {
	case err := <-kp.done:
		kp.done <- err
		return fmt.Errorf("kproxy exited during the run (%v); its output: %s", err, kp.log)
	default:
		return nil
	}
}

// stop sends SIGTERM and waits up to 20 s, then kills.
func (kp *kproxy) stop() {
	_ = kp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-kp.done:
		kp.done <- err
	case <-time.After(20 * time.Second):
		_ = kp.cmd.Process.Kill()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// withTimeout is context.WithTimeout on the background context.
func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// acks0Settled is how many acks=0 records kproxy has delivered or given
// up (kproxy_records_total{acks="0"} + kproxy_acks0_lost_records_total).
func (kp *kproxy) acks0Settled() (int, error) {
	code, b, err := fasthttp.Get(nil, kp.admin+"/metrics")
	if err == nil && code != fasthttp.StatusOK {
		err = fmt.Errorf("status %d", code)
	}
	if err != nil {
		return 0, fmt.Errorf("kproxy /metrics: %w", err)
	}
	n := 0
	for _, name := range []string{`kproxy_records_total{acks="0"} `, "kproxy_acks0_lost_records_total "} {
		i := bytes.Index(b, []byte("\n"+name))
		if i < 0 {
			return 0, fmt.Errorf("kproxy /metrics has no %s", strings.TrimSpace(name))
		}
		line, _, _ := bytes.Cut(b[i+1+len(name):], []byte("\n"))
		v, err := strconv.ParseFloat(string(line), 64)
		if err != nil {
			return 0, fmt.Errorf("kproxy /metrics: %s%s: %w", name, line, err)
		}
		n += int(v)
	}
	return n, nil
}

// awaitAcks0 waits until kproxy has delivered or given up want acks=0
// records in all, for up to limit.
func (kp *kproxy) awaitAcks0(want int, limit time.Duration) error {
	for deadline := time.Now().Add(limit); ; time.Sleep(100 * time.Millisecond) {
		n, err := kp.acks0Settled()
		if err == nil && n >= want {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return err
			}
			return fmt.Errorf("kproxy delivered or gave up %d of the %d acks=0 records answered 200 within %v", n, want, limit)
		}
	}
}
