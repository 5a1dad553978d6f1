package config

import (
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The configuration is decoded by walking the YAML node tree against the yaml
// tags of Config rather than with yaml's own struct decoding (Decoder with
// KnownFields): that decoder reports problems with a line number but not the
// key path, stops a field at its first type error, truncates floats into
// integers, and cannot tell an absent key from one written as 0, which the
// defaults need. The walk refuses unknown and repeated keys just as strictly.

// maxNodes bounds the nodes visited, aliases included, so that a small file
// full of aliases cannot make decoding expensive.
const maxNodes = 100_000

type decoder struct {
	set    map[string]int  // key path -> line, for every key given a value in the file
	failed map[string]bool // key paths whose value was refused
	errs   []*Error
	budget int
}

func newDecoder() *decoder {
	return &decoder{
		set:    make(map[string]int),
		failed: make(map[string]bool),
		budget: maxNodes,
	}
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	addrType     = reflect.TypeFor[netip.Addr]()
	prefixType   = reflect.TypeFor[netip.Prefix]()
)

// fail records a value that could not be decoded; it is left at its default.
func (d *decoder) fail(path string, line int, format string, args ...any) {
	d.problem(path, line, format, args...)
	d.failed[path] = true
}

// problem records an error about a key itself (unknown, repeated) rather
// than its value, which leaves the value's own checks in force.
func (d *decoder) problem(path string, line int, format string, args ...any) {
	d.errs = append(d.errs, &Error{Key: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// isSet reports whether the file gave path a (valid) value.
func (d *decoder) isSet(path string) bool {
	_, ok := d.set[path]
	return ok
}

// lineOf returns the line of path, or of its nearest ancestor written in the
// file (a missing key is reported at its parent), or 0.
func (d *decoder) lineOf(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if line, ok := d.set[p]; ok {
			return line
		}
	}
	return 0
}

// failedUnder reports whether path or one of its ancestors failed to decode.
func (d *decoder) failedUnder(path string) bool {
	for p := path; ; p = parentPath(p) {
		if d.failed[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

// parentPath strips the last element of a key path: "a.b[0].c" -> "a.b[0]"
// -> "a.b" -> "a" -> "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

func childPath(parent, key string) string {
	if !plainKey(key) {
		key = strconv.Quote(key)
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func plainKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for _, r := range k {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func (d *decoder) decodeRoot(root *yaml.Node, c *Config) {
	if root == nil || isNull(root) {
		return // an empty file: validation reports what is missing
	}
	d.value(root, "", 0, reflect.ValueOf(c).Elem())
}

// follow resolves aliases and charges the node to the budget. It returns nil
// when the node must not be decoded.
func (d *decoder) follow(n *yaml.Node, path string, line int) *yaml.Node {
	d.budget--
	if d.budget < 0 {
		if d.budget == -1 {
			d.fail("", line, "document too large: more than %d values (aliases included)", maxNodes)
		}
		return nil
	}
	// yaml's parser links an alias to its anchor, which is never itself an
	// alias; the bound is only a guard.
	for i := 0; n.Kind == yaml.AliasNode; i++ {
		if n.Alias == nil || i == 8 {
			d.fail(path, line, "unresolvable alias %q", n.Value)
			return nil
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// value decodes n into v. line is where the key or list entry is written.
// A null value leaves v alone, as if the key were absent.
func (d *decoder) value(n *yaml.Node, path string, line int, v reflect.Value) {
	n = d.follow(n, path, line)
	if n == nil || isNull(n) {
		return
	}
	switch v.Type() {
	case durationType:
		d.duration(n, path, line, v)
		return
	case addrType:
		d.addr(n, path, line, v)
		return
	case prefixType:
		d.prefix(n, path, line, v)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		elem := reflect.New(v.Type().Elem())
		d.value(n, path, line, elem.Elem())
		if d.isSet(path) {
			v.Set(elem)
		}
	case reflect.Struct:
		d.mapping(n, path, line, v)
	case reflect.Slice:
		d.sequence(n, path, line, v)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, line, "must be a string, got %s", show(n))
			return
		}
		v.SetString(n.Value)
		d.set[path] = line
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			hint := ""
			if v := strings.ToLower(n.Value); n.Kind == yaml.ScalarNode && (v == "true" || v == "false") {
				hint = " (write it without quotes)"
			}
			d.fail(path, line, "must be true or false, got %s%s", show(n), hint)
			return
		}
		v.SetBool(b)
		d.set[path] = line
	case reflect.Int, reflect.Uint16, reflect.Uint32:
		d.integer(n, path, line, v)
	default:
		// Only reachable if types.go gains a field of a new kind.
		d.fail(path, line, "cannot decode into %s", v.Type())
	}
}

func (d *decoder) mapping(n *yaml.Node, path string, line int, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		what := "must be a mapping of keys"
		if path == "" {
			what = "the top level must be a mapping of keys"
		}
		d.fail(path, line, "%s, got %s", what, show(n))
		return
	}
	d.set[path] = line
	fields := fieldsOf(v.Type())
	first := make(map[string]int) // key -> line of its first occurrence
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			d.problem(path, k.Line, "keys must be plain names, got %s", show(k))
			continue
		}
		kp := childPath(path, k.Value)
		if k.ShortTag() == "!!merge" {
			d.problem(kp, k.Line, "merge keys (<<) are not supported; write the keys out")
			continue
		}
		if at, dup := first[k.Value]; dup {
			d.problem(kp, k.Line, "key repeated (first at line %d)", at)
			continue
		}
		first[k.Value] = k.Line
		index, ok := fields[k.Value]
		if !ok {
			d.problem(kp, k.Line, "unknown key%s", suggest(k.Value, fields))
			continue
		}
		d.value(val, kp, k.Line, v.Field(index))
	}
}

func (d *decoder) sequence(n *yaml.Node, path string, line int, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		hint := ""
		if n.Kind == yaml.ScalarNode {
			hint = fmt.Sprintf(" (for one entry write [%s])", n.Value)
		}
		d.fail(path, line, "must be a list, got %s%s", show(n), hint)
		return
	}
	d.set[path] = line
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		ep := fmt.Sprintf("%s[%d]", path, i)
		if isNull(e) {
			d.fail(ep, e.Line, "empty list entry")
			continue
		}
		d.value(e, ep, e.Line, s.Index(i))
	}
	v.Set(s)
}

func (d *decoder) integer(n *yaml.Node, path string, line int, v reflect.Value) {
	var x any
	if n.Kind != yaml.ScalarNode || n.Decode(&x) != nil {
		d.fail(path, line, "must be an integer, got %s", show(n))
		return
	}
	if _, quoted := x.(string); quoted {
		if _, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
			d.fail(path, line, "must be an integer, got %s (write it without quotes)", show(n))
			return
		}
	}
	var i int64
	switch x := x.(type) {
	case int:
		i = int64(x)
	case int64:
		i = x
	case uint64:
		d.fail(path, line, "%s is out of range", n.Value)
		return
	default:
		d.fail(path, line, "must be an integer, got %s", show(n))
		return
	}
	var lo, hi int64 = math.MinInt, math.MaxInt
	switch v.Kind() {
	case reflect.Uint16:
		lo, hi = 0, math.MaxUint16
	case reflect.Uint32:
		lo, hi = 0, math.MaxUint32
	}
	if i < lo || i > hi {
		d.fail(path, line, "must be between %d and %d, got %s", lo, hi, n.Value)
		return
	}
	if v.Kind() == reflect.Int {
		v.SetInt(i)
	} else {
		v.SetUint(uint64(i))
	}
	d.set[path] = line
}

func (d *decoder) duration(n *yaml.Node, path string, line int, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, line, "must be a duration such as \"200ms\" or \"300s\", got %s", show(n))
		return
	}
	switch tag := n.ShortTag(); {
	case tag == "!!int" && n.Value == "0":
		// Zero needs no unit.
	case tag == "!!int" || tag == "!!float":
		d.fail(path, line, "must be a duration with a unit, e.g. \"%ss\" or \"%sms\"; got the bare number %s", n.Value, n.Value, n.Value)
		return
	case tag != "!!str":
		d.fail(path, line, "must be a duration such as \"200ms\" or \"300s\", got %s", show(n))
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		d.fail(path, line, "%s is not a duration (want e.g. \"200ms\", \"300s\", \"1h30m\")", show(n))
		return
	}
	v.SetInt(int64(dur))
	d.set[path] = line
}

func (d *decoder) addr(n *yaml.Node, path string, line int, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, line, "must be an IP address, got %s", show(n))
		return
	}
	a, err := netip.ParseAddr(n.Value)
	if err != nil {
		hint := ""
		if _, perr := netip.ParsePrefix(n.Value); perr == nil {
			hint = " (write the address without a prefix length)"
		}
		d.fail(path, line, "%s is not an IP address%s", show(n), hint)
		return
	}
	v.Set(reflect.ValueOf(a))
	d.set[path] = line
}

func (d *decoder) prefix(n *yaml.Node, path string, line int, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, line, "must be an address with a prefix length, got %s", show(n))
		return
	}
	p, err := netip.ParsePrefix(n.Value)
	if err != nil {
		if a, aerr := netip.ParseAddr(n.Value); aerr == nil {
			bits := 24
			if !a.Is4() {
				bits = 64
			}
			d.fail(path, line, "%s is not a prefix (want e.g. %s/%d)", show(n), a.WithZone(""), bits)
		} else {
			d.fail(path, line, "%s is not a prefix (want e.g. 192.0.2.1/24 or 2001:db8::1/64)", show(n))
		}
		return
	}
	v.Set(reflect.ValueOf(p))
	d.set[path] = line
}

// show describes a node for an error message: quoted if it was written as a
// string, bare if a number or boolean, by kind if not a scalar.
func show(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
	default:
		return "an alias"
	}
	s := n.Value
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	switch n.ShortTag() {
	case "!!int", "!!float", "!!bool":
		if plainKey(s) || strings.Trim(s, "0123456789.+-_xXoObBeE") == "" {
			return s
		}
	case "!!null":
		return "null"
	}
	return strconv.Quote(s)
}

// fieldsOf maps the yaml keys of a struct to field indexes.
func fieldsOf(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

// suggest names the known key closest to an unknown one, for typos and for
// FortiOS habits ("lost-threshold").
func suggest(key string, fields map[string]int) string {
	norm := strings.ToLower(strings.ReplaceAll(key, "-", "_"))
	best, bestDist := "", 3
	for name := range fields {
		dist := editDistance(norm, name)
		if dist < bestDist || dist == bestDist && name < best {
			best, bestDist = name, dist
		}
	}
	if best == "" || bestDist > len(best)/3 && bestDist > 0 {
		return ""
	}
	return fmt.Sprintf(", did you mean %q?", best)
}

// editDistance is the Levenshtein distance, computed only for short strings
// (keys longer than 64 bytes are never close to a real one).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
