// Command kmonitorbench prepares and measures kmonitor at scale: it writes
// the offsets of many modules into ZooKeeper, then changes offsets one at a
// time and measures how long each change takes to show in /delay, against
// the floor: how long a ZooKeeper watch on the same znode, set by a second
// connection of this program, takes to fire for that change.
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
	// and the time until /delay shows that value is measured, from just
	// before the write, as is the time until a watch on the znode fires.
	watcher, _, err := zk.Connect([]string{*zkAddr}, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		fail(err)
	}
	defer watcher.Close()
	var took, fired []time.Duration
	for i := range *changes {
		m := rand.IntN(*modules)
		module, dir := "m"+strconv.Itoa(m), zklayout.Offsets(*chroot, "m"+strconv.Itoa(m), "bench_t"+strconv.Itoa(m))
		want := int64(i%9 + 1) // lag after the change: the log end of partition 0 is 10
		_, _, ev, err := watcher.GetW(dir + "/0")
		if err != nil {
			fail(err)
		}
		start := time.Now()
		firedIn := make(chan time.Duration, 1)
		go func() {
			e := <-ev
			if e.Type != zk.EventNodeDataChanged {
				firedIn <- -1
				return
			}
			firedIn <- time.Since(start)
		}()
		if _, err := conn.Set(dir+"/0", zklayout.EncodeOffset(10-want), -1); err != nil {
			fail(err)
		}
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
		select {
		case f := <-firedIn:
			if f < 0 {
				fail(fmt.Errorf("change %d of %s: the watch fired for another event", i, module))
			}
			fired = append(fired, f)
		case <-time.After(10 * time.Second):
			fail(fmt.Errorf("change %d of %s: the watch did not fire in 10s", i, module))
		}
	}
	fmt.Printf("offset change visible in /delay: %s (%d changes)\n", quantiles(took), len(took))
	fmt.Printf("ZooKeeper watch fired (floor):   %s\n", quantiles(fired))
}

// quantiles prints the p50, p99 and max of ds, sorting ds.
func quantiles(ds []time.Duration) string {
	slices.Sort(ds)
	return fmt.Sprintf("p50 %v, p99 %v, max %v", ds[len(ds)/2].Round(time.Microsecond),
		ds[len(ds)*99/100].Round(time.Microsecond), ds[len(ds)-1].Round(time.Microsecond))
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
