// Package zklayout is the ZooKeeper layout the suite shares: the classic
// Kafka 0.8 consumer paths that ktransfer writes and kmonitor reads, the
// offset codec, and the broker registrations of ZooKeeper-mode Kafka.
package zklayout

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// NodeName reports whether name can be one ZooKeeper node: not empty,
// "." or ".." (paths are cleaned: they would name another node), no '/',
// none of the characters ZooKeeper refuses in a path.
func NodeName(name string) bool {
	if name == "" || name == "." || name == ".." || strings.IndexByte(name, '/') >= 0 {
		return false
	}
	return PathChars(name)
}

// PathChars reports whether ZooKeeper takes every character of p in a
// path (its PathUtils.validatePath): none of NUL and the other control
// characters, U+007F–U+009F, U+D800–U+F8FF, U+FFF0 and above (in Java's
// UTF-16, every character above U+FFFF is a surrogate pair).
func PathChars(p string) bool {
	for _, r := range p {
		if r <= 0x1f || r >= 0x7f && r <= 0x9f || r >= 0xd800 && r <= 0xf8ff || r >= 0xfff0 {
			return false
		}
	}
	return true
}

// DotSegment reports whether ZooKeeper path p holds a "." or ".."
// segment: the layout's paths are joined with path.Join, which resolves
// them (/mq/../.. is /), so such a chroot names another node than it
// reads as.
func DotSegment(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// BrokerIDs is the folder where ZooKeeper-mode brokers register.
func BrokerIDs(chroot string) string { return path.Join("/", chroot, "brokers", "ids") }

// ConsumerIDs is the folder of a module's live instances.
func ConsumerIDs(chroot, module string) string {
	return path.Join("/", chroot, "consumers", module, "ids")
}

// Owners is the folder of a module's partition claims for topic.
func Owners(chroot, module, topic string) string {
	return path.Join("/", chroot, "consumers", module, "owners", topic)
}

// Offsets is the folder of a module's committed offsets for topic.
func Offsets(chroot, module, topic string) string {
	return path.Join("/", chroot, "consumers", module, "offsets", topic)
}

// OffsetsTopic is the data of a module's offsets/<topic> node: the number
// of partitions the topic had, as the process that created the node first
// read it (the module's first stored offsets of the topic). A partition
// with an id at or above it was added to the topic later. Nodes written
// before it was recorded are empty. Readers of the offsets (kmonitor,
// Burrow, Kafka's tools) list the node's children and ignore its data.
type OffsetsTopic struct {
	Partitions int32 `json:"partitions"`
}

// EncodeOffsetsTopic writes an offsets/<topic> node's data.
func EncodeOffsetsTopic(partitions int32) []byte {
	data, _ := json.Marshal(OffsetsTopic{Partitions: partitions})
	return data
}

// ParseOffsetsTopic reads an offsets/<topic> node's data; ok is false when
// it records no partition count (empty: written before it was recorded,
// or by hand).
func ParseOffsetsTopic(data []byte) (partitions int32, ok bool) {
	var o OffsetsTopic
	if json.Unmarshal(data, &o) != nil || o.Partitions <= 0 {
		return 0, false
	}
	return o.Partitions, true
}

// Consumers is the folder holding every module.
func Consumers(chroot string) string { return path.Join("/", chroot, "consumers") }

// EncodeOffset writes the next offset to push as Kafka 0.8 did: decimal ASCII.
func EncodeOffset(next int64) []byte { return strconv.AppendInt(nil, next, 10) }

// Partition reads an owner or offset znode's name as a partition: only its
// canonical decimal form ("7", not "07", "+7" or "-1") names one, as
// ktransfer and Kafka's consumers write it.
func Partition(name string) (int32, bool) {
	p, err := strconv.ParseInt(name, 10, 32)
	if err != nil || p < 0 || strconv.FormatInt(p, 10) != name {
		return 0, false
	}
	return int32(p), true
}

// ParseOffset reads an offset znode's data. Surrounding white space is
// tolerated (hand-edited nodes); anything else that is not a non-negative
// decimal integer is an error.
func ParseOffset(data []byte) (int64, error) {
	s := strings.TrimSpace(string(data))
	if s == "" {
		return 0, errors.New("empty offset")
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("offset %q is out of range (max %d)", truncate(s, 32), int64(math.MaxInt64))
	}
	if err != nil {
		return 0, fmt.Errorf("offset %q is not a decimal integer", truncate(s, 32))
	}
	if v < 0 {
		return 0, fmt.Errorf("offset %d is negative", v)
	}
	return v, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Broker is the registration a ZooKeeper-mode Kafka broker writes under
// <chroot>/brokers/ids/<id> (version 5 of the format, Kafka 2.x–3.x).
type Broker struct {
	ListenerSecurityProtocolMap map[string]string `json:"listener_security_protocol_map"`
	Endpoints                   []string          `json:"endpoints"`
	JMXPort                     int               `json:"jmx_port"`
	Features                    map[string]any    `json:"features"`
	Host                        string            `json:"host"`
	Timestamp                   string            `json:"timestamp"`
	Port                        int               `json:"port"`
	Version                     int               `json:"version"`
}

// NewBroker describes a PLAINTEXT broker at host:port, as Kafka writes it.
func NewBroker(host string, port int) Broker {
	return Broker{
		ListenerSecurityProtocolMap: map[string]string{"PLAINTEXT": "PLAINTEXT"},
		Endpoints:                   []string{"PLAINTEXT://" + net.JoinHostPort(host, strconv.Itoa(port))},
		JMXPort:                     -1,
		Features:                    map[string]any{},
		Host:                        host,
		Timestamp:                   strconv.FormatInt(time.Now().UnixMilli(), 10),
		Port:                        port,
		Version:                     5,
	}
}

// Addr returns the broker's address: host and port when set, else the first
// endpoint (brokers with only non-default listeners leave host empty).
func (b Broker) Addr() (string, error) {
	if b.Host != "" && b.Port > 0 {
		return net.JoinHostPort(b.Host, strconv.Itoa(b.Port)), nil
	}
	for _, ep := range b.Endpoints {
		if _, hostport, ok := strings.Cut(ep, "://"); ok && hostport != "" {
			return hostport, nil
		}
	}
	return "", errors.New("broker registration has neither host/port nor an endpoint")
}

// AddrFor returns the broker's address for a client speaking the security
// protocol given (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL): the first
// endpoint whose listener has that protocol in the registration's
// listener_security_protocol_map (a listener missing from it is taken to
// be named after its protocol), else Addr. A broker with an internal
// PLAINTEXT listener and an external SASL_SSL one registers host and port
// of the PLAINTEXT one.
func (b Broker) AddrFor(protocol string) (string, error) {
	addrs, err := b.AddrsFor(protocol)
	if err != nil {
		return "", err
	}
	return addrs[0], nil
}

// AddrsFor is AddrFor with every endpoint of that protocol, in the order
// registered: a broker may have several listeners of one protocol
// (INTERNAL and EXTERNAL, both PLAINTEXT) of which a client reaches only
// some, so each is worth a try.
func (b Broker) AddrsFor(protocol string) ([]string, error) {
	var addrs []string
	for _, ep := range b.Endpoints {
		listener, hostport, ok := strings.Cut(ep, "://")
		if !ok || hostport == "" {
			continue
		}
		p, found := b.ListenerSecurityProtocolMap[listener]
		if !found {
			p = listener
		}
		if strings.EqualFold(p, protocol) {
			addrs = append(addrs, hostport)
		}
	}
	if len(addrs) > 0 {
		return addrs, nil
	}
	addr, err := b.Addr()
	if err != nil {
		return nil, err
	}
	return []string{addr}, nil
}

// ParseBroker decodes a broker registration.
func ParseBroker(data []byte) (Broker, error) {
	var b Broker
	if err := json.Unmarshal(data, &b); err != nil {
		return Broker{}, fmt.Errorf("decode broker registration: %w", err)
	}
	return b, nil
}

// RegisterBroker creates the ephemeral node <chroot>/brokers/ids/<id> for a
// broker at host:port, creating the persistent parents as needed. The node
// lives as long as conn's session.
func RegisterBroker(conn *zk.Conn, chroot string, id int32, host string, port int) error {
	data, err := json.Marshal(NewBroker(host, port))
	if err != nil {
		return err
	}
	dir := BrokerIDs(chroot)
	if err := CreateAll(conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		return err
	}
	p := path.Join(dir, strconv.Itoa(int(id)))
	if _, err := conn.Create(p, data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		return fmt.Errorf("register broker %s: %w", p, err)
	}
	return nil
}

// DiscoverBrokers reads every broker registered under chroot: the address
// of each is Broker.Addr.
func DiscoverBrokers(conn *zk.Conn, chroot string) ([]string, error) {
	addrs, _, err := discoverBrokers(conn, chroot, func(b Broker) ([]string, error) {
		addr, err := b.Addr()
		return []string{addr}, err
	}, false)
	return addrs, err
}

// DiscoverBrokersFor is DiscoverBrokers for a client speaking the security
// protocol given: the addresses of each broker are Broker.AddrsFor(protocol).
// A registration that cannot be read as one (it does not parse, or names
// no address) is left out and described in skipped; err is set when the
// brokers cannot be listed, or when every registration was left out.
func DiscoverBrokersFor(conn *zk.Conn, chroot, protocol string) (addrs []string, skipped, err error) {
	return discoverBrokers(conn, chroot, func(b Broker) ([]string, error) { return b.AddrsFor(protocol) }, true)
}

func discoverBrokers(conn *zk.Conn, chroot string, addrOf func(Broker) ([]string, error), skipBad bool) ([]string, error, error) {
	dir := BrokerIDs(chroot)
	ids, _, err := conn.Children(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("list brokers %s: %w", dir, err)
	}
	var addrs []string
	var bad []error
	for _, id := range ids {
		data, _, err := conn.Get(path.Join(dir, id))
		if errors.Is(err, zk.ErrNoNode) {
			continue // went away while listing
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read broker %s/%s: %w", dir, id, err)
		}
		b, err := ParseBroker(data)
		var addr []string
		if err == nil {
			addr, err = addrOf(b)
		}
		if err != nil {
			err = fmt.Errorf("broker %s/%s: %w", dir, id, err)
			if !skipBad {
				return nil, nil, err
			}
			bad = append(bad, err)
			continue
		}
		addrs = append(addrs, addr...)
	}
	skipped := errors.Join(bad...)
	if len(addrs) == 0 && skipped != nil {
		return nil, skipped, skipped
	}
	return addrs, skipped, nil
}

// CreateAll creates p and its missing parents as persistent empty nodes
// with the ACL given. Nodes that exist are passed over even when their
// parent refuses this client children (ZooKeeper checks the parent's ACL
// before the node's existence): a Kafka cluster's chroot secured with
// zookeeper.set.acl may only be read, its consumers/ node is open.
func CreateAll(conn *zk.Conn, p string, acl []zk.ACL) error {
	cur := ""
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		if part == "" {
			continue
		}
		cur += "/" + part
		_, err := conn.Create(cur, nil, 0, acl)
		if errors.Is(err, zk.ErrNoAuth) {
			if ok, _, eerr := conn.Exists(cur); eerr == nil && ok {
				continue
			}
		}
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", cur, err)
		}
	}
	return nil
}
