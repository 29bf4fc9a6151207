package conf

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// TestNonRegularConfigFileRefused attacks the rule that bad input gets a
// clear error: -f naming a named pipe made the loaders of the three
// binaries (and so -check, the start and a ktransfer reload, which holds
// its lock meanwhile) wait for ever for a writer; -f naming a device
// (/dev/null, or /dev/zero, read without end) or a directory is no
// configuration either. Each is refused at once, naming the file and why;
// so is an enabled module's file that is a pipe.
func TestNonRegularConfigFileRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	modules := filepath.Join(dir, "modules")
	if err := os.Mkdir(modules, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(modules, "m.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	kt := filepath.Join(dir, "ktransfer.yaml")
	if err := os.WriteFile(kt, []byte("zk_chroot: /mq/c\nzk_hosts: [10.1.1.1:2181]\nmodule_conf_dir: "+modules+"\nmodule_enabled: [m]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Whatever stays blocked on a pipe is let go at the end.
	t.Cleanup(func() {
		for _, p := range []string{fifo, filepath.Join(modules, "m.yaml")} {
			for range 4 {
				if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
			}
		}
	})
	loaders := map[string]func(string) error{
		"kproxy":    func(p string) error { _, err := kproxy.LoadConfig(p); return err },
		"ktransfer": func(p string) error { _, err := ktransfer.LoadConfig(p); return err },
		"kmonitor":  func(p string) error { _, err := kmonitor.LoadConfig(p); return err },
		"module":    func(p string) error { _, err := ktransfer.LoadModule(p); return err },
	}
	cases := []struct{ loader, file, name string }{
		{"kproxy", fifo, fifo},
		{"ktransfer", fifo, fifo},
		{"kmonitor", fifo, fifo},
		{"module", fifo, fifo},
		{"ktransfer", kt, filepath.Join(modules, "m.yaml")},
		{"kproxy", "/dev/null", "/dev/null"},
		{"kmonitor", "/dev/null", "/dev/null"},
		{"ktransfer", dir, dir},
	}
	// All at once, so that loaders that hang cost the test 5 s in all.
	done := make([]chan error, len(cases))
	for i, tc := range cases {
		done[i] = make(chan error, 1)
		go func() { done[i] <- loaders[tc.loader](tc.file) }()
	}
	deadline := time.After(5 * time.Second)
	for i, tc := range cases {
		want := tc.name + ": not a regular file"
		select {
		case err := <-done[i]:
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s %s: %v\nlacks %q", tc.loader, tc.file, err, want)
			}
		case <-deadline:
			t.Fatalf("%s %s: the loader did not return within 5 s", tc.loader, tc.file)
		}
	}
}

// TestHugeConfigFileRefused: a configuration file is read up to a bound
// (a file of many megabytes is no configuration: -f naming a log, a disk
// image), and refused past it naming the file and the bound, before any
// of it is parsed.
func TestHugeConfigFileRefused(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kproxy.yaml")
	data := []byte("broker_hosts: [10.1.4.17:5031]\n" + strings.Repeat("#\n", 9<<20))
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := kproxy.LoadConfig(f)
	if want := f + ": larger than"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("LoadConfig of an 18 MiB file: %v\nlacks %q", err, want)
	}
}
