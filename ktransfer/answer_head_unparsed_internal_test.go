package ktransfer

import (
	"net"
	"strings"
	"testing"
	"time"
)

// TestTwoHundredWhoseHeadDoesNotParseIsPushed: a backend that accepted the
// record answers with a whole 2xx status line and then headers the HTTP
// client refuses: Content-Length twice (some proxies and frameworks send
// it so), a control byte in a header's value, headers over 64 KiB, or the
// connection closed within them. The status line is the answer (DESIGN:
// success = a 2xx): the record is pushed, not pushed again to every
// backend for ever (max_retry_times -1), dead-lettered or counted against
// the backend's breaker. The connection is not used again: what follows on
// it is not known to be the next answer. A head whose status line is not
// whole, or is not a 2xx, is still a failed attempt. (Before, every one of
// these was a transport error, retried.)
func TestTwoHundredWhoseHeadDoesNotParseIsPushed(t *testing.T) {
	for _, c := range []struct {
		name, answer  string
		pushed, close bool // close: the backend closes its side after the answer
		split         int  // > 0: the answer's first split bytes, then the rest 50 ms later
	}{
		{"200, Content-Length twice", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", true, false, 0},
		{"204, a control byte in a header", "HTTP/1.1 204 No Content\r\nX-A: a\x01b\r\n\r\n", true, false, 0},
		{"200, headers over 64 KiB", "HTTP/1.1 200 OK\r\nSet-Cookie: s=" + strings.Repeat("x", 70<<10) + "\r\nContent-Length: 0\r\n\r\n", true, false, 0},
		{"200, closed within the headers", "HTTP/1.1 200 OK\r\nContent-Typ", true, true, 0},
		{"503, Content-Length twice", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nno", false, false, 0},
		{"status line cut", "HTTP/1.1 200", false, true, 0},
		{"no status line", "200 OK\r\n\r\n", false, false, 0},
		{"not HTTP/1.x", "HTTP/1.10 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", false, false, 0},
		{"status code of 4 digits", "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", false, false, 0},
		// fasthttp reads 000 and answers StatusCode() 200 for it: it was
		// taken for a 2xx, and the record acknowledged.
		{"status 000", "HTTP/1.1 000 OK\r\nContent-Length: 0\r\n\r\n", false, false, 0},
		// The status line in two writes: only the first was looked at
		// for 000, and the answer was taken for a 200.
		{"status 000 after a pause", "HTTP/1.1 000 OK\r\nContent-Length: 0\r\n\r\n", false, false, len("HTTP/1.1 ")},
		{"status 200 after a pause", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true, false, len("HTTP/1.1 ")},
		{"status 000 after empty lines and a pause", "\r\n\r\nHTTP/1.1 000 OK\r\nContent-Length: 0\r\n\r\n", false, false, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			second := 0
			p := answerPusher(t, scriptedBackend(t, func(n int, conn net.Conn) {
				if n == 1 {
					if c.split > 0 {
						conn.Write([]byte(c.answer[:c.split]))
						time.Sleep(50 * time.Millisecond)
						conn.Write([]byte(c.answer[c.split:]))
						return
					}
					conn.Write([]byte(c.answer))
					if c.close {
						conn.(*net.TCPConn).CloseWrite()
					}
					return
				}
				second++
				conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
			}), 2000)
			var buf []byte
			a := p.push(0, pushRecord(1), &buf)
			if v, why := judge(a); (v == pushed) != c.pushed {
				t.Errorf("answered %.60q: verdict %d (%s), want pushed: %v", c.answer, v, why, c.pushed)
			}
			// The connection of the broken answer is not used again.
			if v, why := judge(p.push(0, pushRecord(2), &buf)); v != pushed || second != 1 {
				t.Errorf("the next push: verdict %d (%s), %d answers of the backend to it, want pushed on a new connection", v, why, second)
			}
		})
	}
}
