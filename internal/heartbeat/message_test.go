package heartbeat

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hagate/hagate/internal/checksum"
	"github.com/hagate/hagate/internal/cluster"
)

func TestRoundTrip(t *testing.T) {
	full := cluster.Heartbeat{Role: cluster.Primary, Priority: 200, Override: true, MonitoredUp: 2, MonitoredTotal: 2, PingUp: 1,
		Uptime: 90 * time.Minute, FailoverSet: true, Elected: "gw1", Leaving: true, SyncPending: true, HelloLeft: 3 * time.Second, Count: 1 << 40}
	cases := []Message{
		{Version: version},
		{HB: full, Echo: []uint64{1, 1<<64 - 1}, Version: version, Build: "0.2.0-3-gabcdef"},
		{HB: cluster.Heartbeat{Role: cluster.Hello, Priority: 255, Elected: "a-32-character-long-node-id-abcd"}, Echo: []uint64{4, 3, 2, 1}, Version: version},
		{HB: full, Echo: []uint64{9}, Version: versionEcho},
		{HB: full, Version: versionNoEcho},
		{HB: cluster.Heartbeat{Role: cluster.Subordinate, ConfigPending: true, Checksums: checksum.Sums{checksum.Ruleset: 1<<64 - 1, checksum.Config: 7, 15: 1}},
			Version: version, Build: "0.2.0"},
	}
	for _, m := range cases {
		b := Encode(nil, m)
		if len(b) > MaxLen {
			t.Fatalf("%d bytes, MaxLen %d", len(b), MaxLen)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		want := m
		want.HB.Build = m.Build // the node reads the build from the heartbeat
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	}
}

// Encode keeps MaxEcho boot ids and writes none in the version 1 format.
func TestEncodeBoundsEcho(t *testing.T) {
	got, err := Decode(Encode(nil, Message{Echo: []uint64{1, 2, 3, 4, 5, 6}}))
	if err != nil || !slices.Equal(got.Echo, []uint64{1, 2, 3, 4}) {
		t.Fatalf("echo %v, %v", got.Echo, err)
	}
	got, err = Decode(Encode(nil, Message{Echo: []uint64{1}, Version: versionNoEcho}))
	if err != nil || len(got.Echo) != 0 || got.Version != versionNoEcho {
		t.Fatalf("version 1: %+v, %v", got, err)
	}
	if m := (Message{Echo: []uint64{7, 9}}); !m.Echoes(9) || m.Echoes(8) {
		t.Fatal("Echoes")
	}
}

// A heartbeat from a member from before the echo (version 1, written out
// here byte by byte) still decodes.
func TestDecodeVersion1(t *testing.T) {
	v1 := []byte{1, 2, 0, 200, 2, 2, 0, 3, 0, 0, 0, 0, 0, 0x36, 0xee, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 'g', 'w', '1'}
	got, err := Decode(v1)
	want := Message{HB: cluster.Heartbeat{Role: cluster.Primary, Priority: 200, MonitoredUp: 2, MonitoredTotal: 2,
		Uptime: time.Hour, Count: 7, Elected: "gw1"}, Version: versionNoEcho}
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("version 1 (-want +got):\n%s", diff)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := Encode(nil, Message{HB: cluster.Heartbeat{Role: cluster.Primary, MonitoredUp: 1, MonitoredTotal: 2, Elected: "gw1"}, Echo: []uint64{5}})
	v1 := Encode(nil, Message{HB: cluster.Heartbeat{Elected: "gw1"}, Version: versionNoEcho})
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	v2 := Encode(nil, Message{HB: cluster.Heartbeat{Elected: "gw1"}, Echo: []uint64{5}, Version: versionEcho})
	cases := map[string][]byte{
		"empty":         nil,
		"short":         good[:10],
		"role":          mutate(func(b []byte) []byte { b[1] = 7; return b }),
		"flags":         mutate(func(b []byte) []byte { b[2] = 0x80; return b }),
		"flag bit 4":    mutate(func(b []byte) []byte { b[2] = 0x10; return b }),
		"up over total": mutate(func(b []byte) []byte { b[4] = 3; return b }),
		"long id":       mutate(func(b []byte) []byte { b[7] = 200; return b }),
		"trailing":      append(append([]byte(nil), good...), 0),
		"truncated":     good[:len(good)-1],
		"no echo count": good[:fixedLen+3],
		"echo over max": mutate(func(b []byte) []byte { b[fixedLen+3] = MaxEcho + 1; return b }),
		"echo count 2":  mutate(func(b []byte) []byte { b[fixedLen+3] = 2; return b }),
		"echo count 0":  mutate(func(b []byte) []byte { b[fixedLen+3] = 0; return b }),
		"uptime":        mutate(func(b []byte) []byte { b[8] = 0xff; return b }),
		"v1 trailing":   append(append([]byte(nil), v1...), 0),
		"v1 with echo":  append(append([]byte(nil), v1...), 1, 0, 0, 0, 0, 0, 0, 0, 5),
		"v2 trailing":   append(append([]byte(nil), v2...), fieldBuild, 1, 'x'),
		"field cut":     append(append([]byte(nil), good...), fieldBuild, 5, 'x'),
		"build binary":  append(append([]byte(nil), good...), fieldBuild, 2, 'x', 0),
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v", name, err)
		}
	}
	// A version this build cannot read is not malformed: it is a member
	// of a later release, reported as unreadable.
	for _, v := range []byte{0, version + 1, 9} {
		b := mutate(func(b []byte) []byte { b[0] = v; return b })
		if _, err := Decode(b); !errors.Is(err, ErrVersion) {
			t.Errorf("version %d: err %v", v, err)
		}
	}
}

// Fields of later releases are skipped; the known ones read.
func TestDecodeSkipsUnknownFields(t *testing.T) {
	b := Encode(nil, Message{HB: cluster.Heartbeat{Elected: "gw1"}, Echo: []uint64{5}, Build: "0.2.0"})
	b = append(b, 200, 3, 1, 2, 3, 201, 0)
	m, err := Decode(b)
	if err != nil || m.Build != "0.2.0" || m.HB.Build != "0.2.0" || m.HB.Elected != "gw1" {
		t.Fatalf("%+v, %v", m, err)
	}
}

// What release 0.1.0 reads: a version 2 payload has no fields, and is
// byte for byte what 0.1.0 wrote (written out here).
func TestEncodeVersion2AsRelease010(t *testing.T) {
	got := Encode(nil, Message{HB: cluster.Heartbeat{Role: cluster.Primary, Priority: 200, MonitoredUp: 2, MonitoredTotal: 2,
		Uptime: time.Hour, Count: 7, Elected: "gw1"}, Echo: []uint64{5}, Version: versionEcho, Build: "ignored in v2"})
	want := []byte{2, 2, 0, 200, 2, 2, 0, 3, 0, 0, 0, 0, 0, 0x36, 0xee, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 'g', 'w', '1',
		1, 0, 0, 0, 0, 0, 0, 0, 5}
	if string(got) != string(want) {
		t.Fatalf("version 2:\n%x\nwant\n%x", got, want)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(nil, Message{HB: cluster.Heartbeat{Role: cluster.Primary, Priority: 200, MonitoredUp: 2, MonitoredTotal: 2, Elected: "gw1", Count: 9},
		Echo: []uint64{1795466378453636955}}))
	f.Add(Encode(nil, Message{HB: cluster.Heartbeat{Role: cluster.Subordinate, Elected: "gw1"}, Version: versionNoEcho}))
	f.Add(Encode(nil, Message{HB: cluster.Heartbeat{Role: cluster.Subordinate, ConfigPending: true, Checksums: checksum.Sums{checksum.Ruleset: 5, checksum.Routes: 6}}}))
	f.Add([]byte{1})
	f.Add([]byte{2})
	f.Add(Encode(nil, Message{HB: cluster.Heartbeat{Role: cluster.Primary, Elected: "gw1\x00; rm"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		if m.HB.Elected != "" && !validNodeID(m.HB.Elected) {
			t.Fatalf("invalid node id %q decoded", m.HB.Elected)
		}
		// Whatever decodes re-encodes to the same bytes, but for the
		// fields a later release may add, which are skipped: then the
		// re-encoded message reads the same.
		again := Encode(nil, m)
		if m.Version < version && string(again) != string(b) {
			t.Fatalf("re-encode differs:\n%x\n%x", b, again)
		}
		if m2, err := Decode(again); err != nil || !cmp.Equal(m, m2, cmpopts.EquateEmpty()) {
			t.Fatalf("re-encoded %+v reads %+v, %v", m, m2, err)
		}
	})
}

func BenchmarkEncodeDecode(b *testing.B) {
	m := Message{HB: cluster.Heartbeat{Role: cluster.Primary, Priority: 200, MonitoredUp: 2, MonitoredTotal: 2, Elected: "gw1"},
		Echo: []uint64{1, 2, 3}}
	buf := make([]byte, 0, MaxLen)
	for b.Loop() {
		if _, err := Decode(Encode(buf[:0], m)); err != nil {
			b.Fatal(err)
		}
	}
}

// A version 2 reader (release 0.1.0) is sent no fields; a heartbeat with a
// bad checksums field is malformed, one with a later part is read.
func TestConfigFields(t *testing.T) {
	hb := cluster.Heartbeat{ConfigPending: true, Checksums: checksum.Sums{checksum.Ruleset: 1}}
	old := Encode(nil, Message{HB: hb, Version: versionEcho})
	if m, err := Decode(old); err != nil || m.HB.ConfigPending || m.HB.Checksums != (checksum.Sums{}) {
		t.Fatalf("version 2 carries the fields: %+v, %v", m.HB, err)
	}
	b := Encode(nil, Message{Version: version})
	for _, bad := range [][]byte{
		{fieldChecksums, 8, 1, 0, 0, 0, 0, 0, 0, 0},
		{fieldChecksums, 18, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 2},
		{fieldChecksums, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1},
		{fieldConfig, 0},
	} {
		if _, err := Decode(append(slices.Clone(b), bad...)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%x: got %v, want malformed", bad, err)
		}
	}
	m, err := Decode(append(slices.Clone(b), fieldConfig, 2, 0xff, 0xff, fieldChecksums, 9, 200, 0, 0, 0, 0, 0, 0, 0, 1))
	if err != nil || !m.HB.ConfigPending || m.HB.Checksums != (checksum.Sums{}) {
		t.Fatalf("later configuration state bits: %+v, %v", m.HB, err)
	}
}
