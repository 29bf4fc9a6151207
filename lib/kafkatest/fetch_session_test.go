package kafkatest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
)

// A consumer caught up with the log end fetches in a session without
// naming its partitions (their offsets do not change). A fault installed
// then, which picks its fetch by offset, sees those offsets once
// EndFetchSession has ended the session.
func TestEndFetchSessionShowsTheOffsetsFetchedFrom(t *testing.T) {
	c := Start(t, []Topic{{"t", 2}})
	kc := kafkaconf.Default()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	prod := Client(t, c, kc, kgo.DefaultProduceTopic("t"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := range 6 {
		r := &kgo.Record{Value: []byte{byte(i)}, Partition: int32(i % 2)}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	inSession := 0
	c.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if fr := req.(*kmsg.FetchRequest); fr.SessionEpoch > 0 && len(fr.Topics) == 0 {
			mu.Lock()
			inSession++
			mu.Unlock()
		}
		return nil, nil, false
	})
	cons := Client(t, c, kc, kgo.ConsumeTopics("t"), kgo.FetchMaxWait(100*time.Millisecond))
	for read := 0; read < 6; {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("%d of the 6 records read: %v", read, err)
		}
		read += fs.NumRecords()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := inSession
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the consumer never fetched in a session naming no partition")
		}
		time.Sleep(20 * time.Millisecond)
	}

	seen := map[int32]int64{}
	c.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		fr := req.(*kmsg.FetchRequest)
		if resp := EndFetchSession(fr); resp != nil {
			return resp, nil, true
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rt := range fr.Topics {
			for _, rp := range rt.Partitions {
				seen[rp.Partition] = rp.FetchOffset
			}
		}
		return nil, nil, false
	})
	go func() {
		for ctx.Err() == nil {
			cons.PollFetches(ctx)
		}
	}()
	deadline = time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := map[int32]int64{0: seen[0], 1: seen[1]}
		mu.Unlock()
		if got[0] == 3 && got[1] == 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fetches named offsets %v in 5 s, want partitions 0 and 1 fetched from 3 (their log end)", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// After FetchWithoutSessions, a consumer caught up with the log end (which
// fetched in a session naming no partition) names its partitions in every
// fetch, outside any session.
func TestFetchWithoutSessionsEndsThemForGood(t *testing.T) {
	c := Start(t, []Topic{{"t", 1}})
	kc := kafkaconf.Default()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var inSession, outside int
	counting := false
	c.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		fr := req.(*kmsg.FetchRequest)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case fr.SessionEpoch > 0:
			inSession++
		case counting && len(fr.Topics) == 1:
			outside++
		}
		return nil, nil, false
	})
	cons := Client(t, c, kc, kgo.ConsumeTopics("t"), kgo.FetchMaxWait(50*time.Millisecond))
	go func() {
		for ctx.Err() == nil {
			cons.PollFetches(ctx)
		}
	}()
	count := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return inSession, outside
	}
	for n, _ := count(); n < 2; n, _ = count() {
		if ctx.Err() != nil {
			t.Fatal("the consumer never fetched in a session")
		}
		time.Sleep(10 * time.Millisecond)
	}

	FetchWithoutSessions(c)            // runs after the counter: the counter sees every fetch
	time.Sleep(300 * time.Millisecond) // the consumer's next fetch ends its session
	mu.Lock()
	inSession, outside, counting = 0, 0, true
	mu.Unlock()
	time.Sleep(time.Second)
	if in, out := count(); in > 0 || out < 3 {
		t.Errorf("after FetchWithoutSessions: %d fetches in a session, %d outside naming the partition; want none and several", in, out)
	}
}
