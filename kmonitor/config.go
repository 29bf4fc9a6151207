// Package kmonitor serves the push delay (lag) of ktransfer modules: the
// offsets they commit to ZooKeeper, followed with watches, against the
// partitions' log-end offsets polled from the brokers.
package kmonitor

import (
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/logging"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// Config is kmonitor.yaml: a base section, an http_server section, and one
// section per cluster named in base.clusters.
type Config struct {
	Base       BaseConfig               `yaml:"base"`
	HTTPServer HTTPConfig               `yaml:"http_server"`
	Clusters   map[string]ClusterConfig `yaml:",inline"`

	// file is the file LoadConfig read, named in start-up errors; "" for a
	// Config built in code.
	file string
	// undecoded are the fields of the file that did not decode (reported
	// by LoadConfig), left out of Validate's problems.
	undecoded []string
}

// BaseConfig is the base section.
type BaseConfig struct {
	LogDir   string   `yaml:"log_dir"`
	LogLevel int      `yaml:"log_level"`
	Clusters []string `yaml:"clusters"`
	// PollIntervalMs is how often log-end offsets are read from the brokers.
	PollIntervalMs int `yaml:"poll_interval_ms"`
	// HistoryMinutes bounds the log-end history kept to estimate lag in
	// seconds; older lag is reported as at least this long.
	HistoryMinutes int `yaml:"history_minutes"`
}

// HTTPConfig is the http_server section.
type HTTPConfig struct {
	Port           int    `yaml:"port"`
	ReadTimeoutMs  int    `yaml:"read_timeout_ms"`
	WriteTimeoutMs int    `yaml:"write_timeout_ms"`
	ListenHost     string `yaml:"listen_host"`
}

// ClusterConfig is one cluster's section.
type ClusterConfig struct {
	Chroot             string   `yaml:"chroot"`
	ZKConnectTimeoutMs int      `yaml:"zk_connect_timeout_ms"`
	ZKSessionTimeoutMs int      `yaml:"zk_session_timeout_ms"`
	ZKHosts            []string `yaml:"zk_hosts"`
	// BrokerHosts, when set, replaces discovery from <chroot>/brokers/ids
	// (KRaft clusters have no registrations in ZooKeeper).
	BrokerHosts []string         `yaml:"broker_hosts"`
	Kafka       kafkaconf.Config `yaml:"kafka"`
	// ZKAuth is ZooKeeper digest authentication, for offsets ktransfer
	// keeps private (its zk_auth.acl: private).
	ZKAuth zklayout.Auth `yaml:"zk_auth"`
}

// DefaultConfig returns the defaults; a file is decoded over them.
func DefaultConfig() Config {
	return Config{
		Base:       BaseConfig{LogLevel: 4, PollIntervalMs: 1000, HistoryMinutes: 60},
		HTTPServer: HTTPConfig{Port: 55325, ReadTimeoutMs: 100, WriteTimeoutMs: 100},
	}
}

// maxHistoryMinutes bounds history_minutes where it stops fitting a
// time.Duration. It is not a key in ms (nothing sends it to Kafka or
// ZooKeeper), so kafkaconf.MaxMs does not bound it: a month of history
// loads, as before the keys in ms were bounded.
const maxHistoryMinutes = int(math.MaxInt64 / int64(time.Minute))

// defaultCluster holds the defaults of a cluster section.
func defaultCluster() ClusterConfig {
	return ClusterConfig{ZKConnectTimeoutMs: 1000, ZKSessionTimeoutMs: 6000, Kafka: kafkaconf.Default()}
}

// LoadConfig reads path over the defaults and validates the result.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	data, err := config.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	// Keys that did not decode are reported with the problems of the
	// values that did: every problem at once.
	err = config.Decode(path, data, &cfg)
	undecoded, checkable := config.Checkable(err)
	if err != nil && !checkable {
		return cfg, err
	}
	cfg.fillClusterDefaults(clusterKeysSet(data))
	cfg.file, cfg.undecoded = path, undecoded
	return cfg, errors.Join(err, cfg.Validate(path))
}

// clusterKeysSet returns, per top-level section, the dotted keys the file
// gives a value (a key written with no value, "key:", keeps its default).
// data has been decoded already, so it parses.
func clusterKeysSet(data []byte) map[string]map[string]bool {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	out := map[string]map[string]bool{}
	// Two levels (kafka.version) are all fillClusterDefaults asks for:
	// deeper, a file of aliases naming aliases (each mapping naming the
	// previous one twice) would be walked along every one of its
	// exponentially many paths.
	var walk func(n *yaml.Node, prefix string, set map[string]bool, depth int)
	walk = func(n *yaml.Node, prefix string, set map[string]bool, depth int) {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		if n.Kind != yaml.MappingNode || depth == 2 {
			return
		}
		pairs, _ := config.MappingPairs(n) // a merged key is set as one written in place
		for i := 0; i+1 < len(pairs); i += 2 {
			key, val := prefix+pairs[i].Value, pairs[i+1]
			if val.Tag != "!!null" {
				set[key] = true
			}
			walk(val, key+".", set, depth+1)
		}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil
	}
	sections, _ := config.MappingPairs(root)
	for i := 0; i+1 < len(sections); i += 2 {
		set := map[string]bool{}
		walk(sections[i+1], "", set, 0)
		out[sections[i].Value] = set
	}
	return out
}

// fillClusterDefaults gives the keys a cluster section leaves out their
// defaults. Sections are decoded into zero values, so which keys the file
// set is looked up in set (per section, as clusterKeysSet returns): a key
// written as 0 stays 0 and Validate reports it, naming the value.
func (c *Config) fillClusterDefaults(set map[string]map[string]bool) {
	d := defaultCluster()
	for name, cl := range c.Clusters {
		has := set[name]
		if !has["zk_connect_timeout_ms"] {
			cl.ZKConnectTimeoutMs = d.ZKConnectTimeoutMs
		}
		if !has["zk_session_timeout_ms"] {
			cl.ZKSessionTimeoutMs = d.ZKSessionTimeoutMs
		}
		if !has["kafka.version"] {
			cl.Kafka.Version = d.Kafka.Version
		}
		if !has["kafka.dial_timeout_ms"] {
			cl.Kafka.DialTimeoutMs = d.Kafka.DialTimeoutMs
		}
		if !has["kafka.metadata_refresh_ms"] {
			cl.Kafka.MetadataRefreshMs = d.Kafka.MetadataRefreshMs
		}
		c.Clusters[name] = cl
	}
}

// Validate reports every problem at once; file names the config file.
func (c Config) Validate(file string) error {
	p := config.NewProblems(file)
	p.Skip(c.undecoded...)
	if c.Base.LogLevel < 0 || c.Base.LogLevel > logging.MaxLevel {
		p.Addf("base.log_level", c.Base.LogLevel, "must be 0..%d", logging.MaxLevel)
	}
	if len(c.Base.Clusters) == 0 {
		p.Add("base.clusters", "must name at least one cluster")
	}
	// Durations: at most kafkaconf.MaxMs (about 24.8 days), as in the
	// other binaries; far above, a time.Duration overflows to a negative
	// one (a ticker panics on it).
	if c.Base.PollIntervalMs < 100 || c.Base.PollIntervalMs > kafkaconf.MaxMs {
		p.Addf("base.poll_interval_ms", c.Base.PollIntervalMs, "must be 100..%d", kafkaconf.MaxMs)
	}
	if c.Base.HistoryMinutes < 1 || c.Base.HistoryMinutes > maxHistoryMinutes {
		p.Addf("base.history_minutes", c.Base.HistoryMinutes, "must be 1..%d (a time.Duration)", maxHistoryMinutes)
	}
	if c.HTTPServer.Port < 0 || c.HTTPServer.Port > 65535 {
		p.Addf("http_server.port", c.HTTPServer.Port, "must be 0..65535")
	}
	if c.HTTPServer.ReadTimeoutMs < 1 || c.HTTPServer.ReadTimeoutMs > kafkaconf.MaxMs {
		p.Addf("http_server.read_timeout_ms", c.HTTPServer.ReadTimeoutMs, "must be 1..%d", kafkaconf.MaxMs)
	}
	if c.HTTPServer.WriteTimeoutMs < 1 || c.HTTPServer.WriteTimeoutMs > kafkaconf.MaxMs {
		p.Addf("http_server.write_timeout_ms", c.HTTPServer.WriteTimeoutMs, "must be 1..%d", kafkaconf.MaxMs)
	}
	if h := c.HTTPServer.ListenHost; h != "" && net.ParseIP(h) == nil && h != "localhost" {
		p.Addf("http_server.listen_host", h, "must be an IP address or empty")
	}
	for i, name := range c.Base.Clusters {
		if slices.Index(c.Base.Clusters, name) != i {
			p.Addf("base.clusters", name, "lists a cluster twice")
			continue
		}
		// The name starts every zabbix_sender line of the cluster: a line
		// feed would split them. An empty one cannot be asked for alone
		// (?cluster= shares /delay's cached answer).
		if name == "" {
			p.Addf("base.clusters["+strconv.Itoa(i)+"]", name, "must be a non-empty name")
			continue
		}
		if strings.ContainsFunc(name, unicode.IsControl) {
			p.Addf("base.clusters["+strconv.Itoa(i)+"]", name, "must be a name without control characters")
		}
		if _, ok := c.Clusters[name]; !ok {
			p.Addf("base.clusters["+strconv.Itoa(i)+"]", name, "has no section of that name")
		}
	}
	// base.clusters did not decode (reported already): which sections it
	// lists is not known.
	listed := !slices.ContainsFunc(c.undecoded, func(f string) bool {
		return f == "" || f == "base" || f == "base.clusters" || strings.HasPrefix(f, "base.clusters[")
	})
	for name, cl := range c.Clusters {
		if !slices.Contains(c.Base.Clusters, name) {
			if listed {
				p.Add(name, "section of a cluster not listed in base.clusters (add it there, or remove the section)")
			}
			continue
		}
		switch {
		case cl.Chroot == "" || cl.Chroot[0] != '/':
			p.Addf(name+".chroot", cl.Chroot, "must be an absolute ZooKeeper path like /mq/%s", name)
		case !zklayout.PathChars(cl.Chroot):
			p.Addf(name+".chroot", cl.Chroot, "has a character ZooKeeper refuses in a path (a control character, U+D800–U+F8FF, U+FFF0 and above)")
		case zklayout.DotSegment(cl.Chroot):
			p.Addf(name+".chroot", cl.Chroot, "must not hold a . or .. segment (ZooKeeper paths are taken as written elsewhere; here it named another node)")
		}
		p.HostList(name+".zk_hosts", cl.ZKHosts, true, true, "ZooKeeper")
		cl.ZKAuth.Validate(p, name+".zk_auth", false)
		p.HostList(name+".broker_hosts", cl.BrokerHosts, false, false, "broker")
		if cl.ZKConnectTimeoutMs < 1 || cl.ZKConnectTimeoutMs > kafkaconf.MaxMs {
			p.Addf(name+".zk_connect_timeout_ms", cl.ZKConnectTimeoutMs, "must be 1..%d", kafkaconf.MaxMs)
		}
		// ZooKeeper's session timeout is an int32 of ms on the wire.
		if cl.ZKSessionTimeoutMs < 1000 || cl.ZKSessionTimeoutMs > kafkaconf.MaxMs {
			p.Addf(name+".zk_session_timeout_ms", cl.ZKSessionTimeoutMs, "must be 1000..%d", kafkaconf.MaxMs)
		}
		cl.Kafka.ValidateAt(p, name+".kafka")
	}
	return p.Err()
}

// Warnings returns the keys without effect the file sets in the sections
// of base.clusters, one line each ("FILE: key: value has no effect:
// reason"), as kmonitor_bin -check prints them; the start logs them too.
func (c Config) Warnings() []string {
	var out []string
	for _, name := range c.Base.Clusters {
		for _, k := range c.Clusters[name].Kafka.NoEffect(name + ".kafka") {
			out = append(out, fmt.Sprintf("%s: %s: %v has no effect: %s", c.file, k.Key, k.Value, k.Reason))
		}
	}
	return out
}
