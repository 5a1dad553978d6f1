package netlab

import (
	"strconv"
	"strings"
	"testing"
)

func TestLetters(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "a"}, {1, "b"}, {25, "z"}, {26, "ba"}, {27, "bb"}, {26*26 + 3, "bad"},
	}
	for _, tt := range tests {
		if got := letters(tt.n); got != tt.want {
			t.Errorf("letters(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
	seen := map[string]bool{}
	for n := range uint64(2000) {
		s := letters(n)
		if seen[s] {
			t.Fatalf("letters(%d) = %q repeats", n, s)
		}
		seen[s] = true
	}
}

func TestParseName(t *testing.T) {
	tests := []struct {
		prefix, name string
		pid          int
		node         string
		ok           bool
	}{
		{"hg", "hg4711a-gw1", 4711, "gw1", true},
		{"hg", "hg4711ba-sw", 4711, "sw", true},
		{"hg", "hg1z-client", 1, "client", true},
		{"hg", "hg99a-server", 99, "server", true},
		{"hgt", "hgt12a-gw4", 12, "gw4", true},
		{"hg", "hgt12a-gw4", 0, "", false},  // another prefix
		{"hg", "hg4711-gw1", 0, "", false},  // no sequence letters
		{"hg", "hga-gw1", 0, "", false},     // no pid
		{"hg", "hg0a-gw1", 0, "", false},    // pid with a leading zero
		{"hg", "hg4711a-gw0", 0, "", false}, // not a node the lab makes
		{"hg", "hg4711a-gw10", 0, "", false},
		{"hg", "hg4711a-router", 0, "", false},
		{"hg", "hg4711a", 0, "", false},
		{"hg", "hg4711a-", 0, "", false},
		{"hg", "hg4711A-gw1", 0, "", false},
		{"hg", "hg1234567890a-gw1", 0, "", false}, // pid too long
		{"hg", "other", 0, "", false},
		{"", "4711a-gw1", 0, "", false}, // invalid prefix
		{"HG", "HG4711a-gw1", 0, "", false},
	}
	for _, tt := range tests {
		pid, node, ok := parseName(tt.prefix, tt.name)
		if pid != tt.pid || node != tt.node || ok != tt.ok {
			t.Errorf("parseName(%q, %q) = %d, %q, %v; want %d, %q, %v",
				tt.prefix, tt.name, pid, node, ok, tt.pid, tt.node, tt.ok)
		}
	}
}

// TestNamesRoundTrip checks that every namespace a lab makes is one
// CleanupStale recognises, with the right owner.
func TestNamesRoundTrip(t *testing.T) {
	l := &Lab{id: newID(DefaultPrefix)}
	for k := 1; k <= MaxGateways; k++ {
		l.gws = append(l.gws, Gateway(k))
	}
	for _, node := range l.Nodes() {
		name := l.NS(node)
		pid, got, ok := parseName(DefaultPrefix, name)
		if !ok || pid <= 0 || got != node {
			t.Errorf("parseName(%q) = %d, %q, %v; want our pid, %q", name, pid, got, ok, node)
		}
		if l.NS(name) != name {
			t.Errorf("NS(%q) = %q, want it unchanged", name, l.NS(name))
		}
	}
	if a, b := newID("hg"), newID("hg"); a == b {
		t.Errorf("two labs of one process share id %q", a)
	}
}

func TestValidPrefix(t *testing.T) {
	for p, want := range map[string]bool{
		"hg": true, "a": true, "abcdefgh": true,
		"": false, "abcdefghi": false, "h1": false, "h-": false, "Hg": false,
	} {
		if got := validPrefix(p); got != want {
			t.Errorf("validPrefix(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil || o.Prefix != DefaultPrefix || o.Gateways != DefaultGateways {
		t.Errorf("zero Options = %+v, %v; want prefix %q, %d gateways", o, err, DefaultPrefix, DefaultGateways)
	}
	for _, bad := range []Options{{Gateways: 1}, {Gateways: MaxGateways + 1}, {Prefix: "x9"}} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("Options %+v accepted", bad)
		}
	}
}

// FuzzParseName checks that parseName never panics and that whatever it
// accepts is exactly what a lab with that prefix, pid and node would name.
func FuzzParseName(f *testing.F) {
	f.Add("hg", "hg4711a-gw1")
	f.Add("hg", "hg4711a-")
	f.Add("hgt", "hgt1zz-client")
	f.Fuzz(func(t *testing.T, prefix, name string) {
		pid, node, ok := parseName(prefix, name)
		if !ok {
			return
		}
		if pid <= 0 || !validNode(node) || !validPrefix(prefix) {
			t.Fatalf("parseName(%q, %q) accepted pid %d node %q", prefix, name, pid, node)
		}
		seq := strings.TrimSuffix(strings.TrimPrefix(name, prefix+strconv.Itoa(pid)), "-"+node)
		if seq == "" || strings.Trim(seq, "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Fatalf("parseName(%q, %q): sequence %q is not letters", prefix, name, seq)
		}
		if prefix+strconv.Itoa(pid)+seq+"-"+node != name {
			t.Fatalf("parseName(%q, %q) = %d, %q: does not rebuild the name", prefix, name, pid, node)
		}
	})
}
