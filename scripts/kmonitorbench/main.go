// Command kmonitorbench prepares and measures kmonitor at scale: it writes
// the offsets of many modules into ZooKeeper, then changes offsets one at a
// time and measures how long each change takes to show in /delay.
//
//	kmonitorbench -zk 127.0.0.1:2181 -setup -modules 50 -partitions 32
//	kmonitorbench -zk 127.0.0.1:2181 -url http://127.0.0.1:55325 -changes 50
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

func main() {
	fs := flag.NewFlagSet("kmonitorbench", flag.ExitOnError)
	zkAddr := fs.String("zk", "127.0.0.1:2181", "ZooKeeper")
	chroot := fs.String("chroot", "/mq/test_cluster", "cluster chroot")
	cluster := fs.String("cluster", "test_cluster", "cluster name in kmonitor.yaml")
	setup := fs.Bool("setup", false, "write the offsets of every module")
	modules := fs.Int("modules", 50, "modules (module mN reads topic bench_tN)")
	partitions := fs.Int("partitions", 32, "partitions per topic")
	url := fs.String("url", "", "kmonitor base URL: measure change visibility")
	changes := fs.Int("changes", 50, "offset changes to time")
	brokers := fs.String("brokers", "127.0.0.1:9092", "with -setup: write 10 records to partition 0 of every topic here")
	_ = fs.Parse(os.Args[1:])

	conn, _, err := zk.Connect([]string{*zkAddr}, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	if *setup {
		for m := range *modules {
			dir := zklayout.Offsets(*chroot, "m"+strconv.Itoa(m), "bench_t"+strconv.Itoa(m))
			if err := zklayout.CreateAll(conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
				fail(err)
			}
			for p := range *partitions {
				_, err := conn.Create(dir+"/"+strconv.Itoa(p), []byte("0"), 0, zk.WorldACL(zk.PermAll))
				if err != nil && err != zk.ErrNodeExists {
					fail(err)
				}
			}
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(*brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			fail(err)
		}
		var recs []*kgo.Record
		for m := range *modules {
			for range 10 {
				recs = append(recs, &kgo.Record{Topic: "bench_t" + strconv.Itoa(m), Partition: 0, Value: []byte("x")})
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = cl.ProduceSync(ctx, recs...).FirstErr()
		cancel()
		cl.Close()
		if err != nil {
			fail(fmt.Errorf("write the records: %w", err))
		}
		fmt.Printf("offsets written: %d modules x %d partitions; 10 records in partition 0 of each topic\n", *modules, *partitions)
	}
	if *url == "" {
		return
	}
	// The script gave partition 0 of every topic 10 records; each change
	// moves a module's committed offset there so its lag takes a new value,
	// and the time until /delay shows that value is measured.
	var took []time.Duration
	for i := range *changes {
		m := rand.IntN(*modules)
		module, dir := "m"+strconv.Itoa(m), zklayout.Offsets(*chroot, "m"+strconv.Itoa(m), "bench_t"+strconv.Itoa(m))
		want := int64(i%9 + 1) // lag after the change: the log end of partition 0 is 10
		if _, err := conn.Set(dir+"/0", zklayout.EncodeOffset(10-want), -1); err != nil {
			fail(err)
		}
		start := time.Now()
		for {
			if lagOf(*url, *cluster, module) == want {
				break
			}
			if time.Since(start) > 10*time.Second {
				fail(fmt.Errorf("change %d of %s not visible after 10s", i, module))
			}
			time.Sleep(2 * time.Millisecond)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	fmt.Printf("offset change visible in /delay: p50 %v, p99 %v, max %v (%d changes)\n",
		took[len(took)/2].Round(time.Microsecond), took[len(took)*99/100].Round(time.Microsecond),
		took[len(took)-1].Round(time.Microsecond), len(took))
}

func lagOf(url, cluster, module string) int64 {
	resp, err := http.Get(url + "/delay?cluster=" + cluster)
	if err != nil {
		fail(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v map[string]map[string]map[string]*int64
	if err := json.Unmarshal(body, &v); err != nil {
		fail(fmt.Errorf("decode /delay: %w", err))
	}
	if p := v[cluster][module]["0"]; p != nil {
		return *p
	}
	return -1
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kmonitorbench:", err)
	os.Exit(1)
}
