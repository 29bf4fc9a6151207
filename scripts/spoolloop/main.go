// Command spoolloop is the disk's ceiling for the spool's benchmark: a
// plain loop that appends the entries the spool writes (a 200-byte value,
// a short key, a topic: the bytes of one lib/spool entry, taken from a
// spool) to one file, -group of them per write and fsync, as one
// goroutine with every record at hand would. It prints records/s and
// fsyncs/s on one line.
//
//	go run ./scripts/spoolloop -dir /var/tmp -n 100000 -group 64
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "spoolloop:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("spoolloop", flag.ExitOnError)
	n := fs.Int("n", 100_000, "records")
	group := fs.Int("group", 64, "records per write and fsync")
	dir := fs.String("dir", os.TempDir(), "directory for the file (the disk measured)")
	_ = fs.Parse(args)
	if *n < 1 || *group < 1 {
		return fmt.Errorf("-n and -group must be >= 1, got %d and %d", *n, *group)
	}
	work, err := os.MkdirTemp(*dir, "spoolloop")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	entry, err := oneEntry(filepath.Join(work, "spool"))
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(work, "loop"))
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 0, *group*len(entry))
	var syncs int
	start := time.Now()
	for done := 0; done < *n; {
		buf = buf[:0]
		for i := 0; i < *group && done < *n; i++ {
			buf = append(buf, entry...)
			done++
		}
		if _, err := f.Write(buf); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		syncs++
	}
	d := time.Since(start)
	fmt.Printf("%d records of %d bytes, %d per fsync, in %v: %.0f records/s, %.0f fsyncs/s\n",
		*n, len(entry), *group, d.Round(time.Millisecond), float64(*n)/d.Seconds(), float64(syncs)/d.Seconds())
	return nil
}

// oneEntry returns the bytes lib/spool writes for the benchmark's record.
func oneEntry(dir string) ([]byte, error) {
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		return nil, err
	}
	if _, err := s.Append([]spool.Record{{Topic: "bench", Key: []byte("key-0000"), Value: make([]byte, 200)}}); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := s.Close(); err != nil {
		return nil, err
	}
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil || len(segs) != 1 {
		return nil, fmt.Errorf("spool in %s: %d segments (%v), want 1", dir, len(segs), err)
	}
	return os.ReadFile(segs[0])
}
