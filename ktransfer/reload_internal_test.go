package ktransfer

import (
	"slices"
	"testing"
)

// TestRestartKeys: the keys a reload cannot apply are named; the ones it
// applies (module_enabled, module_conf_dir, log_level) are not.
func TestRestartKeys(t *testing.T) {
	base := DefaultConfig()
	base.ZKChroot, base.ZKHosts, base.ModuleEnabled = "/mq/c", []string{"h:1"}, []string{"m"}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"nothing", func(*Config) {}, nil},
		{"live keys", func(c *Config) { c.ModuleEnabled, c.ModuleConfDir, c.LogLevel = []string{"m", "n"}, "./other", 16 }, nil},
		{"zookeeper", func(c *Config) { c.ZKHosts, c.ZKChroot = []string{"h:2"}, "/mq/d" }, []string{"zk_chroot", "zk_hosts"}},
		{"process", func(c *Config) { c.AdminAddr, c.LogDir, c.ShutdownTimeoutMs = "127.0.0.1:1", "/var/log", 1 },
			[]string{"log_dir", "admin_addr", "shutdown_timeout_ms"}},
		{"kafka", func(c *Config) { c.Kafka.ClientID = "other"; c.BrokerHosts = []string{"b:9092"} }, []string{"broker_hosts", "kafka"}},
		{"zk_auth", func(c *Config) { c.ZKAuth.User = "ktransfer" }, []string{"zk_auth"}},
		{"password files rewritten", func(c *Config) { c.fileDigests = map[string]string{"kafka": "1", "zk_auth": "2"} }, []string{"kafka", "zk_auth"}},
	} {
		next := base
		next.ZKHosts = slices.Clone(base.ZKHosts)
		tc.change(&next)
		if got := restartKeys(base, next); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSameModule: any parsed key of a module file makes it another
// module; its path does not.
func TestSameModule(t *testing.T) {
	a := DefaultModule()
	a.Name, a.File, a.Topic, a.BackendServers = "m", "conf/modules/m.yaml", "t", []string{"b:1"}
	b := a
	b.File = "other/m.yaml"
	b.BackendServers = slices.Clone(a.BackendServers)
	if !sameModule(a, b) {
		t.Error("the same module in another directory counts as changed")
	}
	b.Protocol.Headers = []map[string]string{{"Host": "x"}}
	if sameModule(a, b) {
		t.Error("a new header does not count as a change")
	}
	off := false
	c := a
	c.SerializeByKey = &off
	if sameModule(a, c) {
		t.Error("serialize_by_key: false does not count as a change")
	}
	d := a
	d.secretsDigest = "rewritten"
	if sameModule(a, d) {
		t.Error("a signing secret file rewritten does not count as a change")
	}
}
