// Command devstack runs the development stack: a private ZooKeeper server
// and a kfake Kafka cluster of three brokers that keeps its records in a
// data directory, each broker registered under <chroot>/brokers/ids/<id> as
// a ZooKeeper-mode broker would. Broker i listens on 127.0.0.1 at
// -kafka-port + i (9092, 9093, 9094 by default). It prints the addresses,
// and stops everything on SIGINT/SIGTERM.
//
//	go run ./scripts/devstack -dir .devstack -topics test_topic:4
package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zkserver"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	dir := fs.String("dir", ".devstack", "data directory (ZooKeeper data, Kafka log segments)")
	zkPort := fs.Int("zk-port", 2181, "ZooKeeper client port on 127.0.0.1 (0: any free port)")
	kafkaPort := fs.Int("kafka-port", 9092, "first Kafka broker's port on 127.0.0.1; broker i listens on kafka-port+i (0: any free ports)")
	brokers := fs.Int("brokers", 3, "number of Kafka brokers")
	chroot := fs.String("chroot", "/mq/test_cluster", "the cluster's ZooKeeper chroot")
	topics := fs.String("topics", "test_topic:4", "topics to create, name:partitions, comma separated")
	noZK := fs.Bool("no-zk", false, "run only the Kafka brokers")
	ready := fs.String("ready-file", "", "write the addresses to this file once everything is up")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *brokers < 1 {
		fmt.Fprintln(os.Stderr, "devstack: -brokers: must be >= 1, got", *brokers)
		return 2
	}
	if *kafkaPort < 0 || *kafkaPort+*brokers-1 > 65535 {
		fmt.Fprintf(os.Stderr, "devstack: -kafka-port: %d brokers from port %d do not fit below 65536\n", *brokers, *kafkaPort)
		return 2
	}
	wantTopics, err := parseTopics(*topics)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstack: -topics:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var zkAddr string
	var conn *zk.Conn
	var zs *zkserver.Server
	zsPort := 0
	if !*noZK {
		var err error
		zs, err = zkserver.Start(zkserver.Config{Dir: filepath.Join(*dir, "zookeeper"), Port: *zkPort})
		if err != nil {
			fmt.Fprintln(os.Stderr, "devstack:", err)
			return 1
		}
		defer func() { zs.Stop() }()
		zkAddr = zs.Addr
		_, p, _ := net.SplitHostPort(zs.Addr)
		zsPort, _ = strconv.Atoi(p)
	}

	ports := make([]int, *brokers)
	for i := range ports {
		if *kafkaPort != 0 {
			ports[i] = *kafkaPort + i
		}
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(*brokers), kfake.Ports(ports...), kfake.DataDir(filepath.Join(*dir, "kafka")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstack: start kafka:", err)
		return 1
	}
	// Shutdown order: 1. drop the broker registrations (the ZooKeeper
	// session), 2. close Kafka (flushes segments), 3. stop ZooKeeper.
	defer cluster.Close()
	kafkaAddrs := cluster.ListenAddrs()
	// Created through the protocol, so that topics named on a restart over
	// an existing data directory are added too (kfake seeds topics only on
	// a fresh one).
	if err := ensureTopics(kafkaAddrs, wantTopics); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		return 1
	}
	// Partition p's leader is broker p mod -brokers in every topic: kfake
	// places new partitions at random, and a benchmark comparing two
	// topics would otherwise compare two leader layouts.
	for topic, n := range wantTopics {
		for p := range n {
			if err := cluster.MoveTopicPartition(topic, p, p%int32(*brokers)); err != nil {
				fmt.Fprintln(os.Stderr, "devstack: place the leader of", topic, p, ":", err)
				return 1
			}
		}
	}

	if zkAddr != "" {
		var events <-chan zk.Event
		conn, events, err = zk.Connect([]string{zkAddr}, 10*time.Second, zk.WithLogInfo(false))
		if err != nil {
			fmt.Fprintln(os.Stderr, "devstack: connect to zookeeper:", err)
			return 1
		}
		defer conn.Close()
		if err := registerWhenConnected(conn, *chroot, kafkaAddrs); err != nil {
			fmt.Fprintln(os.Stderr, "devstack:", err)
			return 1
		}
		go registerAgain(conn, events, conn.SessionID(), *chroot, kafkaAddrs)
	}

	summary := fmt.Sprintf("kafka=%s\nzookeeper=%s\nchroot=%s\npid=%d\n", strings.Join(kafkaAddrs, ","), zkAddr, *chroot, os.Getpid())
	fmt.Print(summary)
	if *ready != "" {
		// Whole or not at all: a script polling for the file never reads
		// it empty or cut.
		tmp := *ready + ".tmp"
		err := os.WriteFile(tmp, []byte(summary), 0o644)
		if err == nil {
			err = os.Rename(tmp, *ready)
		}
		if err != nil {
			os.Remove(tmp)
			fmt.Fprintln(os.Stderr, "devstack:", err)
			return 1
		}
		defer os.Remove(*ready)
	}
	fmt.Println("devstack: up; Ctrl-C stops it, SIGHUP restarts ZooKeeper")
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	for {
		select {
		case <-ctx.Done():
			fmt.Println("devstack: stopping")
			return 0
		case <-hup:
			if zs == nil {
				continue
			}
			fmt.Println("devstack: restarting zookeeper")
			zs.Stop()
			nzs, err := zkserver.Start(zkserver.Config{Dir: filepath.Join(*dir, "zookeeper"), Port: zsPort})
			if err != nil {
				fmt.Fprintln(os.Stderr, "devstack: restart zookeeper:", err)
				return 1
			}
			zs = nzs
			fmt.Println("devstack: zookeeper back")
		}
	}
}

// registerAgain registers the brokers again in each new session, as a
// ZooKeeper-mode Kafka broker does: the registrations are ephemeral, and
// went with the session ZooKeeper expired (the stack paused past it). A
// failed registration is tried again every second while the session
// lasts. It returns when the client closes.
func registerAgain(conn *zk.Conn, events <-chan zk.Event, registered int64, chroot string, addrs []string) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var failed error
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-tick.C: // the client drops events nobody read: its state is looked at too
		}
		session := conn.SessionID()
		if conn.State() != zk.StateHasSession || session == registered {
			continue
		}
		if err := register(conn, chroot, addrs); err != nil {
			if failed == nil || err.Error() != failed.Error() {
				fmt.Fprintln(os.Stderr, "devstack: register the brokers in the new zookeeper session (tried again every second):", err)
			}
			failed = err
			continue
		}
		registered, failed = session, nil
		fmt.Println("devstack: the zookeeper session expired; brokers registered again")
	}
}

// registerWhenConnected registers broker i (at addrs[i]) under
// <chroot>/brokers/ids/<i> once the session exists. Registrations left by an
// earlier run whose session has not expired yet are replaced.
func registerWhenConnected(conn *zk.Conn, chroot string, addrs []string) error {
	deadline := time.Now().Add(15 * time.Second)
	for conn.State() != zk.StateHasSession {
		if time.Now().After(deadline) {
			return fmt.Errorf("no zookeeper session after 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return register(conn, chroot, addrs)
}

// register registers broker i (at addrs[i]) under <chroot>/brokers/ids/<i>,
// replacing what is there.
func register(conn *zk.Conn, chroot string, addrs []string) error {
	ids := zklayout.BrokerIDs(chroot)
	stale, _, err := conn.Children(ids)
	if err != nil && err != zk.ErrNoNode {
		return fmt.Errorf("list %s: %w", ids, err)
	}
	for _, id := range stale {
		if err := conn.Delete(ids+"/"+id, -1); err != nil && err != zk.ErrNoNode {
			return fmt.Errorf("remove stale %s/%s: %w", ids, id, err)
		}
	}
	for id, addr := range addrs {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("broker %d address %q: %w", id, addr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return fmt.Errorf("broker %d address %q: %w", id, addr, err)
		}
		if err := zklayout.RegisterBroker(conn, chroot, int32(id), host, p); err != nil {
			return fmt.Errorf("register broker %d: %w", id, err)
		}
	}
	return nil
}

// parseTopics reads name:partitions,… into a map.
func parseTopics(spec string) (map[string]int32, error) {
	out := map[string]int32{}
	for _, t := range strings.Split(spec, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		name, n, ok := strings.Cut(t, ":")
		parts, err := strconv.Atoi(n)
		if !ok || err != nil || parts < 1 || parts > 1<<20 || name == "" {
			return nil, fmt.Errorf("%q: want name:partitions", t)
		}
		out[name] = int32(parts)
	}
	return out, nil
}

// ensureTopics creates the topics of want that the cluster does not have;
// a topic that exists with another partition count is left as it is, and
// said so.
func ensureTopics(brokers []string, want map[string]int32) error {
	if len(want) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	have, err := adm.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		parts := want[name]
		if td, ok := have[name]; ok {
			if n := int32(len(td.Partitions)); n != parts {
				fmt.Printf("devstack: topic %s kept with its %d partitions (asked: %d)\n", name, n, parts)
			}
			continue
		}
		if _, err := adm.CreateTopic(ctx, parts, -1, nil, name); err != nil {
			return fmt.Errorf("create topic %s: %w", name, err)
		}
	}
	return nil
}
