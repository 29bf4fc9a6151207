package kmonitor_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// The README pipes /delay?format=zabbix into zabbix_sender through curl,
// which passes on whatever part of the body it got. With the default
// write_timeout_ms (100 ms; 1 s here, for the rendering of a large answer
// on a loaded machine) an answer longer than the sockets' buffers hold, to
// a client that takes its time reading (a small receive window, a remote
// Zabbix host), was cut wherever the deadline fell: a last line cut among the
// digits of its lag gives zabbix_sender a smaller lag that is not the
// partition's. The answer must come whole. (Names of 4,000 characters make
// an answer of 6 MB of 1,600 partitions.)
func TestZabbixAnswerNotCutForASlowReader(t *testing.T) {
	const modules, partitions = 50, 32
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: partitions}})
	e := startWith(t, k, func(c *kmonitor.Config) { c.HTTPServer.WriteTimeoutMs = 1000 }, io.Discard)
	for m := range modules {
		dir := zklayout.Offsets(chroot, fmt.Sprintf("module_%02d_%s", m, strings.Repeat("x", 4000)), "a")
		if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		var ops []any
		for p := range partitions {
			ops = append(ops, &zk.CreateRequest{Path: dir + "/" + strconv.Itoa(p), Data: []byte("0"), Acl: zk.WorldACL(zk.PermAll)})
		}
		if _, err := e.conn.Multi(ops...); err != nil {
			t.Fatal(err)
		}
	}
	if !waitFor(20*time.Second, func() bool {
		known := 0
		for _, l := range e.mon.Lags() {
			if l.Err == "" {
				known++
			}
		}
		return known == modules*partitions
	}) {
		t.Fatalf("the %d lags not all known after 20 s", modules*partitions)
	}
	// A reader with a 4 KiB receive buffer that starts reading 2 s
	// after its request: the answer does not fit in the sockets' buffers.
	d := net.Dialer{Control: runtest.SmallReceiveBuffer(4096)}
	conn, err := d.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /delay?format=zabbix HTTP/1.1\r\nHost: kmonitor\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the slow reader: the condition under test
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	raw, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("GET /delay?format=zabbix: %d bytes, %v (write_timeout_ms 1000, a slow reader); want the whole answer", len(raw), err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /delay?format=zabbix: %d, %d bytes ending %q, %v (write_timeout_ms 1000, a slow reader); want the whole answer",
			resp.StatusCode, len(body), body[max(0, len(body)-30):], err)
	}
	if n := strings.Count(string(body), ".delay 0\n"); n != modules*partitions {
		t.Fatalf("GET /delay?format=zabbix: %d lines of lag, want %d", n, modules*partitions)
	}
}
