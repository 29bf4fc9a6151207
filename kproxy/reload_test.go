package kproxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// The tests in this file attack the reload (README "Reloading clients"):
// what a reload applies takes effect for every way in, what it does not
// apply stays, and a refused file changes nothing.

// reloadable is a kproxy started from a file the test rewrites, with gRPC.
type reloadable struct {
	*gproxy
	kafka *kfake.Cluster
	file  string
	head  string // the file's keys other than clients and topics_allowed
}

func startReloadable(t *testing.T, clients string) *reloadable {
	t.Helper()
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}, {Name: "other", Partitions: 1},
		{Name: "slow", Partitions: 1}, {Name: "t2", Partitions: 1}})
	r := &reloadable{kafka: c, file: filepath.Join(t.TempDir(), "kproxy.yaml")}
	r.head = fmt.Sprintf("port: %d\nlisten_host: 127.0.0.1\nadmin_addr: 127.0.0.1:0\ngrpc_port: %d\nbroker_hosts: [%s]\n"+
		"read_timeout_ms: 2000\nwrite_timeout_ms: 2000\n", freeTCPPort(t), freeTCPPort(t), strings.Join(c.ListenAddrs(), ", "))
	r.write(t, clients)
	cfg, err := kproxy.LoadConfig(r.file)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := kproxy.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("kproxy.New: %v", err)
	}
	stop := runtest.Start(t, srv.Run, 30*time.Second)
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r.gproxy = &gproxy{proxy: &proxy{srv: srv, url: "http://" + srv.Addr().String(), stop: stop},
		conn: conn, kp: kproxypb.NewKProxyClient(conn)}
	return r
}

// write makes the file's clients (and topics_allowed) rest.
func (r *reloadable) write(t *testing.T, rest string) {
	t.Helper()
	if err := os.WriteFile(r.file, []byte(r.head+rest), 0o600); err != nil {
		t.Fatal(err)
	}
}

// commitAs posts one record to /commit as user and returns the status.
func (r *reloadable) commitAs(t *testing.T, topic, user, secret string) int {
	t.Helper()
	a := r.postBatch(t, "topic="+topic, "", mpBatch(t, []brec{{value: mp(t, 1)}}), user, secret)
	return a.code
}

// TestReloadClientsEveryWayIn: after a reload that changes a client's
// secret, removes another, narrows a third's topics and adds topics_allowed,
// /batch, gRPC Produce and an open ProduceStream (opened before, its next
// request checked again) follow the new rules.
func TestReloadClientsEveryWayIn(t *testing.T) {
	r := startReloadable(t, "clients:\n"+
		" - {name: shop, secret: one, topics: ['*']}\n"+
		" - {name: gone, secret: g, topics: ['*']}\n"+
		" - {name: wide, secret: w, topics: ['*']}\n")
	for _, u := range [][2]string{{"shop", "one"}, {"gone", "g"}, {"wide", "w"}} {
		if code := r.commitAs(t, "other", u[0], u[1]); code != 200 {
			t.Fatalf("%s before the reload: %d", u[0], code)
		}
	}
	goneStream := r.stream(t, as(t.Context(), "gone", "g"))
	shopStream := r.stream(t, as(t.Context(), "shop", "one"))
	for _, s := range []grpc.BidiStreamingClient[kproxypb.ProduceRequest, kproxypb.ProduceResponse]{goneStream, shopStream} {
		if err := s.Send(&kproxypb.ProduceRequest{Id: 1, Topic: topic, Records: []*kproxypb.Record{grec("", "k", "v")}}); err != nil {
			t.Fatal(err)
		}
		if resp, err := s.Recv(); err != nil || resp.Status != 200 {
			t.Fatalf("stream before the reload: %v %v", resp, err)
		}
	}

	r.write(t, "topics_allowed: ["+topic+", other]\nclients:\n"+
		" - {name: shop, secret: two, topics: ['*']}\n"+
		" - {name: wide, secret: w, topics: ["+topic+"]}\n")
	if err := r.srv.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if v := r.metric(t, `kproxy_config_reloads_total{result="ok"}`); v != "1" {
		t.Errorf(`kproxy_config_reloads_total{result="ok"} = %s, want 1`, v)
	}
	for _, c := range []struct {
		topic, user, secret string
		want                int
	}{
		{"other", "shop", "one", 401}, {"other", "shop", "two", 200},
		{"other", "gone", "g", 401},
		{"other", "wide", "w", 403}, {topic, "wide", "w", 200},
	} {
		if code := r.commitAs(t, c.topic, c.user, c.secret); code != c.want {
			t.Errorf("/batch to %s as %s:%s after the reload: %d, want %d", c.topic, c.user, c.secret, code, c.want)
		}
		_, err := r.produce(t, as(context.Background(), c.user, c.secret), &kproxypb.ProduceRequest{Id: 1, Topic: c.topic, Records: []*kproxypb.Record{grec("", "k", "v")}})
		got := 200
		if err != nil {
			got = 0
			if rf := refusalOf(err); rf.detail != nil {
				got = int(rf.detail.Status)
			} else if strings.Contains(err.Error(), "Unauthenticated") {
				got = 401
			}
		}
		if got != c.want {
			t.Errorf("Produce to %s as %s:%s after the reload: %d (%v), want %d", c.topic, c.user, c.secret, got, err, c.want)
		}
	}
	for _, c := range []struct {
		name string
		s    grpc.BidiStreamingClient[kproxypb.ProduceRequest, kproxypb.ProduceResponse]
		want int32
	}{{"a removed client's", goneStream, 401}, {"a client whose secret changed", shopStream, 401}} {
		if err := c.s.Send(&kproxypb.ProduceRequest{Id: 2, Topic: topic, Records: []*kproxypb.Record{grec("", "k", "v")}}); err != nil {
			t.Fatal(err)
		}
		resp, err := c.s.Recv()
		if err != nil || resp.Status != c.want {
			t.Errorf("%s stream opened before the reload, next request: %v %v, want status %d", c.name, resp, err, c.want)
		}
	}
}

// TestReloadKeepsRateLimitBuckets: a reload that leaves a client's
// rate_limit and burst as they were does not refill its burst (a client
// cannot send twice its burst by having kproxy reloaded); one that changes
// them starts the client on the new limits from what it had left: a new
// burst is not handed out whole (a client throttled by a lowered limit got
// a full burst at the reload), and a new rate applies from the reload.
func TestReloadKeepsRateLimitBuckets(t *testing.T) {
	clients := "clients:\n - {name: slow, secret: s, topics: ['*'], rate_limit: 0.001, burst: 1}\n" +
		" - {name: other, secret: o, topics: ['*'], rate_limit: 0.001, burst: 1}\n" +
		" - {name: quick, secret: q, topics: ['*'], rate_limit: 0.001, burst: 1}\n"
	r := startReloadable(t, clients)
	for _, u := range []string{"slow", "other", "quick"} {
		secret := u[:1]
		if code := r.commitAs(t, topic, u, secret); code != 200 {
			t.Fatalf("%s's first record: %d", u, code)
		}
		if code := r.commitAs(t, topic, u, secret); code != 429 {
			t.Fatalf("%s's second record: %d, want 429", u, code)
		}
	}
	r.write(t, "clients:\n - {name: slow, secret: s, topics: ['*'], rate_limit: 0.001, burst: 1}\n"+
		" - {name: other, secret: o, topics: ['*'], rate_limit: 0.001, burst: 2}\n"+
		" - {name: quick, secret: q, topics: ['*'], rate_limit: 1000, burst: 1}\n")
	if err := r.srv.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if code := r.commitAs(t, topic, "slow", "s"); code != 429 {
		t.Errorf("slow (rate_limit unchanged) after the reload: %d, want 429: the reload refilled its bucket", code)
	}
	if code := r.commitAs(t, topic, "other", "o"); code != 429 {
		t.Errorf("other (burst raised to 2, none left) after the reload: %d, want 429: the reload handed out a new burst", code)
	}
	time.Sleep(10 * time.Millisecond) // 10 records' worth at 1000/s
	if code := r.commitAs(t, topic, "quick", "q"); code != 200 {
		t.Errorf("quick (rate_limit raised to 1000/s) 10 ms after the reload: %d, want 200", code)
	}
}

// TestReloadRefusedChangesNothing: a file that does not load is refused
// whole, counted, and the clients in force stay.
func TestReloadRefusedChangesNothing(t *testing.T) {
	r := startReloadable(t, "clients:\n - {name: shop, secret: one, topics: ['*']}\n")
	plain := filepath.Join(t.TempDir(), "plainfile")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"clients:\n - {name: shop, secret: two, topics: ['*']}\n - {name: shop, secret: x, topics: ['*']}\n", // a name twice
		"clients:\n - {name: shop, secret: two, topics: ['*']\n",                                             // YAML cut short
		"clients:\n - {name: shop, secret: two, topics: ['*']}\nreq_pool_size: 0\n",                          // another key bad
		// A log_dir the start (and -check) refuses: before, the reload
		// applied the rest and said only that log_dir needs a restart.
		"clients:\n - {name: shop, secret: two, topics: ['*']}\nlog_dir: " + plain + "/log\n",
		// No clients: authentication off. Before, the reload applied it,
		// and logged only clients=0; every request was then taken.
		"topics_allowed: [" + topic + "]\n",
	} {
		r.write(t, bad)
		if err := r.srv.Reload(); err == nil || !strings.Contains(err.Error(), r.file) {
			t.Errorf("Reload of %q: %v, want a refusal naming the file", bad, err)
		}
		if code := r.commitAs(t, topic, "shop", "one"); code != 200 {
			t.Errorf("after a refused reload (%q), the secret in force: %d, want 200", bad, code)
		}
		if code := r.commitAs(t, topic, "shop", "two"); code != 401 {
			t.Errorf("after a refused reload (%q), the refused file's secret: %d, want 401", bad, code)
		}
	}
	if v := r.metric(t, `kproxy_config_reloads_total{result="refused"}`); v != "5" {
		t.Errorf(`kproxy_config_reloads_total{result="refused"} = %s, want 5`, v)
	}
}

// holdLookup holds the first look-up of topic t by kproxy (a Metadata or
// DescribeConfigs request naming it) until during has run.
func holdLookup(c *kfake.Cluster, t string, during func()) {
	var once sync.Once
	hold := func(names []string) {
		if slices.Contains(names, t) {
			once.Do(func() { c.SleepControl(during) })
		}
	}
	c.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		var names []string
		for _, tp := range req.(*kmsg.MetadataRequest).Topics {
			if tp.Topic != nil {
				names = append(names, *tp.Topic)
			}
		}
		hold(names)
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.DescribeConfigs), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		var names []string
		for _, r := range req.(*kmsg.DescribeConfigsRequest).Resources {
			names = append(names, r.ResourceName)
		}
		hold(names)
		return nil, nil, false
	})
}

// TestReloadDuringARequestOneRuleSet: a request is checked by one set of
// rules, those in force when its client was found, whatever a reload
// stores while it is being checked. A batch for topics slow and t2 whose
// look-up of slow spans a reload: before, topics_allowed has slow only;
// after, t2 too but the client may write to slow only. Neither allows t2:
// nothing reaches t2, whichever way the batch came in (t2 was checked by
// the new topics_allowed and the client's old topics: written, 200).
func TestReloadDuringARequestOneRuleSet(t *testing.T) {
	const before = "topics_allowed: [slow]\nclients:\n - {name: shop, secret: s, topics: ['*']}\n"
	const after = "topics_allowed: [slow, t2]\nclients:\n - {name: shop, secret: s, topics: [slow]}\n"
	for _, way := range []string{"/batch", "Produce", "ProduceStream"} {
		t.Run(way, func(t *testing.T) {
			r := startReloadable(t, before)
			reloaded := make(chan error, 1)
			holdLookup(r.kafka, "slow", func() {
				r.write(t, after)
				reloaded <- r.srv.Reload()
			})
			recs := []*kproxypb.Record{grec("slow", "k", "v"), grec("t2", "k", "v")}
			var status int
			switch way {
			case "/batch":
				status = r.postBatch(t, "", "", mpBatch(t, []brec{{topic: "slow", key: "k", value: mp(t, 1)}, {topic: "t2", key: "k", value: mp(t, 2)}}), "shop", "s").code
			case "Produce":
				resp, err := r.produce(t, as(context.Background(), "shop", "s"), &kproxypb.ProduceRequest{Id: 1, Records: recs})
				if err != nil {
					if rf := refusalOf(err); rf.detail != nil {
						status = int(rf.detail.Status)
					} else {
						t.Fatalf("Produce: %v", err)
					}
				} else {
					status = int(resp.Status)
				}
			case "ProduceStream":
				s := r.stream(t, as(t.Context(), "shop", "s"))
				if err := s.Send(&kproxypb.ProduceRequest{Id: 1, Records: recs}); err != nil {
					t.Fatal(err)
				}
				resp, err := s.Recv()
				if err != nil {
					t.Fatal(err)
				}
				status = int(resp.Status)
			}
			select {
			case err := <-reloaded:
				if err != nil {
					t.Fatalf("Reload: %v", err)
				}
			default:
				t.Fatal("the look-up of slow was not held: the reload did not run during the request")
			}
			if n := kafkatest.Records(t, r.kafka, kafkaconf.Default(), "t2"); n != 0 || status != 403 {
				t.Errorf("%s: status %d, %d records in t2; want 403 and none: neither configuration lets shop write to t2", way, status, n)
			}
		})
	}
}

// TestReloadOfAFileBeingWritten: a watcher of the file sends SIGHUP when
// an in-place write has truncated it and written part of it. The reload
// applied the part there at the signal: here the file is cut before its
// second client when the reload starts and written whole 50 ms later, and
// that client (its secret changed) was refused until the next reload.
func TestReloadOfAFileBeingWritten(t *testing.T) {
	r := startReloadable(t, "clients:\n - {name: shop, secret: one, topics: ['*']}\n - {name: ops, secret: two, topics: ['*']}\n")
	r.write(t, "clients:\n - {name: shop, secret: one, topics: ['*']}\n")
	done := make(chan error, 1)
	go func() { done <- r.srv.Reload() }()
	time.Sleep(50 * time.Millisecond)
	r.write(t, "clients:\n - {name: shop, secret: one, topics: ['*']}\n - {name: ops, secret: three, topics: ['*']}\n")
	if err := <-done; err != nil {
		t.Fatalf("reload of a file written whole 50 ms after the signal: %v", err)
	}
	if code := r.commitAs(t, topic, "ops", "three"); code != 200 {
		t.Errorf("the second client with the secret of the file as written: %d, want 200 (the reload applied the file cut short)", code)
	}
	if code := r.commitAs(t, topic, "shop", "one"); code != 200 {
		t.Errorf("the first client: %d, want 200", code)
	}
}
