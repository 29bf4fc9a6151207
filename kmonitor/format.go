package kmonitor

import (
	"bytes"
	"cmp"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// moduleKeys gives every lag its partition key within its module: the
// partition, or "<topic>.<partition>" when the module has offsets for more
// than one topic in the cluster (so that they do not overwrite each other;
// the partition is what follows the last dot). The topics counted are
// those the module keeps offsets of (state.offsetFolders), not the entries
// shown: a partition claimed in owners/ of another topic, no offset
// committed, is keyed "<topic>.<partition>", never as one of the module's
// own, and the entry of the module's folder of offsets when it cannot be
// listed is "*" for a module with no topic known, "*.*" otherwise; neither
// switches the module's keys, nor does an entry hidden by that folder.
func moduleKeys(lags []Lag) []string {
	keys := make([]string, len(lags))
	for i, l := range lags {
		keys[i] = l.Partition
		switch {
		case l.Topic == "*" && l.Partition == "*":
			if l.topics > 0 {
				keys[i] = "*.*"
			}
		case l.topics > 1 || !l.inFolder:
			keys[i] = l.Topic + "." + l.Partition
		}
	}
	return keys
}

// zabbixKeys returns the zabbix_sender key of each of lags: dotted, or
// the item form.
func zabbixKeys(lags []Lag, itemKeys bool) []string {
	keys := moduleKeys(lags)
	for i, l := range lags {
		if itemKeys {
			keys[i] = "kmonitor.delay[" + itemParams(l.Cluster, l.Module, l.Topic, l.Partition) + "]"
		} else {
			keys[i] = l.Cluster + "." + l.Module + "." + keys[i] + ".delay"
		}
	}
	return keys
}

// sortLags orders by cluster, module, topic, then partition number.
func sortLags(lags []Lag) {
	slices.SortFunc(lags, func(a, b Lag) int {
		return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Module, b.Module),
			cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.pnum, b.pnum), cmp.Compare(a.Partition, b.Partition))
	})
}

// detail is one partition in the ?detail=1 JSON.
type detail struct {
	Topic             string   `json:"topic"`
	Partition         string   `json:"partition"`
	Lag               *int64   `json:"lag"`
	Committed         *int64   `json:"committed"`
	LogEnd            *int64   `json:"log_end"`
	LagSeconds        *float64 `json:"lag_seconds"`
	LagSecondsAtLeast bool     `json:"lag_seconds_at_least"`
	Error             *string  `json:"error"`
}

// writeJSON writes {"<cluster>":{"<module>":{"<partition>":<lag>}}}; a
// partition whose lag is unknown has the value null. Every cluster asked
// for appears, in the order asked (base.clusters), even with no modules. With withDetail each value is an
// object with the offsets, the estimated lag in seconds and the error.
func writeJSON(buf *bytes.Buffer, clusters []string, lags []Lag, withDetail bool) {
	sortLags(lags)
	keys := moduleKeys(lags)
	buf.WriteByte('{')
	for ci, c := range clusters {
		if ci > 0 {
			buf.WriteByte(',')
		}
		writeString(buf, c)
		buf.WriteString(":{")
		module := ""
		first := true
		// lags is sorted by cluster name, clusters is in the configured
		// order: find this cluster's run.
		i, _ := slices.BinarySearchFunc(lags, c, func(l Lag, c string) int { return cmp.Compare(l.Cluster, c) })
		for ; i < len(lags) && lags[i].Cluster == c; i++ {
			l := lags[i]
			if first || l.Module != module {
				if !first {
					buf.WriteString("},")
				}
				writeString(buf, l.Module)
				buf.WriteString(":{")
				module, first = l.Module, false
			} else {
				buf.WriteByte(',')
			}
			writeString(buf, keys[i])
			buf.WriteByte(':')
			switch {
			case withDetail:
				b, _ := json.Marshal(toDetail(l))
				buf.Write(b)
			case l.Err != "":
				buf.WriteString("null")
			default:
				buf.WriteString(strconv.FormatInt(l.Lag, 10))
			}
		}
		if !first {
			buf.WriteByte('}')
		}
		buf.WriteByte('}')
	}
	buf.WriteString("}\n")
}

func toDetail(l Lag) detail {
	d := detail{Topic: l.Topic, Partition: l.Partition}
	if l.Err != "" {
		d.Error = &l.Err
	}
	if l.Committed >= 0 {
		d.Committed = &l.Committed
	}
	if l.LogEnd >= 0 {
		d.LogEnd = &l.LogEnd
	}
	if l.Err == "" {
		d.Lag = &l.Lag
		s := float64(int64(l.LagSeconds*1000)) / 1000
		d.LagSeconds, d.LagSecondsAtLeast = &s, l.LagSecondsAtLeast
	}
	return d
}

// writeString writes s as a JSON string; names need no escaping almost
// always, and then no encoder is needed.
func writeString(buf *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			buf.Write(b)
			return
		}
	}
	buf.WriteByte('"')
	buf.WriteString(s)
	buf.WriteByte('"')
}

// writeZabbix writes one zabbix_sender line per partition whose lag is
// known, and per cluster the number of partitions whose lag is not:
//
//   - <cluster>.<module>.<partition>.delay <lag>       (keys=dotted, the 2015 form)
//   - <cluster>.kmonitor.errors <count>
//   - kmonitor.delay[<cluster>,<module>,<topic>,<partition>] <lag>   (keys=item)
//   - kmonitor.errors[<cluster>] <count>
//
// The item form is a valid Zabbix item key for any names (parameters are
// quoted when needed); it matches the zabbix_lld macros. A key holding
// white space is written as one quoted zabbix_sender field (senderField).
// A cluster in unseen (no ZooKeeper session for longer than its timeout,
// no <chroot>/consumers, or not read once since the start) counts at
// least one error even when no partition of it is known: a cluster never
// seen is not a healthy one.
//
// Dotted keys join names that may hold dots: module "a.b" partition 1 and
// module "a", topic "b", partition 1 (a module of several topics) make the
// same key. Zabbix would take each one's lag in turn for one item: no
// such key is sent, its partitions count as errors, and they are returned
// (key: cluster/module/topic/partition, …), for the log. others are the
// lags of the clusters not written (an answer for one cluster): a dotted
// key one of them makes too is shared all the same (cluster "bj" module
// "ssd.x" and cluster "bj.ssd" module "x"), whichever cluster an answer is
// asked for, as zabbix_sender may be fed one cluster at a time.
func writeZabbix(buf *bytes.Buffer, clusters []string, lags, others []Lag, itemKeys bool, unseen map[string]bool) (shared []string) {
	sortLags(lags)
	errs := map[string]int{}
	lineKeys := zabbixKeys(lags, itemKeys)
	byKey := map[string][]*Lag{}
	for i := range lags { // in error or not: a key is shared all the same
		byKey[lineKeys[i]] = append(byKey[lineKeys[i]], &lags[i])
	}
	if !itemKeys { // an item key names its cluster apart
		for i, key := range zabbixKeys(others, false) {
			if byKey[key] != nil {
				byKey[key] = append(byKey[key], &others[i])
			}
		}
	}
	for i, l := range lags {
		if l.Err != "" || len(byKey[lineKeys[i]]) > 1 {
			errs[l.Cluster]++
			continue
		}
		writeSenderLine(buf, lineKeys[i], strconv.FormatInt(l.Lag, 10))
	}
	for key, ls := range byKey {
		if len(ls) < 2 {
			continue
		}
		names := make([]string, len(ls))
		for j, l := range ls {
			names[j] = l.Cluster + "/" + l.Module + "/" + l.Topic + "/" + l.Partition
		}
		shared = append(shared, key+": "+strings.Join(names, ", "))
	}
	slices.Sort(shared)
	for _, c := range clusters {
		key := c + ".kmonitor.errors"
		if itemKeys {
			key = "kmonitor.errors[" + itemParams(c) + "]"
		}
		n := errs[c]
		if unseen[c] {
			n = max(n, 1)
		}
		writeSenderLine(buf, key, strconv.Itoa(n))
	}
	return shared
}

// writeSenderLine writes "- <key> <value>": a line of zabbix_sender's
// input file, the host "-" standing for its -s.
func writeSenderLine(buf *bytes.Buffer, key, value string) {
	buf.WriteString("- ")
	writeSenderField(buf, key)
	buf.WriteByte(' ')
	buf.WriteString(value)
	buf.WriteByte('\n')
}

// writeSenderField writes one field of a zabbix_sender input line.
// zabbix_sender reads a field up to white space unless it starts with a
// double quote; in a quoted field it takes \" and \\ as escapes (and \n
// as a line feed), and nothing is escaped outside quotes. So a field with
// a space or a tab, or one starting with '"', is quoted, every '"' and '\'
// in it escaped; any other field is written as it is.
func writeSenderField(buf *bytes.Buffer, s string) {
	if s != "" && !strings.ContainsAny(s, " \t") && s[0] != '"' {
		buf.WriteString(s)
		return
	}
	buf.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			buf.WriteByte('\\')
		}
		buf.WriteByte(s[i])
	}
	buf.WriteByte('"')
}

// itemParams joins Zabbix item key parameters, quoting those that need it,
// by the rule Zabbix applies when it makes an item from the zabbix_lld
// macros (zbx_quote_key_param): a parameter holding ',' or ']', or
// starting with '"', ' ' or '[', is written in double quotes with '"'
// escaped as \"; any other is written as it is, '[' and '"' inside it
// included. Zabbix matches a sent value to an item by its key as written,
// so a parameter quoted where Zabbix does not quote it would leave the
// discovered item without data. In a quoted parameter
// Zabbix has no escape for a backslash, so one ending in '\' would
// swallow its closing quote (Zabbix refuses such keys, and LLD cannot
// make an item of one): such a parameter gets a space after that
// backslash, inside the quotes, and its zabbix_lld macro value the same
// space (lldValue), so that the item prototype still gives this key.
func itemParams(params ...string) string {
	var b strings.Builder
	for i, p := range params {
		if i > 0 {
			b.WriteByte(',')
		}
		if !quoteParam(p) {
			b.WriteString(p)
			continue
		}
		b.WriteByte('"')
		b.WriteString(strings.ReplaceAll(lldValue(p), `"`, `\"`))
		b.WriteByte('"')
	}
	return b.String()
}

// quoteParam reports whether itemParams quotes p.
func quoteParam(p string) bool {
	return p != "" && (p[0] == '"' || p[0] == ' ' || p[0] == '[' || strings.ContainsAny(p, ",]"))
}

// lldValue is a name as it stands in a zabbix_lld macro: itself, but for
// one that is quoted in item keys and ends in a backslash, which gets a
// space after it (see itemParams).
func lldValue(p string) string {
	if quoteParam(p) && strings.HasSuffix(p, `\`) {
		return p + " "
	}
	return p
}

// writeLLD writes Zabbix low-level discovery data: a plain JSON array with
// one object per partition (an unreadable folder's "*" entry is none).
func writeLLD(buf *bytes.Buffer, lags []Lag) {
	sortLags(lags)
	type entry struct {
		Cluster   string `json:"{#CLUSTER}"`
		Module    string `json:"{#MODULE}"`
		Topic     string `json:"{#TOPIC}"`
		Partition string `json:"{#PARTITION}"`
	}
	out := make([]entry, 0, len(lags))
	for _, l := range lags {
		if l.folder {
			continue // not a partition: no item to discover
		}
		out = append(out, entry{lldValue(l.Cluster), lldValue(l.Module), lldValue(l.Topic), lldValue(l.Partition)})
	}
	b, _ := json.Marshal(out)
	buf.Write(b)
	buf.WriteByte('\n')
}
