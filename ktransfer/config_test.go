package ktransfer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "zk.secret")
	os.WriteFile(open, []byte("pw"), 0o644)
	f := filepath.Join(dir, "ktransfer.yaml")
	os.WriteFile(f, []byte("zk_chroot: mq\nzk_timeout_ms: 10\nzk_hosts: [nohost]\nmodule_conf_dir: "+dir+"\n"+
		"module_enabled: [a, a]\nadmin_addr: 5050\n"+
		"zk_auth: {user: u, password_file: "+open+", acl: secret}\n"+
		"kafka: {tls: {ca_file: /x}, sasl: {mechanism: PLAIN, user: u}}\n"), 0o644)
	_, err := ktransfer.LoadConfig(f)
	for _, want := range []string{
		`zk_chroot: must be an absolute ZooKeeper path like /mq/test_cluster, got "mq"`,
		"zk_timeout_ms: must be 1000..2147483647, got 10",
		`zk_hosts[0]: must be host:port, got "nohost"`,
		`module_enabled: lists a module twice, got "a"`,
		`admin_addr: must be host:port, or empty to turn the admin listener off, got "5050"`,
		"zk_auth.password_file: " + open + " is readable by group or others",
		`zk_auth.acl: must be world_read, private or open, got "secret"`,
		"kafka.tls.enable: is false but other tls keys are set",
		"kafka.sasl: needs exactly one of password and password_file",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, f) {
				t.Errorf("problem without the file's name: %q", line)
			}
		}
	}
}

// TestLimitsConfigErrors: rate_limit, burst and the breaker keys are
// checked at start-up, each problem naming the file, the key and the value.
func TestLimitsConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		body string
		want []string
	}{
		{"rate_limit: -5\nburst: -1\nbreaker_failures: -2\nbreaker_cooldown_ms: 0\n", []string{
			"rate_limit: must be 0 (no limit) or >= 0.001 records per second, got -5",
			"burst: must be >= 0 (0: max(1, rate_limit/10)), got -1",
			"breaker_failures: must be >= 0 (0: no circuit breaker), got -2",
			"breaker_cooldown_ms: must be 1..60000, got 0",
		}},
		{"burst: 10\nbreaker_cooldown_ms: 60001\n", []string{
			"burst: needs a rate_limit (burst only shapes a rate limit), got 10",
			"breaker_cooldown_ms: must be 1..60000, got 60001",
		}},
		{"rate_limit: .nan\n", []string{"rate_limit: must be 0 (no limit) or >= 0.001 records per second, got NaN"}},
		{"rate_limit: 1e-11\n", []string{"rate_limit: must be 0 (no limit) or >= 0.001 records per second, got 1e-11"}},
		{"rate_limit: 0.0009\n", []string{"rate_limit: must be 0 (no limit) or >= 0.001 records per second, got 0.0009"}},
		{"rate_limit: .inf\n", []string{"rate_limit: must be 0 (no limit) or >= 0.001 records per second, got +Inf"}},
	} {
		f := filepath.Join(dir, "m.yaml")
		os.WriteFile(f, []byte("topic: t\nprotocol: {uri: /p}\nbackend_servers: [127.0.0.1:80]\n"+tc.body), 0o644)
		_, err := ktransfer.LoadModule(f)
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), f+": "+want) {
				t.Errorf("%q: %v\nlacks %q", tc.body, err, want)
			}
		}
	}
	f := filepath.Join(dir, "ok.yaml")
	os.WriteFile(f, []byte("topic: t\nprotocol: {uri: /p}\nbackend_servers: [127.0.0.1:80]\n"+
		"rate_limit: 0.001\nburst: 3\nbreaker_failures: 5\nbreaker_cooldown_ms: 60000\n"), 0o644)
	if m, err := ktransfer.LoadModule(f); err != nil || m.RateLimit != 0.001 || m.Burst != 3 || m.BreakerFailures != 5 {
		t.Errorf("valid limits: %+v, %v", m, err)
	}
	if m := ktransfer.DefaultModule(); m.RateLimit != 0 || m.Burst != 0 || m.BreakerFailures != 0 || m.BreakerCooldownMs != 1000 {
		t.Errorf("defaults: rate_limit %v burst %d breaker_failures %d breaker_cooldown_ms %d; want 0 (off), 0 (rate/10), 0 (off), 1000",
			m.RateLimit, m.Burst, m.BreakerFailures, m.BreakerCooldownMs)
	}
}

// TestTopicNamesCheckedAtLoad: a module's topic and dead_letter_topic
// must be names Kafka can hold (ASCII letters, digits, '.', '_', '-', at
// most 249, not . or ..). Such a name is refused when the file is loaded
// (and so by -check and by a reload), naming the file, the key and the
// value: otherwise the module starts, and every record given up waits
// forever for a dead-letter topic that can never exist (its write is
// refused with UNKNOWN_TOPIC_OR_PARTITION, retried), holding its
// partition's offsets.
func TestTopicNamesCheckedAtLoad(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "m.yaml")
	for _, tc := range []struct{ body, want string }{
		{"topic: 'bad topic'\n", `topic: must be a Kafka topic name (ASCII letters, digits, '.', '_' and '-', at most 249, not . or ..), got "bad topic"`},
		{"topic: ..\n", `topic: must be a Kafka topic name (ASCII letters, digits, '.', '_' and '-', at most 249, not . or ..), got ".."`},
		{"topic: " + strings.Repeat("t", 250) + "\n", "topic: must be a Kafka topic name"},
		{"topic: t\ndead_letter_topic: 't:dlq'\n", `dead_letter_topic: must be a Kafka topic name (ASCII letters, digits, '.', '_' and '-', at most 249, not . or ..), got "t:dlq"`},
		{"topic: t\ndead_letter_topic: 'dead letters/t'\n", `dead_letter_topic: must be a Kafka topic name (ASCII letters, digits, '.', '_' and '-', at most 249, not . or ..), got "dead letters/t"`},
	} {
		os.WriteFile(f, []byte("protocol: {uri: /p}\nbackend_servers: [127.0.0.1:80]\n"+tc.body), 0o644)
		if _, err := ktransfer.LoadModule(f); err == nil || !strings.Contains(err.Error(), f+": "+tc.want) {
			t.Errorf("%q: %v\nlacks %q", tc.body, err, tc.want)
		}
	}
	os.WriteFile(f, []byte("protocol: {uri: /p}\nbackend_servers: [127.0.0.1:80]\ntopic: Test_topic.v-2\n"+
		"dead_letter_topic: Test_topic.v-2.dead_letters\n"), 0o644)
	if _, err := ktransfer.LoadModule(f); err != nil {
		t.Errorf("valid topic names: %v", err)
	}
}

// TestHeadersCheckedAtLoad: protocol.headers are sent on every push, so a
// name that is not an HTTP header name, or a value holding a line break or
// another control character, is refused when the file is loaded, naming
// the file, the entry and the value. Loaded, such a header made every push
// a request the backend refuses (Go's net/http server answers 400 to a name
// with a space, or a Host with a line break): retried for ever, the module
// stalled; a line break in another value was sent as a space.
func TestHeadersCheckedAtLoad(t *testing.T) {
	f := filepath.Join(t.TempDir(), "m.yaml")
	os.WriteFile(f, []byte("topic: t\nbackend_servers: [127.0.0.1:80]\nprotocol:\n uri: /p\n headers:\n"+
		"  - Content Type: application/msgpack\n  - Host: \"www.myhug.cn\\r\\nX-Evil: 1\"\n  - X-Trace: \"a\\nb\"\n  - \"\": v\n"), 0o644)
	_, err := ktransfer.LoadModule(f)
	for _, want := range []string{
		`protocol.headers[0]: must be an HTTP header name (letters, digits and !#$%&'*+-.^_` + "`" + `|~), got "Content Type"`,
		`protocol.headers[1].Host: must be a host name or address with an optional numeric port (api.example, api.example:8080, [fe80::1]:8080), got "www.myhug.cn\r\nX-Evil: 1"`,
		`protocol.headers[2].X-Trace: must hold no control characters but tab, got "a\nb"`,
		`protocol.headers[3]: must be an HTTP header name (letters, digits and !#$%&'*+-.^_` + "`" + `|~), got ""`,
	} {
		if err == nil || !strings.Contains(err.Error(), f+": "+want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	os.WriteFile(f, []byte("topic: t\nbackend_servers: [127.0.0.1:80]\nprotocol:\n uri: /p\n headers:\n"+
		"  - Host: www.myhug.cn\n  - X-Client: \"ktransfer 1.0\\tbatch\"\n  - Accept: '*/*'\n"), 0o644)
	if _, err := ktransfer.LoadModule(f); err != nil {
		t.Errorf("valid headers: %v", err)
	}
}

// TestModuleNamesCheckedAtLoad: a module's name (its entry in
// module_enabled, its file's base name) is its ZooKeeper group, a node
// under <zk_chroot>/consumers. A name that cannot be one node is refused
// when ktransfer.yaml is loaded, naming the file, the entry and the
// value: ".." put the module's ids/, owners/ and offsets/ in the chroot
// itself, "x/m" and "y/m" were two modules sharing the group "m", and a
// control character made every claim fail ("zk: invalid path", retried
// for ever, nothing pushed).
func TestModuleNamesCheckedAtLoad(t *testing.T) {
	dir := t.TempDir()
	mods := filepath.Join(dir, "modules")
	os.MkdirAll(filepath.Join(mods, "x"), 0o755)
	os.MkdirAll(filepath.Join(mods, "y"), 0o755)
	body := []byte("topic: t\nprotocol: {uri: /p}\nbackend_servers: [127.0.0.1:80]\n")
	for _, name := range []string{"..", "x/m", "y/m", "a\x01b", "ok-module.v2"} {
		os.WriteFile(filepath.Join(mods, name+".yaml"), body, 0o644)
	}
	f := filepath.Join(dir, "ktransfer.yaml")
	os.WriteFile(f, []byte("zk_chroot: /mq/c\nzk_hosts: [127.0.0.1:2181]\nmodule_conf_dir: "+mods+
		"\nmodule_enabled: ['..', x/m, y/m, \"a\\x01b\", ok-module.v2]\n"), 0o644)
	_, err := ktransfer.LoadConfig(f)
	const rule = "must be a ZooKeeper node name (not . or .., no '/' or control characters)"
	for _, want := range []string{
		`module_enabled[0]: ` + rule + `, got ".."`,
		`module_enabled[1]: ` + rule + `, got "x/m"`,
		`module_enabled[2]: ` + rule + `, got "y/m"`,
		`module_enabled[3]: ` + rule + `, got "a\x01b"`,
	} {
		if err == nil || !strings.Contains(err.Error(), f+": "+want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "ok-module.v2") {
		t.Errorf("a valid name refused: %v", err)
	}
}

// TestLongDurationsRefusedAtLoad: every key in ms of ktransfer.yaml and
// of a module file is at most 2147483647 (about 24.8 days), as kproxy's,
// kmonitor's and the kafka section's are; a larger value is refused when
// the files are loaded, naming the file, the key and the value. Accepted,
// fail_retry_interval_ms: 10000000000000 (meant: never soon) overflowed
// to a negative time.Duration: the first retry went at once, the next
// ones at the 10 s cap; shutdown_timeout_ms did the same to the deadline
// of a partition's release, and zk_timeout_ms above 2^31-1 overflows the
// int32 of ZooKeeper's handshake.
func TestLongDurationsRefusedAtLoad(t *testing.T) {
	dir := t.TempDir()
	const big = "10000000000000"
	os.WriteFile(filepath.Join(dir, "m.yaml"), []byte("topic: t\nbackend_servers: [127.0.0.1:80]\nprotocol:\n uri: /p\n"+
		" read_timeout_ms: "+big+"\n write_timeout_ms: "+big+"\n conn_timeout_ms: "+big+"\n"+
		"fail_retry_interval_ms: "+big+"\nmax_retry_interval_ms: "+big+"\n"), 0o644)
	f := filepath.Join(dir, "ktransfer.yaml")
	os.WriteFile(f, []byte("zk_chroot: /mq/c\nzk_hosts: [127.0.0.1:2181]\nmodule_conf_dir: "+dir+"\nmodule_enabled: [m]\n"+
		"zk_timeout_ms: 3000000000\nshutdown_timeout_ms: "+big+"\nkafka_cutoff_ms: "+big+"\n"), 0o644)
	_, err := ktransfer.LoadConfig(f)
	m := filepath.Join(dir, "m.yaml")
	for _, want := range []string{
		f + ": zk_timeout_ms: must be 1000..2147483647, got 3000000000",
		f + ": shutdown_timeout_ms: must be 1..2147483647, got " + big,
		f + ": kafka_cutoff_ms: must be 0 (never) or 25000..2147483647 (the 10s between a module's asks of its topic's partitions, and the 15s an ask may take), got " + big,
		m + ": protocol.read_timeout_ms: must be 0..2147483647 (0: no timeout), got " + big,
		m + ": protocol.write_timeout_ms: must be 0..2147483647 (0: no timeout), got " + big,
		m + ": protocol.conn_timeout_ms: must be 0..2147483647 (0: 3 s, the HTTP client's default), got " + big,
		m + ": fail_retry_interval_ms: must be 0..2147483647, got " + big,
		m + ": max_retry_interval_ms: must be 0..2147483647, got " + big,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
}

// TestLongOffsetUpdateIntervalRefusedAtLoad: zk_offset_update_interval_sec
// is a duration too, in seconds: at most 2147483 (2147483647 ms, about
// 24.8 days, as the keys in ms), refused above when the files are loaded,
// naming the file, the key and the value. Accepted, 10000000000 overflowed
// to a negative time.Duration and the module's commit loop panicked in
// time.NewTicker ("non-positive interval for NewTicker"), killing the
// process once the module started; -check said ok.
func TestLongOffsetUpdateIntervalRefusedAtLoad(t *testing.T) {
	dir := t.TempDir()
	m := filepath.Join(dir, "m.yaml")
	f := filepath.Join(dir, "ktransfer.yaml")
	os.WriteFile(f, []byte("zk_chroot: /mq/c\nzk_hosts: [127.0.0.1:2181]\nmodule_conf_dir: "+dir+"\nmodule_enabled: [m]\n"), 0o644)
	for v, want := range map[string]string{
		"10000000000": m + ": zk_offset_update_interval_sec: must be 0..2147483, got 10000000000",
		"2147484":     m + ": zk_offset_update_interval_sec: must be 0..2147483, got 2147484",
		"2147483":     "",
		"3600":        "",
	} {
		os.WriteFile(m, []byte("topic: t\nbackend_servers: [127.0.0.1:80]\nprotocol:\n uri: /p\nzk_offset_update_interval_sec: "+v+"\n"), 0o644)
		_, err := ktransfer.LoadConfig(f)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("zk_offset_update_interval_sec: %s: %v; want %q", v, err, want)
		}
	}
}

// TestHeaderCredentialsNotShownInErrors: protocol.headers carry the
// backend's credentials (Authorization, Cookie, X-Api-Key). A header entry
// of the wrong shape — written as one string, two pairs in one list item,
// a value with a control character — stops the start with a problem
// naming the file and the entry, but never the credential: the problem is
// printed, logged, and shown in /status when a reload is refused.
func TestHeaderCredentialsNotShownInErrors(t *testing.T) {
	for _, tc := range []struct {
		name, headers, secret, want string
	}{
		{"one string", `  - "Authorization: Bearer s3cr3t-string"` + "\n", "s3cr3t-string", "protocol.headers[0]: must be a mapping"},
		{"no space after the colon", `  - Authorization:Bearer s3cr3t-nospace` + "\n", "s3cr3t-nospace", "protocol.headers[0]: must be a mapping"},
		{"two pairs", "  - Authorization: Bearer s3cr3t-pairs\n    X-Trace: 1\n", "s3cr3t-pairs", `protocol.headers[0]: must be one "Name: value" pair`},
		{"control character", `  - Authorization: "Bearer s3cr3t-ctl\u0001"` + "\n", "s3cr3t-ctl", "protocol.headers[0].Authorization: must hold no control characters but tab"},
		{"cookie", `  - Cookie: "sid=s3cr3t-cookie` + `\r\n"` + "\n", "s3cr3t-cookie", "protocol.headers[0].Cookie: must hold no control characters but tab"},
		{"api key", `  - X-Api-Key: "s3cr3t-key` + `\n"` + "\n", "s3cr3t-key", "protocol.headers[0].X-Api-Key: must hold no control characters but tab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := loadModuleText(t, "topic: t\nbackend_servers: [127.0.0.1:80]\nprotocol:\n uri: /p\n headers:\n"+tc.headers)
			if err == nil {
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), f) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v\nlacks %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.secret) {
				t.Errorf("the problem shows the header's credential: %v", err)
			}
		})
	}
}

// TestConfigHashLeavesHeaderCredentialsOut: the hash shown in /status and
// the log leaves secrets out so that it cannot confirm a guessed password;
// a backend's credential in protocol.headers (Authorization, Cookie,
// X-Api-Key) is one. Changing only such a value keeps the hash; changing
// another header's value changes it.
func TestConfigHashLeavesHeaderCredentialsOut(t *testing.T) {
	hash := moduleHasher(t)
	hashOf := func(auth, cookie, key, trace string) string {
		t.Helper()
		module := "topic: t\nbackend_servers: [127.0.0.1:8080]\nprotocol:\n  uri: /x\n  headers:\n" +
			"    - Authorization: Bearer " + auth + "\n    - Cookie: sid=" + cookie + "\n    - X-Api-Key: " + key + "\n    - X-Trace: " + trace + "\n"
		return hash(module)
	}
	h := hashOf("a1", "c1", "k1", "t1")
	if other := hashOf("a2", "c2", "k2", "t1"); other != h {
		t.Errorf("only the Authorization, Cookie and X-Api-Key values changed: hash %s → %s; want unchanged", h, other)
	}
	if other := hashOf("a1", "c1", "k1", "t2"); other == h {
		t.Errorf("the X-Trace value changed: hash %s unchanged", h)
	}
}

// loadModuleText loads a module file holding text; it returns the file's
// name and the error.
func loadModuleText(t *testing.T, text string) (string, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ktransfer.LoadModule(f)
	return f, err
}

// moduleHasher returns what ConfigHash gives for a configuration enabling
// one module, m, whose file holds the text given: the configuration stays
// the same from call to call, only the module changes.
func moduleHasher(t *testing.T) func(module string) string {
	dir := t.TempDir()
	file := filepath.Join(dir, "ktransfer.yaml")
	if err := os.WriteFile(file, []byte("zk_hosts: [127.0.0.1:2181]\nzk_chroot: /mq/c\nbroker_hosts: [127.0.0.1:9092]\nmodule_conf_dir: "+dir+
		"\nmodule_enabled: [m]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return func(module string) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(module), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := ktransfer.LoadConfig(file)
		if err != nil {
			t.Fatal(err)
		}
		return ktransfer.ConfigHash(cfg)
	}
}

// TestConfigChrootZooKeeperRefuses: a zk_chroot with a character ZooKeeper
// refuses in a path passed -check and the start; every operation under it
// then failed. It is a start-up error naming file, field and value.
func TestConfigChrootZooKeeperRefuses(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "ktransfer.yaml")
	os.WriteFile(filepath.Join(dir, "m.yaml"), []byte("topic: t\nprotocol: {uri: /p}\nbackend_servers: [h:1]\n"), 0o644)
	os.WriteFile(f, []byte("zk_chroot: \"/mq/a\\tb\"\nzk_hosts: [h:1]\nmodule_conf_dir: "+dir+"\nmodule_enabled: [m]\n"), 0o644)
	_, err := ktransfer.LoadConfig(f)
	if err == nil || !strings.Contains(err.Error(), f+": zk_chroot: ") {
		t.Errorf("zk_chroot with a tab: %v, want an error naming %s and zk_chroot", err, f)
	}
}

// TestCheckRefusesWhatOnlyFailedAtRunTime: values -check passed whose
// mistake showed only at run time: a zk_chroot with a ".." segment
// (path.Join made /mq/../.. the root: offsets and claims outside the
// cluster's chroot), an admin_addr host with a space (a failed look-up at
// the start), a dead-letter topic of Kafka's own (its writes refused,
// every given-up record retried for ever), a quoted yes/no word read as a
// boolean.
func TestCheckRefusesWhatOnlyFailedAtRunTime(t *testing.T) {
	dir := t.TempDir()
	f, m := filepath.Join(dir, "ktransfer.yaml"), filepath.Join(dir, "m.yaml")
	os.WriteFile(m, []byte("topic: t\nprotocol: {uri: /p}\nbackend_servers: [127.0.0.1:80]\n"), 0o644)
	os.WriteFile(f, []byte("zk_chroot: '/mq/../..'\nzk_hosts: [127.0.0.1:2181]\nmodule_conf_dir: "+dir+"\n"+
		"module_enabled: [m]\nadmin_addr: 'foo bar:80'\n"), 0o644)
	_, err := ktransfer.LoadConfig(f)
	for _, want := range []string{
		`zk_chroot: must not hold a . or .. segment (ZooKeeper paths are taken as written elsewhere; here it named another node), got "/mq/../.."`,
		`admin_addr: must be host:port, or empty to turn the admin listener off, got "foo bar:80"`,
	} {
		if err == nil || !strings.Contains(err.Error(), f+":") || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	for _, tc := range []struct{ body, want string }{
		{"dead_letter_topic: __consumer_offsets\n", `dead_letter_topic: is one of Kafka's internal topics, which refuse writes, got "__consumer_offsets"`},
		{"serialize_by_key: 'n'\n", `serialize_by_key: must be true or false, got "n" in quotes`},
	} {
		os.WriteFile(m, []byte("topic: t\nprotocol: {uri: /p}\nbackend_servers: [127.0.0.1:80]\n"+tc.body), 0o644)
		if _, err := ktransfer.LoadModule(m); err == nil || !strings.Contains(err.Error(), m+":") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v\nlacks %q", tc.body, err, tc.want)
		}
	}
	// A user's topic starting with __ is written to as any other; an
	// optional boolean tagged !!null is unset.
	os.WriteFile(m, []byte("topic: t\nprotocol: {uri: /p}\nbackend_servers: [127.0.0.1:80]\ndead_letter_topic: __dlq\n"+
		"serialize_by_key: !!null\n"), 0o644)
	if _, err := ktransfer.LoadModule(m); err != nil {
		t.Errorf("dead_letter_topic: __dlq, serialize_by_key: !!null: %v", err)
	}
}

// TestShortKafkaCutoffRefusedAtLoad: kafka_cutoff_ms below the 10 s
// between a process's asks of its topic (all a process holding no
// partition asks the brokers) and the 15 s an ask may take would take a
// healthy spare for cut off; it is refused naming the file, the key and
// the value. 0 turns it off.
func TestShortKafkaCutoffRefusedAtLoad(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "m.yaml"), []byte("topic: t\nbackend_servers: [127.0.0.1:80]\nprotocol:\n uri: /p\n"), 0o644)
	for value, want := range map[string]string{
		"5000":  ": kafka_cutoff_ms: must be 0 (never) or 25000..2147483647 (the 10s between a module's asks of its topic's partitions, and the 15s an ask may take), got 5000",
		"0":     "",
		"25000": "",
		"20000": ": kafka_cutoff_ms: must be 0 (never) or 25000..2147483647 (the 10s between a module's asks of its topic's partitions, and the 15s an ask may take), got 20000",
	} {
		f := filepath.Join(dir, "ktransfer.yaml")
		os.WriteFile(f, []byte("zk_chroot: /mq/c\nzk_hosts: [127.0.0.1:2181]\nmodule_conf_dir: "+dir+"\nmodule_enabled: [m]\nkafka_cutoff_ms: "+value+"\n"), 0o644)
		_, err := ktransfer.LoadConfig(f)
		switch {
		case want == "" && err != nil:
			t.Errorf("kafka_cutoff_ms: %s refused: %v", value, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), f+want)):
			t.Errorf("kafka_cutoff_ms: %s: %v\nlacks %q", value, err, f+want)
		}
	}
}
