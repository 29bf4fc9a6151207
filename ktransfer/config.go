// Package ktransfer moves records from Kafka to HTTP: each module consumes
// one topic and pushes every record to its backend servers, serially per
// key and in parallel across keys, within a bounded window, with retries,
// keeping its offsets in ZooKeeper.
package ktransfer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/logging"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// Config is ktransfer.yaml. The first block is the 2015 suite's keys.
type Config struct {
	LogDir        string   `yaml:"log_dir"`
	LogLevel      int      `yaml:"log_level"`
	ZKChroot      string   `yaml:"zk_chroot"`
	ZKTimeoutMs   int      `yaml:"zk_timeout_ms"`
	ZKHosts       []string `yaml:"zk_hosts"`
	ModuleConfDir string   `yaml:"module_conf_dir"`
	ModuleEnabled []string `yaml:"module_enabled"`

	// BrokerHosts, when set, replaces discovery from <zk_chroot>/brokers/ids.
	BrokerHosts []string `yaml:"broker_hosts"`
	// AdminAddr serves /health, /status, /metrics, /debug/pprof; empty: off.
	// When the file leaves it to its default and that port is taken, a free
	// port on the same host is used instead (published under ids/).
	AdminAddr string `yaml:"admin_addr"`
	// ShutdownTimeoutMs bounds finishing in-flight pushes on SIGTERM.
	ShutdownTimeoutMs int `yaml:"shutdown_timeout_ms"`
	// KafkaCutoffMs: a process whose requests no broker has answered for
	// this long (a route to the brokers gone, while ZooKeeper answers)
	// leaves its partitions to the other processes until one answers
	// again; 0: never.
	KafkaCutoffMs int              `yaml:"kafka_cutoff_ms"`
	Kafka         kafkaconf.Config `yaml:"kafka"`
	// ZKAuth is ZooKeeper digest authentication and the ACL of the nodes
	// ktransfer creates.
	ZKAuth zklayout.Auth `yaml:"zk_auth"`

	// Modules are the enabled modules' files, loaded by LoadConfig.
	Modules []Module `yaml:"-"`

	// file is the file LoadConfig read; "" for a Config built in code.
	file string
	// hash identifies the contents of the files LoadConfig read
	// (ktransfer.yaml, then each enabled module's file), the values that
	// may be secrets left out (hashFile): the first 12 hex digits of their
	// SHA-256. The files they name are not in it: fileDigests and
	// Module.secretsDigest tell a reload of their changes.
	hash string
	// fileDigests are, by key (kafka, zk_auth), the digest of the files
	// the key names (certificates, password files; config.FilesDigest): a file
	// rewritten in place is a change a reload sees.
	fileDigests map[string]string
	// adminAddrDefault is set by LoadConfig when the file does not set
	// admin_addr: a taken default port is then replaced by a free one.
	adminAddrDefault bool
	// undecoded are the fields of the file that did not decode (reported
	// by LoadConfig), left out of Validate's problems.
	undecoded []string
}

// Module is conf/modules/<name>.yaml.
type Module struct {
	Name string `yaml:"-"` // the file's base name
	File string `yaml:"-"`

	Topic               string   `yaml:"topic"`
	Methods             []string `yaml:"methods"`
	Protocol            Protocol `yaml:"protocol"`
	WorkerNum           int      `yaml:"worker_num"`
	WindowSize          int      `yaml:"window_size"`
	MaxRetryTimes       int      `yaml:"max_retry_times"`
	FailRetryIntervalMs int      `yaml:"fail_retry_interval_ms"`
	BackendServers      []string `yaml:"backend_servers"`

	// The 2015 suite's optional keys.
	SerializeByKey           *bool `yaml:"serialize_by_key"`
	ZKOffsetUpdateIntervalS  int   `yaml:"zk_offset_update_interval_sec"`
	ExpectedProcessingTimeMs int   `yaml:"expected_processing_time_ms"`
	WaitingQueueSize         int   `yaml:"waiting_queue_size"`

	// MaxRetryIntervalMs caps the exponential backoff between retries.
	MaxRetryIntervalMs int `yaml:"max_retry_interval_ms"`
	// DeadLetterTopic receives the records given up on; empty: none.
	DeadLetterTopic string `yaml:"dead_letter_topic"`
	// StartFrom is where a partition without a stored offset starts:
	// oldest or newest.
	StartFrom string `yaml:"start_from"`
	// OffsetOutOfRange is what to do when the stored offset no longer
	// exists in Kafka (retention removed it): oldest, newest, or stop.
	OffsetOutOfRange string `yaml:"offset_out_of_range"`
	// Dispatch is how records find a worker: idle_worker (the default: a
	// key with nothing waiting goes to the first idle worker, its later
	// records follow it there) or hash (worker hash(key) % worker_num, the
	// 2015 rule).
	Dispatch string `yaml:"dispatch"`

	// legacyKeys are the 2015 keys without effect that the file sets
	// (waiting_queue_size, expected_processing_time_ms), whatever their
	// value: each is noted at start.
	legacyKeys []string
	// keysSet are the top-level keys the file gives a value
	// (config.TopKeys): a key set where it has no effect is warned of
	// when the module starts (newModule).
	keysSet map[string]bool

	// secretsDigest is the digest of the signing keys signing_secrets gives
	// (config.SecretsDigest), as read by the load, then by the module's
	// signer (newPusher); "" when it gives none. A secret file rewritten in
	// place makes the module another one (sameModule).
	secretsDigest string
	// signingKeys are the keys signing_secrets gives, as the load read
	// them, for the list keysOf (newPusher reads them again for another
	// list: a Module changed in code). Never shown: unexported, left out
	// of comparisons (meantModule).
	signingKeys [][]byte
	keysOf      []string
	// undecoded are the fields of the file that did not decode (reported
	// by LoadConfig), left out of Validate's problems.
	undecoded []string

	// RateLimit is push attempts per second of this process for the
	// module, retries and breaker trials included; 0: no limit.
	RateLimit float64 `yaml:"rate_limit"`
	// Burst is how many attempts may go at once after a quiet spell; 0:
	// max(1, rate_limit/10).
	Burst int `yaml:"burst"`
	// BreakerFailures consecutive failed pushes to one backend open its
	// circuit breaker; 0: no breaker.
	BreakerFailures int `yaml:"breaker_failures"`
	// BreakerCooldownMs is how long a backend stays open before a trial
	// push; doubled after each failed trial, up to maxBreakerCooldown.
	BreakerCooldownMs int `yaml:"breaker_cooldown_ms"`

	// FetchMaxBytes is how many bytes one fetch of the module's Kafka
	// client asks a broker for at most (a first record batch larger than
	// it comes whole).
	FetchMaxBytes int `yaml:"fetch_max_bytes"`
	// FetchMaxPartitionBytes is the same per partition, at most
	// FetchMaxBytes.
	FetchMaxPartitionBytes int `yaml:"fetch_max_partition_bytes"`
}

// Protocol is a module's protocol section.
type Protocol struct {
	Name           string              `yaml:"name"`
	URI            string              `yaml:"uri"`
	Headers        []map[string]string `yaml:"headers"`
	ReadTimeoutMs  int                 `yaml:"read_timeout_ms"`
	WriteTimeoutMs int                 `yaml:"write_timeout_ms"`
	ConnTimeoutMs  int                 `yaml:"conn_timeout_ms"`
	// SigningSecrets sign every push (Standard Webhooks): each whsec_<base64>
	// or the path of a file holding one; several while rotating.
	SigningSecrets []string `yaml:"signing_secrets"`
	// TargetHeader names the record header holding the URL to push the
	// record to (one of backend_servers); empty: the uri for every record.
	TargetHeader string `yaml:"target_header"`
}

// DefaultConfig returns the defaults of ktransfer.yaml.
func DefaultConfig() Config {
	return Config{
		LogLevel: 4, ZKTimeoutMs: 3000, ModuleConfDir: "./conf/modules",
		AdminAddr: "127.0.0.1:5050", ShutdownTimeoutMs: 10_000, KafkaCutoffMs: 30_000, Kafka: kafkaconf.Default(),
	}
}

// DefaultModule returns the defaults of a module file.
func DefaultModule() Module {
	return Module{
		Protocol:            Protocol{Name: "http", WriteTimeoutMs: 100, ConnTimeoutMs: 100},
		WorkerNum:           100,
		WindowSize:          200,
		MaxRetryTimes:       -1,
		FailRetryIntervalMs: 200,
		MaxRetryIntervalMs:  10_000,
		StartFrom:           "oldest",
		OffsetOutOfRange:    "oldest",
		Dispatch:            dispatchIdleWorker,
		BreakerCooldownMs:   1000,
		// franz-go's defaults, fixed before the keys existed.
		FetchMaxBytes:          50 << 20,
		FetchMaxPartitionBytes: 1 << 20,
	}
}

// maxFetchMaxBytes bounds fetch_max_bytes: a fetch's answer is read whole,
// up to twice fetch_max_bytes (fetchOpts), and franz-go reads at most 1 GiB.
const maxFetchMaxBytes = 512 << 20

const (
	dispatchHash       = "hash"
	dispatchIdleWorker = "idle_worker"
)

// maxWorkerNum bounds worker_num: each worker is a goroutine, started with
// the module, with a hash-dispatch queue and up to one connection per
// backend; far past this a module dies out of memory while starting.
const maxWorkerNum = 100000

// LoadConfig reads ktransfer.yaml and every enabled module's file from
// module_conf_dir (relative to the working directory, as in 2015), and
// validates them all, reporting every problem at once.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	data, adminDefault, err := config.LoadAddr(path, &cfg, &cfg.AdminAddr)
	cfg.adminAddrDefault = adminDefault
	cfg.file = path
	// Keys that did not decode are reported with the problems of the
	// values that did, the module files' included: every problem at once.
	undecoded, checkable := config.Checkable(err)
	if err != nil && !checkable {
		return cfg, err
	}
	cfg.undecoded = undecoded
	sum := sha256.New()
	hashFile(sum, path, data)
	cfg.fileDigests = map[string]string{
		"kafka":   config.FilesDigest(cfg.Kafka.TLS.CAFile, cfg.Kafka.TLS.CertFile, cfg.Kafka.TLS.KeyFile, cfg.Kafka.SASL.PasswordFile),
		"zk_auth": config.FilesDigest(cfg.ZKAuth.PasswordFile),
	}
	errs := []error{err}
	if err := cfg.Validate(path); err != nil {
		errs = append(errs, err)
	}
	for i, name := range cfg.ModuleEnabled {
		if slices.Contains(undecoded, "module_conf_dir") {
			break // the files are not where the default says
		}
		if slices.Index(cfg.ModuleEnabled, name) != i || !zklayout.NodeName(name) {
			continue // reported by Validate
		}
		file := filepath.Join(cfg.ModuleConfDir, name+".yaml")
		if _, err := os.Stat(file); err != nil {
			errs = append(errs, fmt.Errorf("%s: module_enabled: module %s: no usable file %s (module_conf_dir/<name>.yaml): %w", path, name, file, errors.Unwrap(err)))
			continue
		}
		m, data, err := loadModule(file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		hashFile(sum, file, data)
		cfg.Modules = append(cfg.Modules, m)
	}
	cfg.hash = hex.EncodeToString(sum.Sum(nil))[:12]
	return cfg, errors.Join(errs...)
}

// hashFile adds one file's name and contents to the configuration's
// shown hash: its contents without the values that may be secrets
// (config.WithoutSecrets), so that the hash is the same in every process
// reading the same files and confirms no guessed password.
func hashFile(sum hash.Hash, name string, data []byte) {
	config.AddFile(sum, name, config.WithoutSecrets(data))
}

// LoadModule reads and validates one module file.
func LoadModule(file string) (Module, error) {
	m, _, err := loadModule(file)
	return m, err
}

// loadModule is LoadModule, also returning the file's contents.
func loadModule(file string) (Module, []byte, error) {
	m := DefaultModule()
	m.File = file
	m.Name = trimExt(filepath.Base(file))
	data, err := config.ReadFile(file)
	if err != nil {
		return m, nil, fmt.Errorf("module %s: %w", m.Name, err)
	}
	// Keys that did not decode are reported with the problems of the
	// values that did: every problem at once.
	err = config.Decode(file, data, &m)
	undecoded, checkable := config.Checkable(err)
	if err != nil && !checkable {
		return m, data, err
	}
	m.undecoded = undecoded
	// The keys without effect the file sets, noted at start whatever
	// their value (0 included).
	set := config.TopKeys(data)
	m.keysSet = set
	if !set["fetch_max_partition_bytes"] && m.FetchMaxBytes >= 1<<10 {
		// Its default (1 MiB) follows a smaller fetch_max_bytes down.
		m.FetchMaxPartitionBytes = min(m.FetchMaxPartitionBytes, m.FetchMaxBytes)
	}
	for _, k := range []string{"waiting_queue_size", "expected_processing_time_ms"} {
		if set[k] {
			m.legacyKeys = append(m.legacyKeys, k)
		}
	}
	// The keys are the signer's (newPusher), which reads no file again:
	// what a reload compares is what signs, and a reload's reads are all
	// here, where the stop can leave them (config.Within). Their problems
	// are Validate's to report, which reads the files too: when only this
	// read had any (a file being rewritten), they are reported instead,
	// the module refused rather than started on another read.
	problems := config.NewProblems(file)
	keys := signingKeys(problems, m.Protocol.SigningSecrets)
	m.secretsDigest = config.SecretsDigest(keys)
	m.signingKeys, m.keysOf = keys, m.Protocol.SigningSecrets
	verr := m.Validate()
	if verr == nil {
		verr = problems.Err()
	}
	return m, data, errors.Join(err, verr)
}

func trimExt(s string) string { return s[:len(s)-len(filepath.Ext(s))] }

// ineffective is a key the file sets where it has no effect.
type ineffective struct {
	key    string
	value  any
	reason string
}

// noEffect returns the module file's keys without effect: warned of when
// the module starts, and by ktransfer_bin -check (Config.Warnings).
func (m Module) noEffect() []ineffective {
	var out []ineffective
	add := func(key string, value any, off bool, reason string) {
		if off && m.keysSet[key] {
			out = append(out, ineffective{key, value, reason})
		}
	}
	add("breaker_cooldown_ms", m.BreakerCooldownMs, m.BreakerFailures == 0, "breaker_failures is 0: no circuit breaker")
	const noRetry = "max_retry_times is 0: a failed push is given up at once, never retried"
	add("fail_retry_interval_ms", m.FailRetryIntervalMs, m.MaxRetryTimes == 0, noRetry)
	add("max_retry_interval_ms", m.MaxRetryIntervalMs, m.MaxRetryTimes == 0, noRetry)
	add("max_retry_interval_ms", m.MaxRetryIntervalMs, m.MaxRetryTimes == 1,
		"max_retry_times is 1: the one retry waits fail_retry_interval_ms, never doubled up to this cap")
	add("dispatch", m.Dispatch, !m.serializeByKey(), "serialize_by_key is false: every record goes to any idle worker, whatever its key")
	for i, h := range m.Protocol.Headers {
		for name, value := range h {
			if m.pushSets(name) {
				out = append(out, ineffective{fmt.Sprintf("protocol.headers[%d].%s", i, name), value,
					"ktransfer sets this header on each push itself (the record's value); the file's is not sent"})
			}
		}
	}
	return out
}

// pushSets tells a header name that ktransfer sets on pushes itself, in
// any case: a protocol.headers entry of that name is not sent (it would go
// beside ktransfer's, header names being sent in their canonical form,
// and a backend reading the first would read the file's).
func (m Module) pushSets(name string) bool {
	for _, h := range [][]byte{hdrTopic, hdrPartition, hdrOffset, hdrEpoch, hdrReplay} {
		if strings.EqualFold(name, string(h)) {
			return true
		}
	}
	if len(m.Protocol.SigningSecrets) > 0 {
		for _, h := range [][]byte{hdrWebhookID, hdrWebhookTimestamp, hdrWebhookSignature} {
			if strings.EqualFold(name, string(h)) {
				return true
			}
		}
	}
	return false
}

// Warnings returns the keys without effect that ktransfer.yaml (its kafka
// section: the start logs them) and the module files (a module's start
// logs them) set, one line each ("FILE: key: value has no effect:
// reason"), and the modules' unwise settings ("FILE: what"), as
// ktransfer_bin -check prints them.
func (c Config) Warnings() []string {
	var out []string
	for _, k := range c.Kafka.NoEffect("kafka") {
		out = append(out, fmt.Sprintf("%s: %s: %v has no effect: %s", c.file, k.Key, k.Value, k.Reason))
	}
	for _, m := range c.Modules {
		for _, k := range m.noEffect() {
			out = append(out, fmt.Sprintf("%s: %s: %v has no effect: %s", m.File, k.key, k.value, k.reason))
		}
		for _, w := range m.unwise() {
			out = append(out, m.File+": "+w)
		}
	}
	return out
}

// unwise lists the settings of m that work as written and hurt: each a
// line a module's start logs too, and -check prints.
func (m Module) unwise() []string {
	var out []string
	if m.MaxRetryTimes < 0 && m.FailRetryIntervalMs == 0 && m.MaxRetryIntervalMs == 0 {
		out = append(out, "fail_retry_interval_ms: 0 and max_retry_interval_ms: 0 with max_retry_times: -1 "+
			"retry a failed push with no pause, for ever, unless a Retry-After or an open circuit breaker holds it back "+
			"(a refusal without dead_letter_topic never is): a backend that fails at once gets it in a tight loop (set a pause)")
	}
	return out
}

// Validate reports every problem of ktransfer.yaml at once.
func (c Config) Validate(file string) error {
	p := config.NewProblems(file)
	p.Skip(c.undecoded...)
	if c.LogLevel < 0 || c.LogLevel > logging.MaxLevel {
		p.Addf("log_level", c.LogLevel, "must be 0..%d", logging.MaxLevel)
	}
	switch {
	case c.ZKChroot == "" || c.ZKChroot[0] != '/':
		p.Addf("zk_chroot", c.ZKChroot, "must be an absolute ZooKeeper path like /mq/test_cluster")
	case !zklayout.PathChars(c.ZKChroot):
		p.Addf("zk_chroot", c.ZKChroot, "has a character ZooKeeper refuses in a path (a control character, U+D800–U+F8FF, U+FFF0 and above)")
	case zklayout.DotSegment(c.ZKChroot):
		p.Addf("zk_chroot", c.ZKChroot, "must not hold a . or .. segment (ZooKeeper paths are taken as written elsewhere; here it named another node)")
	}
	// Keys in ms: at most kafkaconf.MaxMs (about 24.8 days), as in the
	// other binaries: ZooKeeper's session timeout is an int32 of ms, and far
	// above, a time.Duration overflows to a negative one.
	if c.ZKTimeoutMs < 1000 || c.ZKTimeoutMs > kafkaconf.MaxMs {
		p.Addf("zk_timeout_ms", c.ZKTimeoutMs, "must be 1000..%d", kafkaconf.MaxMs)
	}
	p.HostList("zk_hosts", c.ZKHosts, true, true, "ZooKeeper")
	c.ZKAuth.Validate(p, "zk_auth", true)
	p.HostList("broker_hosts", c.BrokerHosts, false, false, "broker")
	if len(c.ModuleEnabled) == 0 {
		p.Add("module_enabled", "must name at least one module")
	}
	for i, name := range c.ModuleEnabled {
		switch {
		case !zklayout.NodeName(name):
			p.Addf(fmt.Sprintf("module_enabled[%d]", i), name, "must be a ZooKeeper node name (not . or .., no '/' or control characters)")
		case slices.Index(c.ModuleEnabled, name) != i:
			p.Addf("module_enabled", name, "lists a module twice")
		}
	}
	if c.AdminAddr != "" && !config.ListenAddr(c.AdminAddr) {
		p.Addf("admin_addr", c.AdminAddr, "must be host:port, or empty to turn the admin listener off")
	}
	if c.ShutdownTimeoutMs < 1 || c.ShutdownTimeoutMs > kafkaconf.MaxMs {
		p.Addf("shutdown_timeout_ms", c.ShutdownTimeoutMs, "must be 1..%d", kafkaconf.MaxMs)
	}
	if least := int(kafkaCutoffLeast / time.Millisecond); c.KafkaCutoffMs != 0 && (c.KafkaCutoffMs < least || c.KafkaCutoffMs > kafkaconf.MaxMs) {
		p.Addf("kafka_cutoff_ms", c.KafkaCutoffMs, "must be 0 (never) or %d..%d (the %v between a module's asks of its topic's partitions, and the %v an ask may take)",
			least, kafkaconf.MaxMs, partitionPoll, kafkaTimeout)
	}
	c.Kafka.Validate(p)
	return p.Err()
}

// kafkaInternalTopics are the topics Kafka keeps for itself and refuses
// writes to (other names starting with __ are the users').
var kafkaInternalTopics = []string{"__consumer_offsets", "__transaction_state", "__share_group_state", "__cluster_metadata"}

// Validate reports every problem of a module file at once.
func (m Module) Validate() error {
	p := config.NewProblems(m.File)
	p.Skip(m.undecoded...)
	if m.Topic == "" {
		p.Add("topic", "must name the topic to consume")
	} else if !kafkaconf.ValidTopic(m.Topic) {
		p.Addf("topic", m.Topic, "%s", topicNameRule)
	}
	switch {
	case m.DeadLetterTopic == "":
	case !kafkaconf.ValidTopic(m.DeadLetterTopic):
		p.Addf("dead_letter_topic", m.DeadLetterTopic, "%s", topicNameRule)
	case slices.Contains(kafkaInternalTopics, m.DeadLetterTopic):
		// Kafka refuses writes to them: every record given up on would
		// be retried for ever, holding its partition.
		p.Addf("dead_letter_topic", m.DeadLetterTopic, "is one of Kafka's internal topics, which refuse writes")
	}
	if m.Protocol.Name != "http" {
		p.Addf("protocol.name", m.Protocol.Name, "must be http")
	}
	if _, err := parseTemplate(m.Protocol.URI); err != nil {
		// Shown without the values of query parameters named like a
		// credential (?access_token=…): the problem is told from the
		// shown form when it is there.
		shown := config.RedactQuery(m.Protocol.URI)
		if _, serr := parseTemplate(shown); serr != nil {
			err = serr
		} else {
			err = errors.New("a query value named like a credential (not shown) holds white space or a bad placeholder")
		}
		p.Addf("protocol.uri", shown, "%v", err)
	}
	for i, h := range m.Protocol.Headers {
		field := fmt.Sprintf("protocol.headers[%d]", i)
		if len(h) != 1 {
			// Names only: a value may be a credential (Authorization).
			p.Add(field, fmt.Sprintf("must be one \"Name: value\" pair, got %d: %q", len(h), slices.Sorted(maps.Keys(h))))
			continue
		}
		for name, value := range h {
			switch {
			case !httpToken(name):
				p.Addf(field, name, "must be an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~)")
			case strings.EqualFold(name, "Host") && !hostValue(value):
				p.Addf(field+"."+name, value, "must be a host name or address with an optional numeric port (api.example, api.example:8080, [fe80::1]:8080)")
			case strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }):
				if config.CredentialName(name) {
					p.Add(field+"."+name, "must hold no control characters but tab (value not shown: it may be a secret)")
				} else {
					p.Addf(field+"."+name, value, "must hold no control characters but tab")
				}
			}
		}
	}
	signingKeys(p, m.Protocol.SigningSecrets)
	if h := m.Protocol.TargetHeader; h != "" && !validHeaderName(h) {
		p.Addf("protocol.target_header", h, "must be a record header name (printable ASCII, no spaces)")
	}
	// Keys in ms: at most kafkaconf.MaxMs, as in ktransfer.yaml.
	for _, f := range []struct {
		name, zero string
		v          int
	}{
		{"protocol.read_timeout_ms", "no timeout", m.Protocol.ReadTimeoutMs},
		{"protocol.write_timeout_ms", "no timeout", m.Protocol.WriteTimeoutMs},
		{"protocol.conn_timeout_ms", "3 s, the HTTP client's default", m.Protocol.ConnTimeoutMs},
	} {
		if f.v < 0 || f.v > kafkaconf.MaxMs {
			p.Addf(f.name, f.v, "must be 0..%d (0: %s)", kafkaconf.MaxMs, f.zero)
		}
	}
	if m.WorkerNum < 1 || m.WorkerNum > maxWorkerNum {
		p.Addf("worker_num", m.WorkerNum, "must be 1..%d", maxWorkerNum)
	}
	if m.WindowSize < 1 {
		p.Addf("window_size", m.WindowSize, "must be >= 1")
	}
	if m.MaxRetryTimes < -1 {
		p.Addf("max_retry_times", m.MaxRetryTimes, "must be -1 (retry until success) or >= 0")
	}
	if m.FailRetryIntervalMs < 0 || m.FailRetryIntervalMs > kafkaconf.MaxMs {
		p.Addf("fail_retry_interval_ms", m.FailRetryIntervalMs, "must be 0..%d", kafkaconf.MaxMs)
	}
	if m.MaxRetryIntervalMs < 0 || m.MaxRetryIntervalMs > kafkaconf.MaxMs {
		p.Addf("max_retry_interval_ms", m.MaxRetryIntervalMs, "must be 0..%d", kafkaconf.MaxMs)
	}
	if len(m.BackendServers) == 0 {
		p.Add("backend_servers", "must list at least one host:port")
	}
	for i, b := range m.BackendServers {
		switch {
		case config.DialAddr(b, true):
		case strings.ContainsAny(b, "@?"):
			// A URL with user information or a query: it may hold a
			// credential, which belongs in protocol.headers.
			p.Add("backend_servers["+strconv.Itoa(i)+"]", "must be host:port (value not shown: it holds '@' or '?', and may hold a credential; put credentials in protocol.headers)")
		default:
			p.Addf("backend_servers["+strconv.Itoa(i)+"]", b, "must be host:port")
		}
	}
	// In seconds, bounded as the keys in ms are (kafkaconf.MaxMs): far
	// above, the commit loop's interval overflows to a negative one.
	if m.ZKOffsetUpdateIntervalS < 0 || m.ZKOffsetUpdateIntervalS > kafkaconf.MaxMs/1000 {
		p.Addf("zk_offset_update_interval_sec", m.ZKOffsetUpdateIntervalS, "must be 0..%d", kafkaconf.MaxMs/1000)
	}
	if m.WaitingQueueSize < 0 {
		p.Addf("waiting_queue_size", m.WaitingQueueSize, "must be >= 0")
	}
	if m.StartFrom != "oldest" && m.StartFrom != "newest" {
		p.Addf("start_from", m.StartFrom, "must be oldest or newest")
	}
	if !slices.Contains([]string{"oldest", "newest", "stop"}, m.OffsetOutOfRange) {
		p.Addf("offset_out_of_range", m.OffsetOutOfRange, "must be oldest, newest or stop")
	}
	if m.Dispatch != dispatchHash && m.Dispatch != dispatchIdleWorker {
		p.Addf("dispatch", m.Dispatch, "must be hash or idle_worker")
	}
	if m.DeadLetterTopic != "" && m.DeadLetterTopic == m.Topic {
		p.Addf("dead_letter_topic", m.DeadLetterTopic, "must differ from topic")
	}
	if !(m.RateLimit == 0 || m.RateLimit >= minRateLimit) || math.IsInf(m.RateLimit, 1) {
		p.Addf("rate_limit", m.RateLimit, "must be 0 (no limit) or >= %g records per second", minRateLimit)
	}
	if m.Burst < 0 {
		p.Addf("burst", m.Burst, "must be >= 0 (0: max(1, rate_limit/10))")
	} else if m.Burst > 0 && m.RateLimit == 0 {
		p.Addf("burst", m.Burst, "needs a rate_limit (burst only shapes a rate limit)")
	}
	if m.BreakerFailures < 0 {
		p.Addf("breaker_failures", m.BreakerFailures, "must be >= 0 (0: no circuit breaker)")
	}
	if m.BreakerCooldownMs < 1 || m.BreakerCooldownMs > int(maxBreakerCooldown/time.Millisecond) {
		p.Addf("breaker_cooldown_ms", m.BreakerCooldownMs, "must be 1..%d", maxBreakerCooldown/time.Millisecond)
	}
	fetchOK := m.FetchMaxBytes >= 1<<10 && m.FetchMaxBytes <= maxFetchMaxBytes
	if !fetchOK {
		p.Addf("fetch_max_bytes", m.FetchMaxBytes, "must be %d..%d", 1<<10, maxFetchMaxBytes)
	}
	if m.FetchMaxPartitionBytes < 1 || fetchOK && m.FetchMaxPartitionBytes > m.FetchMaxBytes {
		p.Addf("fetch_max_partition_bytes", m.FetchMaxPartitionBytes, "must be 1..fetch_max_bytes (%d)", m.FetchMaxBytes)
	}
	return p.Err()
}

// httpToken reports whether s is an HTTP header name (RFC 9110's token).
func httpToken(s string) bool {
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// topicNameRule is what a topic name must be (kafkaconf.ValidTopic).
const topicNameRule = "must be a Kafka topic name (ASCII letters, digits, '.', '_' and '-', at most 249, not . or ..)"

// burst is burst, or its default: a tenth of a second's worth of records.
func (m Module) burst() int {
	if m.Burst > 0 {
		return m.Burst
	}
	return max(1, int(m.RateLimit/10))
}

// serializeByKey is serialize_by_key, true unless set false.
func (m Module) serializeByKey() bool { return m.SerializeByKey == nil || *m.SerializeByKey }

// hostValue tells a Host header value the backends can take: a host name
// (letters, digits, '-', '.', '_'), an IPv4 address or a bracketed IPv6
// one, with an optional numeric port. A path, user information, a named
// port or an unbracketed IPv6 address is no host: sent as written, the
// backend takes it for another host or refuses the push.
func hostValue(v string) bool {
	host, port, hasPort := v, "", false
	if i := strings.LastIndexByte(v, ':'); i >= 0 && !strings.HasSuffix(v, "]") {
		host, port, hasPort = v[:i], v[i+1:], true
	}
	if hasPort {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '+' || port[0] == '-' {
			return false
		}
	}
	if ip, ok := strings.CutPrefix(host, "["); ok {
		ip, ok = strings.CutSuffix(ip, "]")
		return ok && strings.Contains(ip, ":") && net.ParseIP(ip) != nil
	}
	return host != "" && !strings.ContainsFunc(host, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
	})
}
