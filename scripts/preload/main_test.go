package main

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/msgpackscan"
)

// murmur2 is the Java client's hash of a record key (Utils.murmur2), written
// out here so that the test does not trust the partitioner it checks.
func murmur2(data []byte) int32 {
	const seed, m, r = uint32(0x9747b28c), uint32(0x5bd1e995), 24
	h := seed ^ uint32(len(data))
	n := len(data) / 4
	for i := range n {
		k := uint32(data[4*i]) | uint32(data[4*i+1])<<8 | uint32(data[4*i+2])<<16 | uint32(data[4*i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[4*n:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// Every record is written, on the partition the Java client would choose
// for its key, with a value of the size asked for that carries the method,
// by the fast acks=1 producer and by kgo's idempotent acks=-1 one.
func TestKeyedRecordsOnMurmur2Partitions(t *testing.T) {
	for _, acks := range []string{"1", "-1"} {
		t.Run("acks="+acks, func(t *testing.T) {
			k := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: "bench", Partitions: 4}})
			var out bytes.Buffer
			err := run([]string{"-brokers", strings.Join(k.ListenAddrs(), ","), "-topic", "bench",
				"-records", "3000", "-size", "100", "-keys", "50", "-acks", acks}, &out)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(out.String(), "preloaded 3000 records of 100 bytes over 50 keys into bench in ") {
				t.Errorf("output: %q", out.String())
			}
			recs := kafkatest.ReadAll(t, k, kafkaconf.Default(), "bench")
			if len(recs) != 3000 {
				t.Fatalf("%d records in bench, want 3000", len(recs))
			}
			perKey := map[string]int{}
			for _, r := range recs {
				key := string(r.Key)
				perKey[key]++
				if want := (murmur2(r.Key) & 0x7fffffff) % 4; r.Partition != want {
					t.Fatalf("key %s on partition %d, murmur2 says %d", key, r.Partition, want)
				}
				if len(r.Value) != 100 {
					t.Fatalf("value of %d bytes", len(r.Value))
				}
				if m, err := msgpackscan.MapString(r.Value, "method"); err != nil || m != "TestUserName" {
					t.Fatalf("method %q, %v", m, err)
				}
			}
			for i := range 50 {
				if n := perKey["user"+strconv.Itoa(i)]; n != 60 {
					t.Errorf("user%d: %d records, want 60", i, n)
				}
			}
		})
	}
	if err := run([]string{"-acks", "0"}, io.Discard); err == nil || !strings.Contains(err.Error(), "-acks: must be 1 or -1, got 0") {
		t.Errorf("-acks 0: %v", err)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-keys", "0"}, {"-size", "300"}, {"-nope"}} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
