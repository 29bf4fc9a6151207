package conf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// TestEveryProblemAtOnce: a file with a key of the wrong type or an
// unknown key, and a bad value elsewhere, is refused naming both (STYLE:
// every problem at once). Before, the decoding problem stopped the load
// and the bad value showed only at the operator's next try; a problem of
// ktransfer.yaml hid those of its module files. A field that failed to
// decode is not reported again by the value checks.
func TestEveryProblemAtOnce(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		t.Helper()
		f := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	write("modules/m.yaml", "topic: t\nbackend_servers: [127.0.0.1:80]\nprotocol: {uri: /p}\nwindow_size: 0\nworker_num: lots\n")
	for _, tc := range []struct {
		name string
		load func() error
		want []string
		once string // reported once only
	}{
		{"kproxy", func() error {
			_, err := kproxy.LoadConfig(write("kproxy.yaml", "broker_hosts: [10.1.4.17:5031, {h: x}]\nport: 70000\nreq_pool_sise: 5\n"))
			return err
		}, []string{"req_pool_sise: unknown key", "port: must be 0..65535", "broker_hosts[1]: must be"}, "broker_hosts[1]"},
		{"ktransfer", func() error {
			_, err := ktransfer.LoadConfig(write("ktransfer.yaml", "zk_hosts: [127.0.0.1:2181]\nzk_chroot: /mq/c\nmodule_conf_dir: "+
				filepath.Join(dir, "modules")+"\nmodule_enabled: [m]\nzk_timeout_ms: soon\nlog_level: 99\n"))
			return err
		}, []string{"zk_timeout_ms: must be an integer", "log_level: must be", "window_size: must be", "worker_num: must be an integer"}, ""},
		{"kmonitor", func() error {
			_, err := kmonitor.LoadConfig(write("kmonitor.yaml", "base:\n clusters: [c1]\n poll_interval_ms: often\n log_level: 99\nc1:\n chroot: /mq/c1\n zk_hosts: [127.0.0.1:2181]\n"))
			return err
		}, []string{"base.poll_interval_ms: must be an integer", "base.log_level: must be"}, ""},
	} {
		err := tc.load()
		if err == nil {
			t.Errorf("%s: loaded", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v\nlacks %q", tc.name, err, w)
			}
		}
		if tc.once != "" && strings.Count(err.Error(), tc.once) != 1 {
			t.Errorf("%s: %v\nreports %s %d times, want once", tc.name, err, tc.once, strings.Count(err.Error(), tc.once))
		}
	}
}
