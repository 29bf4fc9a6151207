// Package config loads the suite's YAML configuration files.
//
// Files are decoded over a struct that already holds the defaults. Every key
// in the file must match a yaml tag of the struct: an unknown key is an error
// naming the file, the line and the key, so that a typo is never silently
// ignored. Problems found while validating are collected with Problems and
// reported together, each naming file, field and bad value.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// Load reads the YAML file at path and decodes it over dst, a pointer to a
// struct holding the defaults.
func Load(path string, dst any) error {
	data, err := ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	return Decode(path, data, dst)
}

// LoadAddr reads path and decodes it over dst as Load does, and tells
// whether the file left addr, one of dst's fields holding an address,
// unset (addrDefault: addr keeps the default it held). "addr:" with no
// value keeps the default too, as for every key. data is what was read
// (nil when the read failed); err is Load's.
func LoadAddr(path string, dst any, addr *string) (data []byte, addrDefault bool, err error) {
	// A value no address looks like tells whether the file set it.
	const unset = "\x00unset"
	def := *addr
	*addr = unset
	data, err = ReadFile(path)
	if err != nil {
		err = fmt.Errorf("read config: %w", err)
	} else {
		err = Decode(path, data, dst)
	}
	if *addr == unset {
		*addr, addrDefault = def, true
	}
	return data, addrDefault, err
}

// MaxFileBytes bounds the size of a configuration file (and of a file it
// names that ReadFile reads): far above what any holds.
const MaxFileBytes = 16 << 20

// ReadFile reads the file at path, which must be a regular file of at most
// MaxFileBytes: a named pipe would hold the start (or a reload) until
// something writes to it, a device like /dev/zero never ends, a directory
// or a file of many megabytes (a log, an image) is no configuration. The
// error names path and why.
func ReadFile(path string) ([]byte, error) {
	// Opened without blocking (a pipe with no writer would block the
	// open itself), then told by what was opened.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, fileKind(st.Mode()))
	}
	if st.Size() > MaxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d MiB (%d bytes): not a configuration file", path, MaxFileBytes>>20, st.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes { // grew while read
		return nil, fmt.Errorf("%s: larger than %d MiB: not a configuration file", path, MaxFileBytes>>20)
	}
	return data, nil
}

// fileKind names the kind of a file that is not a regular one.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
}

// Decode decodes data, which came from the file named name, over dst.
func Decode(name string, data []byte, dst any) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return syntaxError(name, data, err)
	}
	// A second document (after "---") would be ignored, unknown keys
	// and all; an empty one (a trailing "---") holds nothing to ignore.
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return syntaxError(name, data, err)
		}
		if len(next.Content) > 0 && next.Content[0].Tag != "!!null" {
			return fmt.Errorf("%s:%d: a second YAML document; a configuration file holds one", name, next.Line)
		}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // an empty file leaves the defaults
	}
	if err := emptyMark(name, &doc); err != nil {
		return err
	}
	d := decoder{file: name}
	d.node(doc.Content[0], reflect.ValueOf(dst).Elem(), "")
	if len(d.errs) == 0 {
		return nil
	}
	return &DecodeError{Fields: d.failed, err: errors.Join(d.errs...)}
}

// DecodeError is Decode's error for a file that parses but holds keys
// that do not decode: an unknown key, a value of the wrong type. The rest
// of the file was decoded, so that its values can be checked too and
// every problem reported at once (Problems.Skip leaves out the fields
// named here).
type DecodeError struct {
	// Fields are the fields that did not decode, as the problems name
	// them ("" for the whole document).
	Fields []string
	err    error
}

func (e *DecodeError) Error() string { return e.err.Error() }
func (e *DecodeError) Unwrap() error { return e.err }

// Checkable tells whether the values decoded beside err (Decode's error)
// may be checked: err is a DecodeError of some fields, not of the whole
// document, nor another error (syntax, reading the file).
func Checkable(err error) ([]string, bool) {
	var de *DecodeError
	if !errors.As(err, &de) || slices.Contains(de.Fields, "") {
		return nil, false
	}
	return de.Fields, true
}

// coreTags are the tags YAML gives a scalar by itself, or that a file
// may name (!!str, !!binary, …): any other is a value starting with '!'.
var coreTags = map[string]bool{"!!str": true, "!!int": true, "!!float": true, "!!bool": true,
	"!!null": true, "!!binary": true, "!!timestamp": true, "!!merge": true}

// emptyMark refuses a value read as a YAML tag ('!') or as an anchor
// ('&') of nothing: an unquoted value starting with one of them, a
// generated password as often as not, which YAML reads as empty. It is
// told by its line, without the value.
func emptyMark(name string, n *yaml.Node) error {
	switch {
	case n.Kind == yaml.ScalarNode && strings.HasPrefix(n.Tag, "!") && !coreTags[n.Tag]:
		return fmt.Errorf("%s:%d: a value starting with ! is a YAML tag (not shown: it may be a secret); quote the value", name, n.Line)
	case n.Kind == yaml.ScalarNode && n.Anchor != "" && n.Value == "" && n.Tag == "!!null":
		return fmt.Errorf("%s:%d: a value starting with & is a YAML anchor, here of nothing (not shown: it may be a secret); quote the value", name, n.Line)
	}
	for _, c := range n.Content {
		if err := emptyMark(name, c); err != nil {
			return err
		}
	}
	return nil
}

// parserProblems are the problems yaml.v3's parser reports, whose line it
// counts from 0 (its scanner's, the other syntax errors, from 1).
var parserProblems = []string{
	"did not find expected ',' or ']'", "did not find expected ',' or '}'", "did not find expected '-' indicator",
	"did not find expected <document start>", "did not find expected <stream-start>", "did not find expected key",
	"did not find expected node content", "found duplicate %TAG directive", "found duplicate %YAML directive",
	"found incompatible YAML document", "found undefined tag handle",
}

// syntaxLine splits a yaml.v3 syntax error, "line N: problem", into the
// file's line and the problem.
func syntaxLine(msg string) (int, string, bool) {
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return 0, "", false
	}
	n, problem, ok := strings.Cut(rest, ": ")
	line, err := strconv.Atoi(n)
	if !ok || err != nil {
		return 0, "", false
	}
	if slices.Contains(parserProblems, problem) {
		line++
	}
	return line, problem, true
}

// syntaxError is yaml's error for the file named name, holding data. An
// alias naming no anchor is told without its name: that is an unquoted
// value starting with '*', a generated password as often as not.
func syntaxError(name string, data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if at, problem, ok := syntaxLine(msg); ok {
		return fmt.Errorf("%s:%d: %s", name, at, problem)
	}
	rest, ok := strings.CutPrefix(msg, "unknown anchor '")
	anchor, ok2 := strings.CutSuffix(rest, "' referenced")
	if !ok || !ok2 {
		return fmt.Errorf("%s: %s", name, msg)
	}
	at := name
	for i := 0; ; i++ {
		j := bytes.Index(data[i:], []byte("*"+anchor))
		if j < 0 {
			break
		}
		i += j
		if end := i + 1 + len(anchor); end == len(data) || bytes.IndexByte([]byte(" \t\r\n,]}#"), data[end]) >= 0 {
			at = fmt.Sprintf("%s:%d", name, 1+bytes.Count(data[:i], []byte("\n")))
			break
		}
	}
	return fmt.Errorf("%s: a value starting with * is a YAML alias, and this one names no anchor (not shown: it may be a secret); quote the value", at)
}

type decoder struct {
	file   string
	errs   []error
	failed []string // the fields of errs
}

func (d *decoder) fail(n *yaml.Node, field, format string, args ...any) {
	d.failed = append(d.failed, field)
	msg := fmt.Sprintf(format, args...)
	field = fieldName(field)
	if field == "" {
		d.errs = append(d.errs, fmt.Errorf("%s:%d: %s", d.file, n.Line, msg))
		return
	}
	d.errs = append(d.errs, fmt.Errorf("%s:%d: %s: %s", d.file, n.Line, field, msg))
}

// node decodes n into v. Structs are walked key by key so that unknown keys
// and type errors name the field; everything else is left to yaml.
func (d *decoder) node(n *yaml.Node, v reflect.Value, field string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.Kind() == reflect.Struct && v.Type() != reflect.TypeFor[yaml.Node]() {
		d.structNode(n, v, field)
		return
	}
	if v.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode {
		// Entry by entry, so that an entry of the wrong shape is named.
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.node(item, s.Index(i), fmt.Sprintf("%s[%d]", field, i))
		}
		v.Set(s)
		return
	}
	if v.Kind() == reflect.Map && n.Kind == yaml.MappingNode && v.Type().Key().Kind() == reflect.String {
		// Entry by entry too, so that a key given twice or a value of the
		// wrong shape is named (yaml's own error, for the whole map, was
		// told as "must be a mapping, got a mapping").
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		seen := map[string]bool{}
		pairs := d.pairs(n, v.Type(), field)
		for i := 0; i+1 < len(pairs); i += 2 {
			key := pairs[i].Value
			if seen[key] {
				d.fail(pairs[i], shownKey(field+"."+key, key), "key appears twice")
				continue
			}
			seen[key] = true
			ev := reflect.New(v.Type().Elem()).Elem()
			d.node(pairs[i+1], ev, field+"."+key)
			v.SetMapIndex(reflect.ValueOf(key), ev)
		}
		return
	}
	if n.Tag == "!!null" && v.Kind() != reflect.Pointer {
		return // "key:" with no value keeps the default
	}
	if octalByZero(n, v.Type()) {
		d.fail(n, field, "must be written without a leading 0 (YAML reads it as octal; write 0o… for an octal number), got %q", n.Value)
		return
	}
	if !wholeNumber(n, v.Type()) {
		d.fail(n, field, "must be an integer, got %s", describe(n, v.Type(), field))
		return
	}
	if n.Kind == yaml.ScalarNode && n.Style != 0 && scalarKind(v.Type()) && !ownTag(n, v.Type()) {
		// A string (quoted, a block scalar, tagged !!str), whatever it
		// reads as: yaml decodes a string 'on', 'no' or 'Y' into a
		// boolean (YAML 1.1's words), which turned
		// insecure_skip_verify: 'Y' on; it refused a quoted "false".
		d.fail(n, field, "%s", typeError(nil, n, v.Type(), field))
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		d.fail(n, field, "%s", typeError(err, n, v.Type(), field))
	}
}

// isInteger says whether t is one of Go's integer types.
func isInteger(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// octalByZero says whether n, decoded into t, is an integer written with a
// leading 0 (0100, -0200), which yaml reads as octal (YAML 1.1): 64 where
// the file, the 2015 suite and its reader say 100. 0 itself, and 0o144 or
// 0x64, say what they are; so does one whose octal reading is its decimal
// one (00 to 07, zero-padded), which loaded right and still does.
func octalByZero(n *yaml.Node, t reflect.Type) bool {
	if !isInteger(t) && t.Kind() != reflect.Float32 && t.Kind() != reflect.Float64 {
		return false // a float key (rate_limit) takes an integer too: 0100 is 64 there as well
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" { // plain, or tagged !!int in any style
		return false
	}
	digits := strings.ReplaceAll(strings.TrimLeft(n.Value, "+-"), "_", "")
	if len(digits) < 2 || digits[0] != '0' || digits[1] < '0' || digits[1] > '9' {
		return false
	}
	dec, err1 := strconv.ParseUint(digits, 10, 64)
	oct, err2 := strconv.ParseUint(digits, 8, 64)
	return err1 != nil || err2 != nil || dec != oct
}

// wholeNumber says whether n may be decoded into t as far as fractions
// go: yaml cuts a float given for an integer to its integer part (0.5 to
// 0, -0.5 to 0, 2^63 to a negative number), which would change the
// value's meaning without a word. A float without a fraction (100.0,
// 1e3) is the integer it names.
func wholeNumber(n *yaml.Node, t reflect.Type) bool {
	if !isInteger(t) {
		return true
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!float" {
		return true
	}
	var f float64
	if err := n.Decode(&f); err != nil {
		return true // yaml reports it
	}
	return f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63
}

func (d *decoder) structNode(n *yaml.Node, v reflect.Value, field string) {
	if n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, field, "must be a mapping of keys, got %s", describe(n, v.Type(), field))
		return
	}
	fields, rest := structFields(v)
	seen := map[string]bool{}
	pairs := d.pairs(n, v.Type(), field)
	for i := 0; i+1 < len(pairs); i += 2 {
		k, val := pairs[i], pairs[i+1]
		key := k.Value
		path := key
		if field != "" {
			path = field + "." + key
		}
		if seen[key] {
			d.fail(k, shownKey(path, key), "key appears twice")
			continue
		}
		seen[key] = true
		if fv, ok := fields[key]; ok {
			d.node(val, fv, path)
			continue
		}
		if rest.IsValid() { // an inline map takes the keys the struct does not name
			if rest.IsNil() {
				rest.Set(reflect.MakeMap(rest.Type()))
			}
			ev := reflect.New(rest.Type().Elem()).Elem()
			d.node(val, ev, path)
			rest.SetMapIndex(reflect.ValueOf(key), ev)
			continue
		}
		if shown := shownKey(path, key); shown != path {
			d.fail(k, shown, "unknown key, not shown past its ':' (in a flow mapping, {secret: x}, write a space after ':'; known keys: %s)", strings.Join(sortedKeys(fields), ", "))
			continue
		}
		d.fail(k, path, "unknown key (known keys: %s)", strings.Join(sortedKeys(fields), ", "))
	}
}

// shownKey is path, whose last element is key, as an error may show it: a
// key holding ':' is cut after it. In a flow mapping, {secret:Hunter2}
// without a space after ':' is one key, "secret:Hunter2", holding the
// value: a secret, for what the error knows.
func shownKey(path, key string) string {
	i := strings.IndexByte(key, ':')
	if i < 0 {
		return path
	}
	return strings.TrimSuffix(path, key) + key[:i+1] + "…"
}

// pairs is MappingPairs(n), n being decoded into t as field, a merge key
// of the wrong shape reported (its value not shown where field may hold
// a secret).
func (d *decoder) pairs(n *yaml.Node, t reflect.Type, field string) []*yaml.Node {
	pairs, bad := MappingPairs(n)
	for _, b := range bad {
		path := "<<"
		if field != "" {
			path = field + ".<<"
		}
		what := b
		if b.Kind == yaml.AliasNode {
			what = b.Alias // what the alias names, not its name
		}
		d.fail(b, path, "must be a mapping, an alias of one (*anchor) or a list of them, got %s", describe(what, t, field))
	}
	return pairs
}

// MappingPairs returns the keys and values of the mapping n, alternating
// as in n.Content, with those its merge keys bring in (YAML's merge key:
// <<: *anchor, <<: [*a, *b], or a mapping written in place): a key n
// gives itself wins over a merged one, an earlier merged mapping over a
// later one, as the merge key type says. Keys n gives twice are kept
// twice (the caller refuses them). bad are the values of merge keys that
// are not a mapping, an alias of one or a list of them. Each mapping is
// merged once, however many merges name it: a file of merges naming
// merges is not walked path by path.
func MappingPairs(n *yaml.Node) (pairs, bad []*yaml.Node) {
	have := map[string]bool{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMergeKey(k) {
			merges = append(merges, v)
			continue
		}
		pairs = append(pairs, k, v)
		have[k.Value] = true
	}
	merged := map[*yaml.Node]bool{n: true}
	// mapping adds m's keys that are not there yet, then its merges'.
	var mapping func(m *yaml.Node)
	var source func(v *yaml.Node, inList bool)
	mapping = func(m *yaml.Node) {
		if merged[m] {
			return // its keys are there already
		}
		merged[m] = true
		var inner []*yaml.Node
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			switch {
			case isMergeKey(k):
				inner = append(inner, v)
			case !have[k.Value]:
				pairs = append(pairs, k, v)
				have[k.Value] = true
			}
		}
		for _, v := range inner {
			source(v, false)
		}
	}
	source = func(v *yaml.Node, inList bool) {
		orig := v
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		switch {
		case v.Kind == yaml.MappingNode:
			mapping(v)
		case v.Kind == yaml.SequenceNode && !inList && orig.Kind != yaml.AliasNode:
			for _, item := range v.Content {
				source(item, true)
			}
		default:
			bad = append(bad, orig)
		}
	}
	for _, v := range merges {
		source(v, false)
	}
	return pairs, bad
}

// isMergeKey reports whether k is YAML's merge key: << unquoted.
func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge"
}

// structFields maps yaml keys to the fields of v, and returns the inline map
// field that collects other keys, if the struct has one.
func structFields(v reflect.Value) (map[string]reflect.Value, reflect.Value) {
	fields := map[string]reflect.Value{}
	var rest reflect.Value
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			if f.Type.Kind() == reflect.Map {
				rest = v.Field(i)
				continue
			}
			inner, _ := structFields(v.Field(i))
			for k, fv := range inner {
				fields[k] = fv
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = v.Field(i)
	}
	return fields, rest
}

func sortedKeys(m map[string]reflect.Value) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// describe names what n is for a type error of field (decoded into t):
// its value, quoted, unless it may be a secret (see holdsSecret and
// secretPair): then only its kind, so that a secret given in the wrong
// shape is not printed in the start-up error, the log and /status.
func describe(n *yaml.Node, t reflect.Type, field string) string {
	switch {
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case !holdsSecret(t, field, 0) && !strings.HasPrefix(n.Value, "whsec_") && !secretPair(n.Value):
		if n.Kind == yaml.ScalarNode && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 && scalarKind(t) {
			// "false" or '8080' is a string, whatever it reads as.
			return fmt.Sprintf("%q in quotes (a string: write it without them)", n.Value)
		}
		return fmt.Sprintf("%q", n.Value)
	}
	kind := "a value"
	switch n.ShortTag() {
	case "!!str":
		kind = "a string"
	case "!!int", "!!float":
		kind = "a number"
	case "!!bool":
		kind = "true or false"
	}
	return kind + " (not shown: it may be a secret)"
}

// ownTag says whether n is tagged explicitly as what t (or what it points
// to) holds: !!bool for a boolean, !!int or !!float for a number (a
// fraction given an integer is refused before), !!null for an optional
// value (!!bool "false" says what it is, in quotes or not).
func ownTag(n *yaml.Node, t reflect.Type) bool {
	if n.Style&yaml.TaggedStyle == 0 {
		return false
	}
	tag := n.ShortTag()
	if tag == "!!null" && t.Kind() == reflect.Pointer {
		return true
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Bool {
		return tag == "!!bool"
	}
	return tag == "!!int" || tag == "!!float"
}

// scalarKind says whether t (or what it points to) is a boolean or a
// number: a value of it written in quotes is right without them.
func scalarKind(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// secretPair says whether v reads as "Name: value" with a Name like a
// secret's: a protocol.headers entry written as one string
// ("Authorization:Bearer …", without the space YAML needs).
func secretPair(v string) bool {
	name, _, ok := strings.Cut(v, ":")
	return ok && (SecretKey(name) || CredentialName(name))
}

// holdsSecret says whether field, of type t, may hold a secret: its key
// is named like one (password, secret, token: signing_secrets,
// password_file, …), or t is a struct with such a field (zk_auth given as
// "digest:user:password").
func holdsSecret(t reflect.Type, field string, depth int) bool {
	key := field[strings.LastIndex(field, ".")+1:]
	if i := strings.IndexByte(key, '['); i >= 0 {
		key = key[:i] // signing_secrets[0]
	}
	if SecretKey(key) {
		return true
	}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || depth > 4 {
		return false
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" {
			name = f.Name
		}
		if f.IsExported() && name != "-" && holdsSecret(f.Type, name, depth+1) {
			return true
		}
	}
	return false
}

// SecretKey says whether a key is named like one holding a secret: a key
// of the files (password, secret, token) or an HTTP header carrying a
// credential (Authorization, Proxy-Authorization, Cookie, X-Api-Key); the
// names of protocol.headers are judged by the wider CredentialName.
func SecretKey(key string) bool {
	key = strings.ToLower(key)
	return strings.Contains(key, "password") || strings.Contains(key, "secret") || strings.Contains(key, "token") ||
		strings.Contains(key, "authorization") || strings.Contains(key, "cookie") ||
		strings.Contains(strings.NewReplacer("-", "", "_", "").Replace(key), "apikey")
}

// CredentialName says whether an HTTP header or URL query parameter is
// named like one carrying a credential: its name holds, in any case,
// auth (Authorization, Proxy-Authorization, Authentication, X-Auth-…),
// key (X-Api-Key, api_key), token, secret, password, passwd, cookie,
// session or credential.
func CredentialName(name string) bool {
	name = strings.ToLower(name)
	for _, w := range []string{"auth", "key", "token", "secret", "password", "passwd", "cookie", "session", "credential"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// RedactQuery is uri, a URL or URI template, with the value of each query
// parameter named like a credential (CredentialName) replaced by "…",
// unless it holds a placeholder ({#KEY}): what an error or a shown hash
// may show of a backend's URL.
func RedactQuery(uri string) string {
	path, query, ok := strings.Cut(uri, "?")
	if !ok {
		return uri
	}
	params := strings.Split(query, "&")
	for i, param := range params {
		name, value, ok := strings.Cut(param, "=")
		if unescaped, err := url.QueryUnescape(name); err == nil {
			name = unescaped
		}
		if ok && value != "" && !strings.Contains(value, "{#") && CredentialName(name) {
			params[i] = param[:len(param)-len(value)] + "…"
		}
	}
	return path + "?" + strings.Join(params, "&")
}

// keyFileKey says whether key names a private key's file (key_file,
// tls_key_file): like password_file's, its value may be the key itself,
// typed in place of its path (CheckSecretFile does not show it).
func keyFileKey(key string) bool {
	return strings.HasSuffix(strings.ToLower(key), "key_file")
}

// WithoutSecrets is data, a YAML document, with the values that may be
// secrets blanked (those of keys named like a secret, see SecretKey, or
// naming a private key's file, see keyFileKey, and every value starting
// with whsec_) and the credentials of a uri's query
// left out (RedactQuery), re-encoded: what a shown hash of a
// configuration file may cover, so that it cannot confirm a guessed
// password. A document that does not parse gives nil.
func WithoutSecrets(data []byte) []byte {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil
	}
	// headers: n is (in) the value of a headers key, whose entries are
	// named like HTTP headers (CredentialName).
	var blank func(n *yaml.Node, secret, headers bool)
	blank = func(n *yaml.Node, secret, headers bool) {
		if n.Kind == yaml.ScalarNode && (secret || strings.HasPrefix(n.Value, "whsec_")) {
			n.Value, n.Tag, n.Style = "", "!!str", 0
		}
		for i, c := range n.Content {
			if n.Kind == yaml.MappingNode && i%2 == 1 {
				k := n.Content[i-1].Value
				if k == "uri" && c.Kind == yaml.ScalarNode {
					c.Value = RedactQuery(c.Value)
				}
				blank(c, secret || SecretKey(k) || keyFileKey(k) || headers && CredentialName(k), k == "headers")
			} else if n.Kind != yaml.MappingNode || i%2 == 0 {
				blank(c, secret && n.Kind != yaml.MappingNode, headers && n.Kind != yaml.MappingNode)
			}
		}
	}
	blank(&doc, false, false)
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return nil
	}
	return out
}

func typeError(err error, n *yaml.Node, t reflect.Type, field string) string {
	for t.Kind() == reflect.Pointer { // an optional value (serialize_by_key: unset, true or false)
		t = t.Elem()
	}
	want := t.Kind().String()
	switch t.Kind() {
	case reflect.Slice:
		want = "a list"
	case reflect.Map:
		want = "a mapping"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		want = "an integer"
	case reflect.Bool:
		want = "true or false"
	case reflect.String:
		want = "a string"
	case reflect.Float32, reflect.Float64:
		want = "a number"
	}
	if want == "" {
		return strings.TrimPrefix(err.Error(), "yaml: ")
	}
	return fmt.Sprintf("must be %s, got %s", want, describe(n, t, field))
}

// Problems collects validation errors of one file.
type Problems struct {
	file string
	errs []error
	skip []string
}

// NewProblems starts a collection for the file at path.
func NewProblems(path string) *Problems { return &Problems{file: path} }

// Skip leaves out the later problems of fields (and of what they hold):
// those that did not decode (DecodeError.Fields), reported already.
func (p *Problems) Skip(fields ...string) { p.skip = append(p.skip, fields...) }

// skipped tells whether field is, or is inside, a field Skip named.
func (p *Problems) skipped(field string) bool {
	for _, f := range p.skip {
		if field == f || strings.HasPrefix(field, f+".") || strings.HasPrefix(field, f+"[") {
			return true
		}
	}
	return false
}

// Addf records that field has a bad value: "file: field: <reason>, got <value>".
func (p *Problems) Addf(field string, value any, format string, args ...any) {
	if p.skipped(field) {
		return
	}
	reason := fmt.Sprintf(format, args...)
	p.errs = append(p.errs, fmt.Errorf("%s: %s: %s, got %s", p.file, fieldName(field), reason, quote(value)))
}

// Add records a problem that is not about one value.
func (p *Problems) Add(field, reason string) {
	if p.skipped(field) {
		return
	}
	p.errs = append(p.errs, fmt.Errorf("%s: %s: %s", p.file, fieldName(field), reason))
}

// Err returns every recorded problem joined, or nil.
func (p *Problems) Err() error { return errors.Join(p.errs...) }

// fieldName is field as it can be printed on one line: quoted when it
// holds a character that is not printable (a key read from the file may).
func fieldName(field string) string {
	for _, r := range field {
		if !unicode.IsPrint(r) {
			return strconv.Quote(field)
		}
	}
	return field
}

func quote(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case []string:
		return fmt.Sprintf("%q", v)
	default:
		return fmt.Sprint(v)
	}
}

// HostPort reports whether s is host:port with a port from minPort to 65535.
func HostPort(s string, minPort int) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= minPort && n <= 65535
}

// DialAddr reports whether s is an address to connect to: host:port with
// a port from 1 to 65535 and a host that holds no white space or control
// character, and is not empty where hostRequired. HostPort took
// "10.1.1.1 :2181", which failed only when dialled, and ":2181", which
// ZooKeeper's client and fasthttp look up as a name ("lookup : no such
// host"), in a log line naming neither the file nor the key. Kafka's
// client dials ":9092" on this machine: an empty host is kept there.
func DialAddr(s string, hostRequired bool) bool {
	host, _, err := net.SplitHostPort(s)
	return err == nil && (host != "" || !hostRequired) && !strings.ContainsFunc(host, spaceOrControl) && HostPort(s, 1)
}

// ListenAddr reports whether s is an address to listen on: host:port with
// a port from 0 (any free one) to 65535 and a host, empty for every
// address, that holds no white space or control character (HostPort took
// "foo bar:80", which failed only at the start, on its look-up).
func ListenAddr(s string) bool {
	host, _, err := net.SplitHostPort(s)
	return err == nil && !strings.ContainsFunc(host, spaceOrControl) && HostPort(s, 0)
}

func spaceOrControl(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }

// HostList records the problems of a list of host:port addresses: empty
// when required, and each entry that is not an address to connect to
// (DialAddr; hostRequired as it says).
func (p *Problems) HostList(field string, hosts []string, required, hostRequired bool, what string) {
	if required && len(hosts) == 0 {
		p.Add(field, "must list at least one "+what+" host:port")
	}
	for i, h := range hosts {
		if !DialAddr(h, hostRequired) {
			p.Addf(field+"["+strconv.Itoa(i)+"]", h, "must be host:port")
		}
	}
}

// ChangedKeys lists the top-level keys (the yaml names of the exported
// fields) whose values differ between running and next, two
// configurations of one struct type, leaving out those in live (applied
// while running); also, when set, names more keys that differ (the
// contents of the files a key names).
func ChangedKeys[C any](running, next C, live map[string]bool, also func(key string) bool) []string {
	var keys []string
	a, b := reflect.ValueOf(running), reflect.ValueOf(next)
	for i := range a.NumField() {
		f := a.Type().Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || key == "" || key == "-" || live[key] {
			continue
		}
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) || also != nil && also(key) {
			keys = append(keys, key)
		}
	}
	return keys
}
