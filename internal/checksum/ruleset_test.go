package checksum

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

func normalised(t *testing.T, file string, ex Exclude) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	text, err := NormaliseRuleset(data, ex)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return text
}

// a.json and b.json are the same ruleset loaded twice into a kernel: other
// handles, other counter values, a dynamic set filled on one only. c.json
// has one rule changed (accept to drop).
func TestRulesetSameDespiteRuntimeState(t *testing.T) {
	a, b := normalised(t, "a.json", Exclude{}), normalised(t, "b.json", Exclude{})
	if !bytes.Equal(a, b) {
		t.Fatalf("same ruleset, different texts:\n%s\n---\n%s", a, b)
	}
	if Of(a) != Of(b) {
		t.Fatal("same text, different checksums")
	}
	for _, word := range []string{`"handle"`, `"packets"`, `"expires"`, "192.0.2.77"} {
		if bytes.Contains(a, []byte(word)) {
			t.Errorf("normalised text keeps run-time state %s:\n%s", word, a)
		}
	}
}

func TestRulesetChangedRule(t *testing.T) {
	a, c := normalised(t, "a.json", Exclude{}), normalised(t, "c.json", Exclude{})
	if Of(a) == Of(c) {
		t.Fatalf("a changed rule kept the checksum:\n%s", c)
	}
}

// The elements of a set in another order (as another kernel may list a
// hash set) give the same text.
func TestRulesetElementOrder(t *testing.T) {
	data, err := os.ReadFile("testdata/a.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string][]map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	reversed := 0
	for _, o := range doc["nftables"] {
		if set, ok := o["set"].(map[string]any); ok {
			if elems, ok := set["elem"].([]any); ok && len(elems) > 1 {
				slices.Reverse(elems)
				reversed++
			}
		}
	}
	if reversed == 0 {
		t.Fatal("fixture has no set with elements to reorder")
	}
	other, _ := json.Marshal(doc)
	text, err := NormaliseRuleset(other, Exclude{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(text, normalised(t, "a.json", Exclude{})) {
		t.Fatal("element order changed the text")
	}
}

// Excluded tables, chains and interfaces are left out: a member-specific
// difference there keeps the checksum, and without the exclusion it
// changes it.
func TestRulesetExclude(t *testing.T) {
	all := string(normalised(t, "a.json", Exclude{}))
	for _, tc := range []struct {
		ex   Exclude
		gone string
	}{
		{Exclude{Tables: []string{"local"}}, `"table":{"family":"ip","name":"local"}`},
		{Exclude{Tables: []string{"ip nat"}}, `masquerade`},
		{Exclude{Chains: []string{"nat post"}}, `masquerade`},
		{Exclude{Chains: []string{"ip nat post"}}, `masquerade`},
		{Exclude{Interfaces: []string{"mgmt0"}}, `"mgmt0"`},
	} {
		if !strings.Contains(all, tc.gone) {
			t.Fatalf("fixture lacks %s", tc.gone)
		}
		if text := string(normalised(t, "a.json", tc.ex)); strings.Contains(text, tc.gone) {
			t.Errorf("%+v: %s still there:\n%s", tc.ex, tc.gone, text)
		}
	}
	// A family that does not match excludes nothing.
	if text := string(normalised(t, "a.json", Exclude{Tables: []string{"inet nat"}})); text != all {
		t.Error("table exclusion matched another family")
	}
}

func TestRulesetBadInput(t *testing.T) {
	for _, in := range []string{``, `[]`, `{"nftables":[{"rule":{"family":"ip"}}]}`, `{"nftables":[{"a":1,"b":2}]}`,
		`{"nftables":[{"rule":{"family":"ip","table":"t","chain":"c"}}]}`, `{"nftables":[{"table":5}]}`} {
		if _, err := NormaliseRuleset([]byte(in), Exclude{}); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func FuzzNormaliseRuleset(f *testing.F) {
	for _, file := range []string{"a.json", "b.json", "c.json"} {
		data, err := os.ReadFile("testdata/" + file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"nftables":[{"metainfo":{}}]}`))
	f.Add([]byte(`{"nftables":[{"table":{"family":"ip","name":"t"}},{"set":{"family":"ip","table":"t","name":"s","elem":[3,[1],{"elem":{"timeout":1}},null]}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		text, err := NormaliseRuleset(data, Exclude{Tables: []string{"x"}, Chains: []string{"t c"}, Interfaces: []string{"eth0"}})
		if err != nil {
			return
		}
		// Normalising is idempotent on what it accepts: its own output,
		// wrapped again, gives the same text.
		var objs []json.RawMessage
		for line := range bytes.Lines(text) {
			objs = append(objs, json.RawMessage(bytes.TrimSpace(line)))
		}
		again, _ := json.Marshal(map[string]any{"nftables": objs})
		text2, err := NormaliseRuleset(again, Exclude{Tables: []string{"x"}, Chains: []string{"t c"}, Interfaces: []string{"eth0"}})
		if err != nil || !bytes.Equal(text, text2) {
			t.Fatalf("not idempotent: %v\n%s\n---\n%s", err, text, text2)
		}
	})
}
