package kafkatest

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Cutter cuts one client off the brokers of a cluster, by the client id
// its requests carry (kafka.client_id), while the others go on: a host
// whose route to the brokers is gone. Every connection's first request
// header is read before the broker sees it; the connections of a cut
// client are closed, and its new ones are closed once their first header
// names it. Give the cluster Listen() at its start. Plaintext listeners
// only: behind TLS the first bytes are a handshake, not a request.
type Cutter struct {
	mu     sync.Mutex
	cut    map[string]bool
	frozen map[string]chan struct{} // closed at Restore
	conns  map[*cutConn]struct{}
}

// NewCutter makes a Cutter that cuts no one yet.
func NewCutter() *Cutter {
	return &Cutter{cut: map[string]bool{}, frozen: map[string]chan struct{}{}, conns: map[*cutConn]struct{}{}}
}

// Listen is the cluster option that puts every broker's connections
// through c.
func (c *Cutter) Listen() kfake.Opt {
	return kfake.ListenFn(func(network, address string) (net.Listener, error) {
		ln, err := net.Listen(network, address)
		if err != nil {
			return nil, err
		}
		return &cutListener{Listener: ln, c: c}, nil
	})
}

// Cut closes every connection of the client named clientID and every one
// it makes until Restore.
func (c *Cutter) Cut(clientID string) {
	c.mu.Lock()
	c.cut[clientID] = true
	var shut []*cutConn
	for cc := range c.conns {
		if cc.id == clientID {
			shut = append(shut, cc)
		}
	}
	c.mu.Unlock()
	for _, cc := range shut {
		cc.Conn.Close()
	}
}

// Freeze silences the client named clientID until Restore: its
// connections stay open and the brokers read nothing more of them (a
// route that drops packets, a broker host frozen); new ones are accepted
// and read no further than their first header.
func (c *Cutter) Freeze(clientID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen[clientID] == nil {
		c.frozen[clientID] = make(chan struct{})
	}
}

// Restore lets the client named clientID reach the brokers again.
func (c *Cutter) Restore(clientID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cut, clientID)
	if ch := c.frozen[clientID]; ch != nil {
		close(ch)
		delete(c.frozen, clientID)
	}
}

// thawed is closed while clientID is not frozen (nil: not frozen).
func (c *Cutter) thawed(clientID string) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frozen[clientID]
}

// named records cc as clientID's; false when that client is cut.
func (c *Cutter) named(cc *cutConn, clientID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut[clientID] {
		return false
	}
	cc.id = clientID
	c.conns[cc] = struct{}{}
	return true
}

func (c *Cutter) forget(cc *cutConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.conns, cc)
}

type cutListener struct {
	net.Listener
	c *Cutter
}

func (l *cutListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &cutConn{Conn: conn, c: l.c}, nil
}

// cutConn reads its first request's header (size, key, version,
// correlation id, client id) before handing any byte on.
type cutConn struct {
	net.Conn
	c       *Cutter
	id      string // set under c.mu
	once    sync.Once
	err     error
	pending []byte // read ahead, not yet handed on
}

var errCut = errors.New("kafkatest: client cut off the brokers")

func (cc *cutConn) Read(p []byte) (int, error) {
	cc.once.Do(cc.first)
	if cc.err != nil {
		return 0, cc.err
	}
	if ch := cc.c.thawed(cc.id); ch != nil {
		<-ch // frozen: nothing is read until Restore (or the broker closes the connection)
	}
	if len(cc.pending) > 0 {
		n := copy(p, cc.pending)
		cc.pending = cc.pending[n:]
		return n, nil
	}
	return cc.Conn.Read(p)
}

// first reads the first request's header up to its client id.
func (cc *cutConn) first() {
	head := make([]byte, 14) // size 4, key 2, version 2, correlation 4, client id length 2
	if _, err := io.ReadFull(cc.Conn, head); err != nil {
		cc.err = err
		return
	}
	n := int16(binary.BigEndian.Uint16(head[12:]))
	id := []byte{}
	if n > 0 {
		id = make([]byte, n)
		if _, err := io.ReadFull(cc.Conn, id); err != nil {
			cc.err = err
			return
		}
	}
	cc.pending = append(head, id...)
	if !cc.c.named(cc, string(id)) {
		cc.err = errCut
		cc.Conn.Close()
	}
}

func (cc *cutConn) Close() error {
	cc.c.forget(cc)
	return cc.Conn.Close()
}
