package checksum

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// MaxRulesetJSON bounds the `nft -j list ruleset` output the normaliser
// reads.
const MaxRulesetJSON = 64 << 20

// runtimeKeys are the keys of run-time state, dropped wherever they appear:
// handles (the kernel numbers objects in creation order), counters'
// packets and bytes, a quota's and a `last` statement's use, and set
// elements' expiry.
var runtimeKeys = []string{"handle", "packets", "bytes", "used", "expires"}

// object is one entry of the ruleset listing: its kind ("table", "chain",
// "rule", "set", "map", "counter", ...) and its body.
type object struct {
	kind string
	body map[string]any
}

func (o object) str(key string) string { s, _ := o.body[key].(string); return s }

// NormaliseRuleset turns `nft -j list ruleset` output into the text the
// ruleset checksum is computed over, one JSON object a line:
//
//   - run-time state is dropped (see runtimeKeys), and the elements of sets
//     that time them out (flag timeout or dynamic: filled by the packets),
//     and per-element timeouts;
//   - the elements of the other sets are sorted;
//   - tables come sorted by family and name, and in each table the table,
//     then its sets, maps and named objects sorted by kind and name, then
//     its chains sorted by name, each followed by its rules in their order
//     (the order that decides);
//   - excluded tables and chains, and rules matching an excluded interface,
//     are left out.
func NormaliseRuleset(data []byte, ex Exclude) ([]byte, error) {
	if len(data) > MaxRulesetJSON {
		return nil, fmt.Errorf("ruleset listing of %d bytes (limit %d)", len(data), MaxRulesetJSON)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("ruleset listing: %w", err)
	}
	type tableKey struct{ family, name string }
	tables := map[tableKey][]object{}
	for i, entry := range doc.Nftables {
		if len(entry) != 1 {
			return nil, fmt.Errorf("ruleset listing: entry %d has %d kinds, want 1", i, len(entry))
		}
		for kind, raw := range entry {
			if kind == "metainfo" {
				continue
			}
			var body map[string]any
			if err := json.Unmarshal(raw, &body); err != nil {
				return nil, fmt.Errorf("ruleset listing: %s %d: %w", kind, i, err)
			}
			o := object{kind: kind, body: body}
			k := tableKey{o.str("family"), o.str("table")}
			if kind == "table" {
				k.name = o.str("name")
			}
			if k.family == "" || k.name == "" {
				return nil, fmt.Errorf("ruleset listing: %s %d names no family or table", kind, i)
			}
			if ex.ExcludesTable(k.family, k.name) || excludedObject(o, ex) {
				continue
			}
			tables[k] = append(tables[k], normaliseObject(o))
		}
	}
	keys := make([]tableKey, 0, len(tables))
	for k := range tables {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b tableKey) int {
		return cmp.Or(cmp.Compare(a.family, b.family), cmp.Compare(a.name, b.name))
	})
	var out bytes.Buffer
	for _, k := range keys {
		if err := writeTable(&out, tables[k]); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// excludedObject reports whether o is an excluded chain, a rule of one, or
// a rule matching an excluded interface.
func excludedObject(o object, ex Exclude) bool {
	switch o.kind {
	case "chain":
		return ex.chain(o.str("family"), o.str("table"), o.str("name"))
	case "rule":
		return ex.chain(o.str("family"), o.str("table"), o.str("chain")) || matchesInterface(o.body["expr"], ex.Interfaces)
	}
	return false
}

// matchesInterface reports whether a rule's expressions match one of the
// interface names (a meta iifname/oifname/iif/oif match).
func matchesInterface(expr any, ifaces []string) bool {
	list, _ := expr.([]any)
	for _, e := range list {
		m, _ := e.(map[string]any)
		match, _ := m["match"].(map[string]any)
		left, _ := match["left"].(map[string]any)
		meta, _ := left["meta"].(map[string]any)
		key, _ := meta["key"].(string)
		right, _ := match["right"].(string)
		switch key {
		case "iifname", "oifname", "iif", "oif":
			if slices.Contains(ifaces, right) {
				return true
			}
		}
	}
	return false
}

// normaliseObject drops o's run-time state and sorts its set elements.
func normaliseObject(o object) object {
	dropRuntime(o.body)
	if o.kind == "set" || o.kind == "map" {
		elems, _ := o.body["elem"].([]any)
		flags, _ := o.body["flags"].([]any)
		switch {
		case slices.Contains(flags, any("timeout")) || slices.Contains(flags, any("dynamic")):
			delete(o.body, "elem")
		case elems != nil:
			for _, e := range elems {
				if m, ok := e.(map[string]any); ok {
					if inner, ok := m["elem"].(map[string]any); ok {
						delete(inner, "timeout")
					}
				}
			}
			slices.SortFunc(elems, func(a, b any) int { return bytes.Compare(canonical(a), canonical(b)) })
		}
	}
	return o
}

func dropRuntime(v any) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range runtimeKeys {
			delete(v, k)
		}
		for _, x := range v {
			dropRuntime(x)
		}
	case []any:
		for _, x := range v {
			dropRuntime(x)
		}
	}
}

// canonical is v's JSON with sorted keys (encoding/json sorts map keys).
func canonical(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return nil // only from values json.Unmarshal did not make
	}
	return b
}

// kindRank orders a table's objects: the table, its named objects, then its
// chains (rules follow their chain).
func kindRank(kind string) int {
	switch kind {
	case "table":
		return 0
	case "chain":
		return 2
	case "rule":
		return 3
	}
	return 1
}

var errNoTable = errors.New("objects of a table missing from the listing")

func writeTable(out *bytes.Buffer, objs []object) error {
	var head, chains []object
	rules := map[string][]object{}
	for _, o := range objs {
		switch o.kind {
		case "rule":
			rules[o.str("chain")] = append(rules[o.str("chain")], o)
		case "chain":
			chains = append(chains, o)
		default:
			head = append(head, o)
		}
	}
	slices.SortStableFunc(head, func(a, b object) int {
		return cmp.Or(cmp.Compare(kindRank(a.kind), kindRank(b.kind)), cmp.Compare(a.kind, b.kind), cmp.Compare(a.str("name"), b.str("name")))
	})
	if len(head) == 0 || head[0].kind != "table" {
		return fmt.Errorf("ruleset listing: %w", errNoTable)
	}
	slices.SortStableFunc(chains, func(a, b object) int { return cmp.Compare(a.str("name"), b.str("name")) })
	write := func(o object) {
		out.Write(canonical(map[string]any{o.kind: o.body}))
		out.WriteByte('\n')
	}
	for _, o := range head {
		write(o)
	}
	for _, c := range chains {
		write(c)
		for _, r := range rules[c.str("name")] {
			write(r)
		}
		delete(rules, c.str("name"))
	}
	// Rules of a chain the listing does not hold (not from nft itself).
	for _, name := range slices.Sorted(maps.Keys(rules)) {
		for _, r := range rules[name] {
			write(r)
		}
	}
	return nil
}
