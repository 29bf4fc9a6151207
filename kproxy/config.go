// Package kproxy is the HTTP → Kafka proxy: POST /commit?topic=&key=&acks=
// with one msgpack value as the body becomes one Kafka record.
package kproxy

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"path"
	"strconv"
	"strings"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/logging"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// Config is kproxy.yaml. The first block is the 2015 suite's keys, loaded
// unchanged; the rest are optional.
type Config struct {
	LogDir              string   `yaml:"log_dir"`
	LogLevel            int      `yaml:"log_level"`
	Port                int      `yaml:"port"`
	ReadTimeoutMs       int      `yaml:"read_timeout_ms"`
	WriteTimeoutMs      int      `yaml:"write_timeout_ms"`
	ReqPoolSize         int      `yaml:"req_pool_size"`
	ProducerNum         int      `yaml:"producer_num"`
	MaxRequestSizeBytes int      `yaml:"max_request_size_bytes"`
	BrokerHosts         []string `yaml:"broker_hosts"`

	// ListenHost is the address the HTTP port (and grpc_port) binds to;
	// empty: all interfaces.
	ListenHost string `yaml:"listen_host"`
	// TLSCertFile and TLSKeyFile, when set, serve the HTTP port (and
	// grpc_port) over TLS (PEM files; the certificate file may hold the
	// chain).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// IdleTimeoutMs closes keep-alive connections idle this long.
	IdleTimeoutMs int `yaml:"idle_timeout_ms"`
	// AdminAddr serves /health, /metrics and /debug/pprof; empty: off.
	AdminAddr string `yaml:"admin_addr"`
	// ProduceTimeoutMs bounds the wait for Kafka's answer; past it the
	// client gets 504 and is told the record may have been written.
	ProduceTimeoutMs int `yaml:"produce_timeout_ms"`
	// ShutdownTimeoutMs bounds finishing in-flight requests on SIGTERM.
	ShutdownTimeoutMs int `yaml:"shutdown_timeout_ms"`
	// Partitioner routes keyed records: murmur2 (the Java client's),
	// fnv1a (sarama's historical default, as the 2015 suite routed).
	Partitioner string `yaml:"partitioner"`
	// Compression of record batches: none, gzip, snappy, lz4, zstd.
	Compression string `yaml:"compression"`
	// LingerMs waits this long to fill a batch; 0 sends at once (batches
	// still form while earlier requests are on the wire).
	LingerMs int `yaml:"linger_ms"`
	// MaxMessageBytes is the largest record batch sent; keep it at or below
	// the brokers' message.max.bytes. Larger records get 413.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxInFlightRequests is how many produce requests may wait for a
	// broker's answer at once, per broker and acks level. With 1, records
	// arriving meanwhile form the next, larger batch: on the loopback
	// benchmark this gives about 20% more requests per second than 5 and a
	// quarter less broker CPU, and a retry can never reorder a partition.
	MaxInFlightRequests int `yaml:"max_in_flight_requests"`
	// AutoCreateTopics asks the brokers to create unknown topics (they do
	// only when auto.create.topics.enable is on); false: unknown → 404.
	AutoCreateTopics bool `yaml:"auto_create_topics"`
	// Kafka holds the client settings shared by the three binaries.
	Kafka kafkaconf.Config `yaml:"kafka"`

	// TopicsAllowed limits the topics anyone may write to (names or
	// path.Match patterns); empty: any topic. Topics starting with "__"
	// (Kafka's own) are always refused.
	TopicsAllowed []string `yaml:"topics_allowed"`
	// Clients, when set, require every request to name a client and its
	// secret (Authorization: Basic) and limit each to its topics.
	Clients []Client `yaml:"clients"`

	// MaxBatchRecords is the most records a /batch request may carry. A
	// batch's records count against req_pool_size one by one, so a batch
	// larger than req_pool_size is refused too.
	MaxBatchRecords int `yaml:"max_batch_records"`
	// TransactionalProducers is how many Kafka transactions (atomic=1
	// batches) may run at once: each runs on its own transactional client,
	// whose transactions follow one another. 0: atomic batches are off.
	TransactionalProducers int `yaml:"transactional_producers"`
	// TransactionalID prefixes the transactional ids of those clients
	// (<prefix>-0, <prefix>-1, …); empty: kproxy-<host name>-<port>, the
	// listen_host before the port when set (defaultTxnID). Two
	// kproxy processes must not share one: each would fence the other's
	// transactions.
	TransactionalID string `yaml:"transactional_id"`
	// ExtHeaders are record headers kproxy adds from the request (see
	// extFieldNames): ip, ua, rid, ck. Default none.
	ExtHeaders []string `yaml:"ext_headers"`
	// TrustedProxies are the addresses (IPs or CIDRs) whose X-Forwarded-For
	// is believed for the ip ext field; empty: the peer's address is it.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// MaxHeaderBytes bounds a request's line and headers (431 above), and
	// so the X-Kafka-Header-* fields; it is the size of the buffer each
	// connection reads a request into.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxBodyBytesInFlight bounds the memory of the request bodies being
	// read and handled: a body declared over 16 KiB, or chunked, holds its
	// buffer (its Content-Length rounded up to a power of two) from its
	// headers to its answer; a request whose buffer would pass this is answered 503 +
	// Retry-After before its body is read (bodybudget.go). A body larger
	// than this alone is taken when no other is held. A gRPC message over
	// 16 KiB holds its copy from its read until Kafka's client lets its
	// records go (holdMessage), refused 503 once read when it would pass.
	MaxBodyBytesInFlight int `yaml:"max_body_bytes_in_flight"`
	// ReleaseIdleBuffers gives a keep-alive connection's read and write
	// buffers back after each request (fasthttp's ReduceMemoryUsage): an
	// idle connection then holds none (the wait for a plain-HTTP request
	// reads into a pooled buffer: readAheadConn). false keeps them: about
	// 10 KiB more per idle connection, and no less CPU since then.
	ReleaseIdleBuffers bool `yaml:"release_idle_buffers"`

	// GRPCPort serves the gRPC service (kafkahttpwrapper.v1.KProxy, health
	// and reflection) on listen_host; 0: off. TLS as the HTTP port.
	GRPCPort int `yaml:"grpc_port"`
	// GRPCMaxConcurrentStreams is the most gRPC calls one connection may
	// have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS): a client
	// opening more waits until one ends, as its HTTP/2 library does.
	GRPCMaxConcurrentStreams int `yaml:"grpc_max_concurrent_streams"`

	// SpoolDir, when set, is the directory of the local spool: a record
	// Kafka cannot take within spool_after_ms is appended there and
	// answered 202, and drained to Kafka in order (spool.go). Empty: off.
	SpoolDir string `yaml:"spool_dir"`
	// SpoolAfterMs is how long a record may wait for Kafka before it is
	// spooled; below produce_timeout_ms.
	SpoolAfterMs int `yaml:"spool_after_ms"`
	// SpoolMaxBytes bounds the spool's segments on disk; a record that
	// would pass it is refused with 503.
	SpoolMaxBytes int64 `yaml:"spool_max_bytes"`

	// file is the file LoadConfig read, named in start-up errors; "" for a
	// Config built in code.
	file string
	// adminAddrDefault is set by LoadConfig when the file does not set
	// admin_addr (2015 files have none): a taken default port is then
	// replaced by a free one.
	adminAddrDefault bool
	// producerNumSet is set by LoadConfig when the file sets producer_num,
	// whatever its value: the key has no effect, and is noted at start.
	producerNumSet bool
	// keysSet are the top-level keys the file gives a value
	// (config.TopKeys): the keys without effect among them are warned
	// of at start (noEffect).
	keysSet map[string]bool
	// fileDigests are, by key (tls_cert_file, tls_key_file, kafka), the
	// digest of the files the key names (config.FilesDigest): a file
	// rewritten in place (a renewed certificate, a rotated password) is
	// read again only by a restart, which a reload says.
	fileDigests map[string]string
	// undecoded are the fields of the file that did not decode (reported
	// by LoadConfig), left out of Validate's problems.
	undecoded []string
}

// DefaultConfig returns the defaults; a file is decoded over them.
func DefaultConfig() Config {
	return Config{
		LogLevel:             4,
		Port:                 5030,
		ReadTimeoutMs:        100,
		WriteTimeoutMs:       100,
		ReqPoolSize:          10240,
		ProducerNum:          1,
		MaxRequestSizeBytes:  10 << 20,
		MaxHeaderBytes:       4096,
		MaxBodyBytesInFlight: 256 << 20,
		ReleaseIdleBuffers:   true,
		IdleTimeoutMs:        60_000,
		AdminAddr:            "127.0.0.1:5040",
		ProduceTimeoutMs:     10_000,
		ShutdownTimeoutMs:    15_000,
		Partitioner:          "murmur2",
		Compression:          "none",
		MaxMessageBytes:      1_000_000,
		MaxInFlightRequests:  1,
		AutoCreateTopics:     true,
		Kafka:                kafkaconf.Default(),

		MaxBatchRecords:          10_000,
		TransactionalProducers:   2,
		GRPCMaxConcurrentStreams: 100,

		SpoolAfterMs:  1000,
		SpoolMaxBytes: 1 << 30,
	}
}

// LoadConfig reads path over the defaults and validates the result.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	data, adminDefault, err := config.LoadAddr(path, &cfg, &cfg.AdminAddr)
	cfg.adminAddrDefault = adminDefault
	// producer_num is noted at start whenever the file sets it
	// (producer_num: 1 included, as 2015 files have it).
	cfg.keysSet = config.TopKeys(data)
	cfg.producerNumSet = cfg.keysSet["producer_num"]
	// Keys that did not decode are reported with the problems of the
	// values that did: every problem at once.
	undecoded, checkable := config.Checkable(err)
	if err != nil && !checkable {
		return cfg, err
	}
	cfg.file, cfg.undecoded = path, undecoded
	cfg.fileDigests = map[string]string{
		"tls_cert_file": config.FilesDigest(cfg.TLSCertFile),
		"tls_key_file":  config.FilesDigest(cfg.TLSKeyFile),
		"kafka":         config.FilesDigest(cfg.Kafka.TLS.CAFile, cfg.Kafka.TLS.CertFile, cfg.Kafka.TLS.KeyFile, cfg.Kafka.SASL.PasswordFile),
	}
	if err = errors.Join(err, cfg.Validate(path)); err != nil {
		return cfg, err
	}
	for i, cl := range cfg.Clients {
		// Read here, where the caller bounds the reading of files (a
		// reload, a start): the rules use this read, kept as its sum.
		secret, err := config.SecretOf(cl.Secret, cl.SecretFile)
		if err != nil {
			return cfg, fmt.Errorf("%s: clients[%d].secret_file: %w", path, i, err)
		}
		cfg.Clients[i].loaded, cfg.Clients[i].read = sha256.Sum256([]byte(secret)), true
	}
	return cfg, nil
}

// ineffective is a key the file sets that has no effect with the rest of
// it: the start logs a warning (the file keeps loading, as it did).
type ineffective struct {
	key    string
	value  any
	reason string
}

// noEffect returns the keys the file sets that have no effect: the spool's
// without spool_dir, gRPC's without grpc_port, the kafka section's
// (kafkaconf's NoEffect).
func (c Config) noEffect() []ineffective {
	var out []ineffective
	for _, k := range c.offKeys() {
		if c.keysSet[k.key] {
			out = append(out, k)
		}
	}
	for _, k := range c.Kafka.NoEffect("kafka") {
		out = append(out, ineffective{k.Key, k.Value, k.Reason})
	}
	return out
}

// offKeys are the top-level keys whose value has no effect under c's
// other keys, set in the file or not: the spool's without spool_dir,
// gRPC's without grpc_port.
func (c Config) offKeys() []ineffective {
	var out []ineffective
	add := func(key string, value any, off bool, reason string) {
		if off {
			out = append(out, ineffective{key, value, reason})
		}
	}
	add("spool_after_ms", c.SpoolAfterMs, c.SpoolDir == "", "spool_dir is not set: the spool is off")
	add("spool_max_bytes", c.SpoolMaxBytes, c.SpoolDir == "", "spool_dir is not set: the spool is off")
	add("grpc_max_concurrent_streams", c.GRPCMaxConcurrentStreams, c.GRPCPort == 0, "grpc_port is 0: gRPC is off")
	return out
}

// unwise returns the values that load (as they did) but work against
// the file's intent: spool_max_bytes without room for a record of
// max_message_bytes and what its spool entry adds, with which /health says
// the spool is full during any outage (healthStatus). The reason reads
// after the value. Below max_message_bytes, Validate refuses it.
func (c Config) unwise() []ineffective {
	var out []ineffective
	room := int64(c.MaxMessageBytes) + spoolEntrySlack
	if c.SpoolDir != "" && c.SpoolMaxBytes >= int64(c.MaxMessageBytes) && c.SpoolMaxBytes < room {
		out = append(out, ineffective{"spool_max_bytes", c.SpoolMaxBytes, fmt.Sprintf(
			"leaves no room for a record of max_message_bytes (%d) and what its spool entry adds (up to %d bytes): /health says the spool is full whenever it holds a record or no broker answers; set it to %d or more",
			c.MaxMessageBytes, spoolEntrySlack, room)})
	}
	if ms := txnTimeoutMs(c.ProduceTimeoutMs); c.TransactionalProducers > 0 && ms > kafkaTxnMaxTimeoutMs {
		out = append(out, ineffective{"produce_timeout_ms", c.ProduceTimeoutMs, fmt.Sprintf(
			"gives atomic batches a transaction timeout of %d ms (2 × produce_timeout_ms + 5 s), above Kafka's default transaction.max.timeout.ms (%d): brokers that keep the default refuse every atomic batch (500); set produce_timeout_ms to %d or less, or raise the brokers' transaction.max.timeout.ms",
			ms, kafkaTxnMaxTimeoutMs, (kafkaTxnMaxTimeoutMs-5000)/2)})
	}
	if most := chunkedBuffer(c.MaxRequestSizeBytes); int64(c.MaxBodyBytesInFlight) < 2*int64(most) {
		out = append(out, ineffective{"max_body_bytes_in_flight", c.MaxBodyBytesInFlight, fmt.Sprintf(
			"holds fewer than two buffers of a chunked body or one of max_request_size_bytes (%d bytes each, a power of two): such requests are taken one at a time, the others answered 503; set it to %d or more",
			most, 2*int64(most))})
	}
	// A batch above req_pool_size is refused whole, with no results.
	if most := min(c.MaxBatchRecords, c.ReqPoolSize); c.GRPCPort > 0 && most > grpcAnswerRecords {
		out = append(out, ineffective{"max_batch_records", c.MaxBatchRecords, fmt.Sprintf(
			"lets one gRPC answer carry %d results (with req_pool_size %d), each with its reason when its record failed (up to about 320 bytes): above %d the answer of a batch that failed can pass the 4 MiB gRPC clients take by default (grpc-go, grpc-java), which then fail the call (RESOURCE_EXHAUSTED) although records may have been written; raise the clients' receive limit (grpc-go: grpc.MaxCallRecvMsgSize) or keep max_batch_records at %d or less",
			most, c.ReqPoolSize, grpcAnswerRecords, grpcAnswerRecords)})
	}
	return out
}

// grpcAnswerRecords is the most results a gRPC answer carries within the
// 4 MiB gRPC clients take by default, at 320 bytes a result (unwise): a
// failed one's framing (31 bytes: partition and offset -1 are 10-byte
// varints) and its reason (295 bytes for the longest, Kafka's refusal
// of a batch at acks=-1).
const grpcAnswerRecords = 4 << 20 / 320

// kafkaTxnMaxTimeoutMs is Kafka's default transaction.max.timeout.ms, the
// longest transaction timeout brokers left at their default accept.
const kafkaTxnMaxTimeoutMs = 900000

// txnTimeoutMs is the transaction timeout of atomic batches (txnPool):
// twice the produce timeout, at least 1 s, plus 5 s.
func txnTimeoutMs(produceTimeoutMs int) int64 {
	return 2*int64(max(produceTimeoutMs, 1000)) + 5000
}

// Warnings returns the keys without effect the file sets, one line each
// ("FILE: key: value has no effect: reason"), and the unwise values
// ("FILE: key: value reason"), as kproxy_bin -check prints them; the start
// logs them too.
func (c Config) Warnings() []string {
	var out []string
	for _, k := range c.noEffect() {
		out = append(out, fmt.Sprintf("%s: %s: %v has no effect: %s", c.file, k.key, k.value, k.reason))
	}
	for _, k := range c.unwise() {
		out = append(out, fmt.Sprintf("%s: %s: %v %s", c.file, k.key, k.value, k.reason))
	}
	return out
}

var compressions = []string{"none", "gzip", "snappy", "lz4", "zstd"}

// Validate reports every problem at once; file names the config file.
func (c Config) Validate(file string) error {
	p := config.NewProblems(file)
	p.Skip(c.undecoded...)
	if c.LogLevel < 0 || c.LogLevel > logging.MaxLevel {
		p.Addf("log_level", c.LogLevel, "must be 0..%d (0 none, 1 fatal, 2 +warning, 4 +notice, 8 +trace, 16 +debug)", logging.MaxLevel)
	}
	if c.Port < 0 || c.Port > 65535 {
		p.Addf("port", c.Port, "must be 0..65535 (0: any free port)")
	}
	switch {
	case c.GRPCPort < 0 || c.GRPCPort > 65535:
		p.Addf("grpc_port", c.GRPCPort, "must be 0..65535 (0: gRPC off)")
	case c.GRPCPort != 0 && c.GRPCPort == c.Port:
		p.Addf("grpc_port", c.GRPCPort, "must differ from port")
	}
	if c.ListenHost != "" && net.ParseIP(c.ListenHost) == nil && c.ListenHost != "localhost" {
		p.Addf("listen_host", c.ListenHost, "must be an IP address or empty")
	}
	positive := []struct {
		name string
		v    int
	}{
		{"read_timeout_ms", c.ReadTimeoutMs}, {"write_timeout_ms", c.WriteTimeoutMs},
		{"req_pool_size", c.ReqPoolSize}, {"producer_num", c.ProducerNum},
		{"max_request_size_bytes", c.MaxRequestSizeBytes}, {"idle_timeout_ms", c.IdleTimeoutMs},
		{"shutdown_timeout_ms", c.ShutdownTimeoutMs}, {"max_in_flight_requests", c.MaxInFlightRequests},
		{"max_batch_records", c.MaxBatchRecords}, {"grpc_max_concurrent_streams", c.GRPCMaxConcurrentStreams},
		{"max_body_bytes_in_flight", c.MaxBodyBytesInFlight},
	}
	for _, f := range positive {
		if f.v < 1 {
			p.Addf(f.name, f.v, "must be >= 1")
		}
	}
	// Durations in ms: at most kafkaconf.MaxMs (Kafka's int32 wire fields;
	// far above, a time.Duration overflows to a negative one).
	for _, f := range []struct {
		name string
		v    int
	}{
		{"read_timeout_ms", c.ReadTimeoutMs}, {"write_timeout_ms", c.WriteTimeoutMs},
		{"idle_timeout_ms", c.IdleTimeoutMs}, {"shutdown_timeout_ms", c.ShutdownTimeoutMs},
		{"spool_after_ms", c.SpoolAfterMs},
	} {
		if f.v > kafkaconf.MaxMs {
			p.Addf(f.name, f.v, "must be 1..%d (about 24.8 days)", kafkaconf.MaxMs)
		}
	}
	// franz-go's own limits, checked here so that -check finds them and
	// the error names the key: a produce timeout of 100 ms at least; the
	// transaction timeout (2 × produce_timeout_ms + 5 s) fits Kafka's
	// int32 ms; a linger of a minute at most; record batches of 512 bytes
	// to the 100 MiB of a produce request.
	if c.ProduceTimeoutMs < 100 || c.ProduceTimeoutMs > maxProduceTimeoutMs {
		p.Addf("produce_timeout_ms", c.ProduceTimeoutMs, "must be 100..%d", maxProduceTimeoutMs)
	}
	if c.MaxMessageBytes < minBatchBytes || c.MaxMessageBytes > maxBatchBytes {
		p.Addf("max_message_bytes", c.MaxMessageBytes, "must be %d..%d (100 MiB)", minBatchBytes, maxBatchBytes)
	}
	if c.GRPCMaxConcurrentStreams > maxGRPCStreams {
		p.Addf("grpc_max_concurrent_streams", c.GRPCMaxConcurrentStreams, "must be <= %d", maxGRPCStreams)
	}
	if c.MaxInFlightRequests > 5 {
		p.Addf("max_in_flight_requests", c.MaxInFlightRequests, "must be 1..5")
	}
	if c.TransactionalProducers < 0 || c.TransactionalProducers > 16 {
		p.Addf("transactional_producers", c.TransactionalProducers, "must be 0..16 (0: atomic batches off)")
	}
	switch {
	case c.TransactionalID != "" && checkTopicName([]byte(c.TransactionalID)) != "":
		p.Addf("transactional_id", c.TransactionalID, "must be ASCII letters, digits, '.', '_' and '-', at most 249")
	case c.TransactionalID != "" && c.TransactionalProducers == 0:
		// As kafka.tls keys with enable false: set and without effect.
		p.Addf("transactional_id", c.TransactionalID, "has no effect with transactional_producers: 0 (atomic batches off); remove it or set transactional_producers")
	}
	if c.LingerMs < 0 || c.LingerMs > 60_000 {
		p.Addf("linger_ms", c.LingerMs, "must be 0..60000 (a minute)")
	}
	p.HostList("broker_hosts", c.BrokerHosts, true, false, "broker")
	if c.AdminAddr != "" && !config.ListenAddr(c.AdminAddr) {
		p.Addf("admin_addr", c.AdminAddr, "must be host:port, or empty to turn the admin listener off")
	} else if c.AdminAddr != "" && !c.adminAddrDefault {
		// Two listeners on one port of one address never both start (the
		// default admin_addr moves to a free port: listenAdmin).
		for _, l := range []struct {
			name string
			port int
		}{{"port", c.Port}, {"grpc_port", c.GRPCPort}} {
			if sameListenAddr(c.AdminAddr, c.ListenHost, l.port) {
				p.Addf("admin_addr", c.AdminAddr, "must not be the address of %s %d (listen_host %q)", l.name, l.port, c.ListenHost)
			}
		}
	}
	if c.Partitioner != "murmur2" && c.Partitioner != "fnv1a" {
		p.Addf("partitioner", c.Partitioner, "must be murmur2 or fnv1a")
	}
	if !contains(compressions, c.Compression) {
		p.Addf("compression", c.Compression, "must be one of %v", compressions)
	}
	c.Kafka.Validate(p)
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		p.Add("tls_cert_file", "tls_cert_file and tls_key_file go together")
	} else if c.TLSCertFile != "" {
		if err := config.CheckSecretFile(c.TLSKeyFile); err != nil {
			p.Add("tls_key_file", err.Error())
		} else if _, err := config.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			p.Addf("tls_cert_file", c.TLSCertFile, "with tls_key_file %q: %v", c.TLSKeyFile, err)
		}
	}
	for i, t := range c.TopicsAllowed {
		if !topicPattern(t) {
			p.Addf(fmt.Sprintf("topics_allowed[%d]", i), t, "must be a topic name or a pattern like billing.*")
		}
	}
	names := map[string]bool{}
	for i, cl := range c.Clients {
		field := fmt.Sprintf("clients[%d]", i)
		switch {
		case cl.Name == "":
			p.Addf(field+".name", cl.Name, "must be a non-empty name without ':'")
		case strings.Contains(cl.Name, ":"):
			// user:secret, as curl -u takes it, pasted whole: the part
			// after ':' not shown.
			p.Add(field+".name", "must be a name without ':' (got "+strconv.Quote(cl.Name[:strings.IndexByte(cl.Name, ':')+1]+"…")+", not shown past its ':')")
		case names[cl.Name]:
			p.Addf(field+".name", cl.Name, "names a client twice")
		}
		names[cl.Name] = true
		p.Secret(field, "secret", cl.Secret, cl.SecretFile)
		if cl.RateLimit < 0 || math.IsNaN(cl.RateLimit) || math.IsInf(cl.RateLimit, 0) {
			p.Addf(field+".rate_limit", cl.RateLimit, "must be >= 0 requests per second (0: no limit)")
		}
		if cl.Burst < 0 || (cl.Burst > 0 && cl.RateLimit == 0) {
			p.Addf(field+".burst", cl.Burst, "must be >= 1, and goes with rate_limit")
		}
		if len(cl.Topics) == 0 {
			p.Add(field+".topics", "must list the topics (or patterns) the client may write to")
		}
		for j, t := range cl.Topics {
			if !topicPattern(t) {
				p.Addf(fmt.Sprintf("%s.topics[%d]", field, j), t, "must be a topic name or a pattern")
			}
		}
	}
	// Each connection reading a request holds a buffer of this size; past
	// the largest record batch, headers could never be written anyway.
	if c.MaxHeaderBytes < 1024 || c.MaxHeaderBytes > maxBatchBytes {
		p.Addf("max_header_bytes", c.MaxHeaderBytes, "must be 1024..%d (100 MiB, the largest record batch)", maxBatchBytes)
	}
	seen := map[string]bool{}
	for i, name := range c.ExtHeaders {
		field := fmt.Sprintf("ext_headers[%d]", i)
		switch {
		case !contains(extFieldNames[:], name):
			p.Addf(field, name, "must be one of %s", strings.Join(extFieldNames[:], ", "))
		case seen[name]:
			p.Addf(field, name, "names an ext field twice")
		}
		seen[name] = true
	}
	for i, t := range c.TrustedProxies {
		if _, err := parsePrefix(t); err != nil {
			p.Addf(fmt.Sprintf("trusted_proxies[%d]", i), t, "must be an IP address or a CIDR like 10.0.0.0/8")
		}
	}
	if len(c.TrustedProxies) > 0 && !contains(c.ExtHeaders, "ip") {
		// Only the ip ext field reads X-Forwarded-For.
		p.Addf("trusted_proxies", c.TrustedProxies, "has no effect without ip in ext_headers; add it there or remove trusted_proxies")
	}
	switch {
	case c.SpoolAfterMs < 1:
		p.Addf("spool_after_ms", c.SpoolAfterMs, "must be >= 1")
	case c.SpoolDir != "" && c.SpoolAfterMs >= c.ProduceTimeoutMs:
		// A record is given to the spool before its produce deadline.
		p.Addf("spool_after_ms", c.SpoolAfterMs, "must be below produce_timeout_ms (%d)", c.ProduceTimeoutMs)
	}
	if c.SpoolDir != "" {
		// Missing is fine: created at start.
		if err := spool.CheckDir(c.SpoolDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			p.Addf("spool_dir", c.SpoolDir, "must be a directory kproxy can write to (%v)", strings.TrimPrefix(err.Error(), "spool: "))
		}
	}
	switch {
	case c.SpoolMaxBytes < minSpoolBytes:
		p.Addf("spool_max_bytes", c.SpoolMaxBytes, "must be >= %d (1 MiB)", minSpoolBytes)
	case c.SpoolDir != "" && c.SpoolMaxBytes < int64(c.MaxMessageBytes):
		// /health says the spool is full once it has no room for a
		// record of max_message_bytes: such a spool always would be.
		p.Addf("spool_max_bytes", c.SpoolMaxBytes, "must be >= max_message_bytes (%d)", c.MaxMessageBytes)
	}
	return p.Err()
}

// Bounds of franz-go's: the produce timeout such that the transaction
// timeout (2 × it + 5 s: txnPool) fits an int32 of ms, and the size of a
// record batch (at least 512 bytes, at most a produce request's 100 MiB).
const (
	maxProduceTimeoutMs = (kafkaconf.MaxMs - 5000) / 2
	minBatchBytes       = 512
	maxBatchBytes       = 100 << 20
)

// maxGRPCStreams bounds grpc_max_concurrent_streams: each open
// ProduceStream holds goroutines and up to streamWindow requests.
const maxGRPCStreams = 10_000

// minSpoolBytes is the smallest spool_max_bytes: room for one record of
// the default max_message_bytes.
const minSpoolBytes = 1 << 20

// sameListenAddr reports whether a listener on addr (host:port) and one
// on host and port would want the same address: the same port (not 0: any
// free one), and hosts naming one address (listenIP) or one of them every
// interface.
func sameListenAddr(addr, host string, port int) bool {
	h, p, _ := net.SplitHostPort(addr)
	if port == 0 || p != strconv.Itoa(port) {
		return false
	}
	any := func(h string) bool { ip := net.ParseIP(h); return h == "" || ip != nil && ip.IsUnspecified() }
	return any(h) || any(host) || listenIP(h) == listenIP(host)
}

// listenIP is the address a listener on host binds, as far as the text
// tells: Go listens on localhost's IPv4 address, and an IPv4 address
// written IPv4-mapped is that address.
func listenIP(host string) string {
	if host == "localhost" {
		return "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return host
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// topicPattern tells an entry of topics_allowed or a client's topics that
// can match a topic: a pattern path.Match parses whose characters outside
// bracket classes are those of topic names (ASCII letters, digits, '.',
// '_', '-'), '*', '?', or one escaped with '\\'. A space (a quoted
// copy-paste: "orders "), a '/' or any other character there matches no
// topic name: every request for the topic meant was refused 403 at run
// time, with nothing said at start. A class ([^/]*, [!-~]) may name any.
func topicPattern(t string) bool {
	if _, err := path.Match(t, ""); err != nil || t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case c == '*' || c == '?' || topicNameChar(c):
		case c == '\\' && i+1 < len(t) && topicNameChar(t[i+1]):
			i++
		case c == '[':
			// path.Match parsed it: the class ends at the first ']'
			// not escaped.
			for i++; i < len(t) && t[i] != ']'; i++ {
				if t[i] == '\\' {
					i++
				}
			}
		default:
			return false
		}
	}
	return true
}
