package kmonitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLagAge(t *testing.T) {
	now := time.Unix(1000, 0)
	at := func(s int64) time.Time { return time.Unix(s, 0) }
	changes := []sample{{at(900), 10, false}, {at(950), 20, false}, {at(990), 30, false}}
	for _, tc := range []struct {
		next    int64
		want    float64
		atLeast bool
	}{
		{30, 0, false},  // caught up
		{35, 0, false},  // committed above log end
		{25, 10, false}, // record 25 first seen at 990
		{15, 50, false}, // record 15 first seen at 950
		{5, 100, true},  // before the oldest change kept
	} {
		got, atLeast := lagAge(changes, tc.next, now)
		if got != tc.want || atLeast != tc.atLeast {
			t.Errorf("next=%d: %v %v, want %v %v", tc.next, got, atLeast, tc.want, tc.atLeast)
		}
	}
	// The log end went back (the topic created again) and grew anew.
	recreated := []sample{{at(900), 50, false}, {at(950), 0, false}, {at(990), 3, false}}
	if got, atLeast := lagAge(recreated, 0, now); got != 10 || atLeast {
		t.Errorf("log end back to 0 then 3, next=0: %v %v, want 10 false", got, atLeast)
	}
	// The log end went back, not below next=0, before it was read again.
	if got, atLeast := lagAge([]sample{{at(900), 50, false}, {at(990), 3, false}}, 0, now); got != 10 || !atLeast {
		t.Errorf("log end back from 50 to 3, next=0: %v %v, want 10 true", got, atLeast)
	}
	// The log end not read from 900 to 990 (reads failed), and past next
	// when read again: its records came any time since 900.
	if got, atLeast := lagAge([]sample{{at(900), 10, false}, {at(990), 30, true}}, 20, now); got != 10 || !atLeast {
		t.Errorf("log end past next=20 when read again after failed reads: %v %v, want 10 true", got, atLeast)
	}
	if got, _ := lagAge(nil, 3, now); got != 0 {
		t.Errorf("no history: %v", got)
	}
	// A poll that ended after the moment asked about (a scrape takes its
	// time before it waits for the cluster's lock, held by that poll)
	// saw the log end pass next first: the lag is younger than anything
	// measurable, not negative.
	later := []sample{{at(900), 10, false}, {now.Add(2 * time.Millisecond), 30, false}}
	if got, _ := lagAge(later, 20, now); got != 0 {
		t.Errorf("log end first past next in a poll after now: %v seconds, want 0", got)
	}
}

func TestHistoryWindow(t *testing.T) {
	s := newState(time.Minute, 0)
	tp := topicPartition{"t", 0}
	base := time.Unix(0, 0)
	for i := range 300 { // one poll a second for 5 minutes, the end growing every 10 s
		s.setEnd(tp, int64(i/10), time.Time{}, nil, base.Add(time.Duration(i)*time.Second))
	}
	w := s.ends[tp].window(s.history)
	if len(w) > 8 || w[0].at.After(base.Add(240*time.Second)) {
		t.Errorf("window of %d changes from %v; want the last minute and the change before it", len(w), w[0].at)
	}
}

var fixed = []Lag{
	{Cluster: "c1", Module: "m1", Topic: "t", Partition: "10", pnum: 10, Lag: 3},
	{Cluster: "c1", Module: "m1", Topic: "t", Partition: "2", pnum: 2, Lag: 0},
	{Cluster: "c1", Module: "multi", Topic: "b", Partition: "0", Lag: 7},
	{Cluster: "c1", Module: "multi", Topic: "a", Partition: "1", pnum: 1, Err: "bad offset znode"},
	{Cluster: "c2", Module: "m,[x]", Topic: "t", Partition: "0", Lag: 1},
}

// shown is a copy of lags, made by hand, as snapshot gives them: each
// with how many topics its module has a folder of offsets for (here every
// topic among lags), and its own among them.
func shown(lags []Lag) []Lag {
	type cm struct{ cluster, module string }
	topics := map[cm]map[string]bool{}
	for _, l := range lags {
		k := cm{l.Cluster, l.Module}
		if topics[k] == nil {
			topics[k] = map[string]bool{}
		}
		topics[k][l.Topic] = true
	}
	out := append([]Lag(nil), lags...)
	for i := range out {
		f := topics[cm{out[i].Cluster, out[i].Module}]
		out[i].topics, out[i].inFolder = len(f), true
	}
	return out
}

func TestWriteStringEscapes(t *testing.T) {
	for in, want := range map[string]string{"plain.name-1": `"plain.name-1"`, `q"uote`: `"q\"uote"`, "tab\t": `"tab\t"`, "<b>": `"\u003cb\u003e"`, "é": `"é"`} {
		var b bytes.Buffer
		writeString(&b, in)
		if b.String() != want {
			t.Errorf("writeString(%q) = %s, want %s", in, b.String(), want)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	writeJSON(&b, []string{"c1", "c2", "c3"}, shown(fixed), false)
	want := `{"c1":{"m1":{"2":0,"10":3},"multi":{"a.1":null,"b.0":7}},"c2":{"m,[x]":{"0":1}},"c3":{}}` + "\n"
	if b.String() != want {
		t.Errorf("got  %s\nwant %s", b.String(), want)
	}
}

func TestWriteZabbix(t *testing.T) {
	var b bytes.Buffer
	writeZabbix(&b, []string{"c1", "c2"}, shown(fixed), nil, false, nil)
	want := "- c1.m1.2.delay 0\n- c1.m1.10.delay 3\n- c1.multi.b.0.delay 7\n- c2.m,[x].0.delay 1\n" +
		"- c1.kmonitor.errors 1\n- c2.kmonitor.errors 0\n"
	if b.String() != want {
		t.Errorf("got\n%swant\n%s", b.String(), want)
	}
	b.Reset()
	writeZabbix(&b, []string{"c1", "c2"}, shown(fixed), nil, true, nil)
	want = "- kmonitor.delay[c1,m1,t,2] 0\n- kmonitor.delay[c1,m1,t,10] 3\n- kmonitor.delay[c1,multi,b,0] 7\n" +
		"- kmonitor.delay[c2,\"m,[x]\",t,0] 1\n- kmonitor.errors[c1] 1\n- kmonitor.errors[c2] 0\n"
	if b.String() != want {
		t.Errorf("item keys: got\n%swant\n%s", b.String(), want)
	}
}

func TestItemParams(t *testing.T) {
	for in, want := range map[string]string{
		"plain":      "plain",
		"a,b":        `"a,b"`,
		`say "hi"`:   `say "hi"`,
		`"q`:         `"\"q"`,
		"a[b":        "a[b",
		"[x":         `"[x"`,
		" lead":      `" lead"`,
		"x]":         `"x]"`,
		"dots.and-_": "dots.and-_",
		`back\`:      `back\`,
		`a,b\`:       `"a,b\ "`,
	} {
		if got := itemParams(in); got != want {
			t.Errorf("itemParams(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestWriteLLD(t *testing.T) {
	var b bytes.Buffer
	writeLLD(&b, []Lag{{Cluster: "c", Module: "m", Topic: "t", Partition: "4"}})
	want := `[{"{#CLUSTER}":"c","{#MODULE}":"m","{#TOPIC}":"t","{#PARTITION}":"4"}]` + "\n"
	if b.String() != want {
		t.Errorf("got %s", b.String())
	}
}

// Every configured cluster appears with its partitions, in the order of
// base.clusters, whatever that order is: the lags are sorted by cluster
// name, and a walk in configured order must not lose a cluster that sorts
// before the one it stands after.
func TestJSONShowsEveryClusterInConfiguredOrder(t *testing.T) {
	lags := []Lag{
		{Cluster: "zeta", Module: "m", Topic: "t", Partition: "0", Lag: 5},
		{Cluster: "alpha", Module: "m", Topic: "t", Partition: "0", Lag: 7},
		{Cluster: "mid", Module: "n", Topic: "t", Partition: "1", Err: "log-end offset not known yet"},
	}
	for _, order := range [][]string{{"zeta", "alpha", "mid"}, {"mid", "zeta", "alpha"}, {"alpha", "mid", "zeta"}} {
		var b bytes.Buffer
		writeJSON(&b, order, shown(lags), false)
		part := map[string]string{"zeta": `"zeta":{"m":{"0":5}}`, "alpha": `"alpha":{"m":{"0":7}}`, "mid": `"mid":{"n":{"1":null}}`}
		want := "{" + part[order[0]] + "," + part[order[1]] + "," + part[order[2]] + "}\n"
		if b.String() != want {
			t.Errorf("base.clusters %v:\n got  %s want %s", order, b.String(), want)
		}
	}
}

// senderFields splits a zabbix_sender input line as zabbix_sender does:
// host and key each up to white space, unless the field starts with a
// double quote, where \" and \\ are escapes and the field ends at the
// next unescaped quote; the value is the rest of the line.
func senderFields(line string) (host, key, value string) {
	next := func(s string) (string, string) {
		s = strings.TrimLeft(s, " \t")
		if !strings.HasPrefix(s, `"`) {
			if i := strings.IndexAny(s, " \t"); i >= 0 {
				return s[:i], s[i:]
			}
			return s, ""
		}
		var out strings.Builder
		for i := 1; i < len(s); i++ {
			switch {
			case s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\'):
				i++
				out.WriteByte(s[i])
			case s[i] == '"':
				return out.String(), s[i+1:]
			default:
				out.WriteByte(s[i])
			}
		}
		return out.String() + "<unclosed>", ""
	}
	host, rest := next(line)
	key, rest = next(rest)
	return host, key, strings.TrimLeft(rest, " \t")
}

// Module names from other tools sharing <chroot>/consumers may hold a
// space, a quote or a backslash: every zabbix line must still reach
// zabbix_sender as host "-", the whole key and the lag.
func TestZabbixSenderReadsOddNamesWhole(t *testing.T) {
	names := []string{"billing events", `say "hi"`, `"quoted`, `back\`, `tab\there`, `a\nb`}
	for _, itemKeys := range []bool{false, true} {
		var lags []Lag
		var want []string
		for i, n := range names {
			lags = append(lags, Lag{Cluster: "c", Module: n, Topic: "t", Partition: "0", Lag: int64(i)})
			if itemKeys {
				want = append(want, "kmonitor.delay["+itemParams("c", n, "t", "0")+"]")
			} else {
				want = append(want, "c."+n+".0.delay")
			}
		}
		var b bytes.Buffer
		writeZabbix(&b, []string{"c"}, shown(lags), nil, itemKeys, nil)
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
			host, key, value := senderFields(line)
			if host != "-" {
				t.Errorf("keys=item %v: line %q: host %q", itemKeys, line, host)
			}
			got[key] = value
		}
		for i, k := range want {
			if v, ok := got[k]; !ok || v != strconv.Itoa(i) {
				t.Errorf("keys=item %v: key %q: zabbix_sender reads value %q (present %v) from\n%s", itemKeys, k, v, ok, b.String())
			}
		}
	}
}

// itemKeyParams parses the parameters of a Zabbix item key as Zabbix
// does: a quoted parameter ends at the first '"' not preceded by a
// backslash (\" is its only escape), an unquoted one at ',' or ']'.
func itemKeyParams(key string) ([]string, error) {
	i := strings.IndexByte(key, '[')
	if i < 0 || !strings.HasSuffix(key, "]") {
		return nil, fmt.Errorf("no parameters")
	}
	s := key[i+1:]
	var out []string
	for {
		s = strings.TrimLeft(s, " ")
		var p strings.Builder
		if strings.HasPrefix(s, `"`) {
			j := 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) && s[j+1] == '"' {
					j++
				}
				p.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("quoted parameter %d does not close", len(out))
			}
			s = strings.TrimLeft(s[j+1:], " ")
		} else {
			j := strings.IndexAny(s, ",]")
			if j < 0 {
				return nil, fmt.Errorf("parameter %d does not end", len(out))
			}
			p.WriteString(s[:j])
			s = s[j:]
		}
		out = append(out, p.String())
		switch {
		case s == "]":
			return out, nil
		case strings.HasPrefix(s, ","):
			s = s[1:]
		default:
			return nil, fmt.Errorf("after parameter %d: %q", len(out)-1, s)
		}
	}
}

// Zabbix has no escape for a backslash in a quoted key parameter: a name
// that must be quoted and ends in '\' must still give a key that closes,
// and that key must be the one the zabbix_lld macros produce.
func TestItemKeyParamsCloseAfterBackslash(t *testing.T) {
	names := []string{`a,b\`, `x]\\`, `"\`, `plain\`, `m,[x]`, `say "hi"`, " lead"}
	key := "kmonitor.delay[" + itemParams(names...) + "]"
	got, err := itemKeyParams(key)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	if len(got) != len(names) {
		t.Fatalf("%s: Zabbix reads %d parameters %q, want %d", key, len(got), got, len(names))
	}
	for i, n := range names {
		if got[i] != lldValue(n) {
			t.Errorf("%s: parameter %d reads %q, want %q (the zabbix_lld value of %q)", key, i, got[i], lldValue(n), n)
		}
	}
	var b bytes.Buffer
	writeLLD(&b, []Lag{{Cluster: "c", Module: `a,b\`, Topic: "t", Partition: "0"}})
	if want := `"{#MODULE}":"a,b\\ "`; !strings.Contains(b.String(), want) {
		t.Errorf("zabbix_lld %s: want %s", b.String(), want)
	}
}

// zabbixLLDParam is what Zabbix puts in an item key when it makes an item
// from the prototype kmonitor.delay[{#CLUSTER},{#MODULE},{#TOPIC},{#PARTITION}]
// (macros unquoted): the macro's value, quoted with '"' escaped only when it
// starts with '"', ' ' or '[', or holds ',' or ']' (zbx_quote_key_param in
// Zabbix's src/libs/zbxparam); ok is false when Zabbix refuses to make the
// item (a value that must be quoted and ends in a backslash).
func zabbixLLDParam(v string) (param string, ok bool) {
	if v == "" || !(v[0] == '"' || v[0] == ' ' || v[0] == '[' || strings.ContainsAny(v, ",]")) {
		return v, true
	}
	if strings.HasSuffix(v, `\`) {
		return "", false
	}
	return `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`, true
}

// The key kmonitor sends must be the very string of the item Zabbix made
// from the discovery data: Zabbix matches a zabbix_sender value to an
// item by its key as written, so a parameter quoted on one side and not on
// the other leaves the item without data.
func TestItemKeyIsTheKeyZabbixLLDMakes(t *testing.T) {
	for _, name := range []string{"plain", "a[b", `say "hi"`, `a"b`, "[x", "m,[x]", "x]", " lead", `"q`, `a,b\`, `back\`, "dots.and-_"} {
		lags := []Lag{{Cluster: "c", Module: name, Topic: "t", Partition: "0", Lag: 1}}
		var lld bytes.Buffer
		writeLLD(&lld, lags)
		var entries []map[string]string
		if err := json.Unmarshal(lld.Bytes(), &entries); err != nil || len(entries) != 1 {
			t.Fatalf("zabbix_lld for %q: %s (%v)", name, lld.String(), err)
		}
		var made []string
		for _, m := range []string{"{#CLUSTER}", "{#MODULE}", "{#TOPIC}", "{#PARTITION}"} {
			p, ok := zabbixLLDParam(entries[0][m])
			if !ok {
				t.Fatalf("module %q: Zabbix refuses to make an item from %s = %q", name, m, entries[0][m])
			}
			made = append(made, p)
		}
		want := "kmonitor.delay[" + strings.Join(made, ",") + "]"
		var b bytes.Buffer
		writeZabbix(&b, []string{"c"}, shown(lags), nil, true, nil)
		line, _, _ := strings.Cut(b.String(), "\n")
		if _, got, _ := senderFields(line); got != want {
			t.Errorf("module %q: kmonitor sends %s, the item Zabbix made from the discovery data is %s", name, got, want)
		}
	}
}

// A partition that keeps receiving records, its module keeping up, polled
// every second for a day with a month of history (history_minutes: 43200
// loads): the log-end changes kept must not grow with every poll. Only
// those past the committed offset can date a lag; the others cost memory
// (40 bytes a poll a partition: 1,600 busy partitions polled every second
// hold 166 GB after a month) and tell nothing.
func TestHistoryBoundedWhenCaughtUp(t *testing.T) {
	s := newState(30*24*time.Hour, 0)
	tp := topicPartition{"t", 0}
	k := partKey{"m", "t", "0"}
	base := time.Unix(0, 0)
	for i := range 86400 {
		s.setEnd(tp, int64(i+1), time.Time{}, nil, base.Add(time.Duration(i)*time.Second))
		if err := s.setOffset(context.Background(), k, nil, []byte(strconv.Itoa(i))); err != nil { // one record behind
			t.Fatal(err)
		}
		s.forget(s.wanted()) // as every poll does
	}
	if n := len(s.ends[tp].changes); n > 10 {
		t.Errorf("kept %d log-end changes of a partition whose module is one record behind", n)
	}
	now := base.Add(86400 * time.Second)
	lags := s.snapshot("c", now, time.Hour, "", lostConn{})
	if len(lags) != 1 || lags[0].Lag != 1 || lags[0].LagSeconds != 1 || lags[0].LagSecondsAtLeast {
		t.Errorf("lag after a day: %+v, want 1 record, 1 s old", lags)
	}
}

// A log end read before the offset was committed is lower than it for a
// while, as records are produced, pushed and committed between two polls:
// that is a lag of 0, not an error. Only a log end read after the offset
// and below it says the records committed are gone.
func TestLogEndReadBeforeCommitIsNotPastIt(t *testing.T) {
	s := newState(time.Hour, 0)
	tp := topicPartition{"t", 0}
	asked := time.Now() // the log end is asked for
	if err := s.setOffset(context.Background(), partKey{"m", "t", "0"}, nil, []byte("12")); err != nil {
		t.Fatal(err)
	}
	s.setEnd(tp, 10, asked, nil, time.Now())
	lags := s.snapshot("c", time.Now(), time.Hour, "", lostConn{})
	if len(lags) != 1 || lags[0].Err != "" || lags[0].Lag != 0 {
		t.Errorf("log end 10 read before offset 12: %+v, want lag 0", lags)
	}
	s.setEnd(tp, 10, time.Now(), nil, time.Now())
	lags = s.snapshot("c", time.Now(), time.Hour, "", lostConn{})
	if want := "committed offset 12 past the log end 10: topic re-created or log truncated"; len(lags) != 1 || lags[0].Err != want || lags[0].LogEnd != 10 {
		t.Errorf("log end 10 read after offset 12: %+v, want the error %q", lags, want)
	}
}

// TestKeysSwitchOnlyForOffsetsOfASecondTopic attacks README's rule that a
// module's keys become <topic>.<partition> when it has offsets for more
// than one topic: a partition of another topic claimed in owners/ with no
// offset (a ktransfer that cannot resolve its start), or the module's
// folder of offsets that cannot be listed ("*"), switched every healthy
// key of the module (c.m.0.delay became c.m.t.0.delay: its zabbix item
// went quiet, zabbix_sender failed the unknown key, the JSON key was
// renamed) for as long as the claim or the ACL lasted. Such a claimed
// partition is keyed <topic>.<partition>, never as one of the module's
// own; one of the module's topic, or of a topic whose count of partitions
// it recorded, is the module's. Keys hold while every lag is unknown
// (ZooKeeper away), and no two entries of a module share one.
func TestKeysSwitchOnlyForOffsetsOfASecondTopic(t *testing.T) {
	s := newState(time.Hour, 0)
	s.newEpoch()
	live := context.Background()
	for _, k := range []partKey{{"m", "t", "0"}, {"n", "t", "0"}} {
		if err := s.setOffset(live, k, nil, []byte("7")); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	s.setEnd(topicPartition{"t", 0}, 10, now, nil, now)
	check := func(what, zkErr, wantZabbix, wantJSON string) {
		t.Helper()
		var z, j bytes.Buffer
		writeZabbix(&z, []string{"c"}, s.snapshot("c", now, time.Minute, zkErr, lostConn{}), nil, false, nil)
		if got, _, _ := strings.Cut(z.String(), "- c.kmonitor.errors"); got != wantZabbix {
			t.Errorf("%s: zabbix lines\n%swant\n%s", what, got, wantZabbix)
		}
		writeJSON(&j, []string{"c"}, s.snapshot("c", now, time.Minute, zkErr, lostConn{}), false)
		if got := strings.TrimSpace(j.String()); got != wantJSON {
			t.Errorf("%s: JSON %s, want %s", what, got, wantJSON)
		}
	}
	check("one topic", "", "- c.m.0.delay 3\n- c.n.0.delay 3\n", `{"c":{"m":{"0":3},"n":{"0":3}}}`)
	for _, m := range []string{"m", "n"} {
		s.setOwned(live, m, "t", new(byte), []string{"0", "1"})
		s.setOwned(live, m, "u", new(byte), []string{"0"})
	}
	s.setCount(live, moduleTopic{"n", "u"}, new(byte), 1, false) // n has started u (its count), no offset yet
	check("partitions claimed, no offset: t/1, and u/0 of a topic the module has no offsets of (m) or a count of (n)", "",
		"- c.m.0.delay 3\n- c.n.t.0.delay 3\n", `{"c":{"m":{"0":3,"1":null,"u.0":null},"n":{"t.0":3,"t.1":null,"u.0":null}}}`)
	check("zookeeper away", "zookeeper away", "",
		`{"c":{"m":{"0":null,"1":null,"u.0":null},"n":{"t.0":null,"t.1":null,"u.0":null}}}`)
	for _, m := range []string{"m", "n"} { // n's claims of u hidden, its folder of u not
		s.deniedFolder(live, partKey{m, "*", "*"}, new(byte), "/consumers/"+m+"/offsets", errors.New("NOAUTH"))
	}
	check("the module's folder of offsets unreadable", "", "- c.m.0.delay 3\n- c.n.t.0.delay 3\n",
		`{"c":{"m":{"*.*":null,"0":3},"n":{"*.*":null,"t.0":3}}}`)
	s.deniedFolder(live, partKey{"m", "t", "*"}, new(byte), "/consumers/m/offsets/t", errors.New("NOAUTH"))
	check("and its folder of t", "", "- c.m.0.delay 3\n- c.n.t.0.delay 3\n",
		`{"c":{"m":{"*.*":null,"*":null,"0":3},"n":{"*.*":null,"t.0":3}}}`)
	if err := s.setOffset(live, partKey{"m", "u", "0"}, nil, []byte("0")); err != nil {
		t.Fatal(err)
	}
	s.setEnd(topicPartition{"u", 0}, 4, now, nil, now)
	check("offsets of two topics", "", "- c.m.t.0.delay 3\n- c.m.u.0.delay 4\n- c.n.t.0.delay 3\n",
		`{"c":{"m":{"*.*":null,"t.*":null,"t.0":3,"u.0":4},"n":{"*.*":null,"t.0":3}}}`)
}
