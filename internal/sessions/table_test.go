package sessions

import (
	"maps"
	"net/netip"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"

	"pgregory.net/rapid"

	"github.com/hagate/hagate/internal/sessions/session"
)

func synthSession(i int) session.Session {
	src := netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 250)})
	dst := netip.AddrFrom4([4]byte{198, 51, 100, byte(i / 60000 % 250)})
	s := session.Session{Key: session.Key{Family: session.FamilyIPv4, Proto: session.ProtoTCP,
		Orig: session.Tuple{Src: session.Addr16(src), Dst: session.Addr16(dst), SrcPort: uint16(1024 + i%60000), DstPort: 443}},
		Status: session.StatusConfirmed | session.StatusAssured | session.StatusSeenReply, Timeout: 432000,
		TCP: session.TCPInfo{State: session.TCPEstablished, WScaleOrig: 7, WScaleReply: 7, FlagsOrig: 1, FlagsReply: 1}}
	s.Reply = s.Orig.Invert(s.Proto)
	return s
}

// snatSession is synthSession source-NATed to 203.0.113.1, as the bench's
// sessions are.
func snatSession(i int) session.Session {
	s := synthSession(i)
	s.Status |= session.StatusSrcNAT
	s.Reply.Dst = session.Addr16(netip.MustParseAddr("203.0.113.1"))
	s.Reply.DstPort = uint16(20000 + i%40000)
	return s
}

func addr16(s string) [16]byte { return session.Addr16(netip.MustParseAddr(s)) }

func TestTableMax(t *testing.T) {
	tb := newTable(2)
	for i := range 3 {
		s := synthSession(i)
		if got, want := tb.put(&s, entry{}), i < 2; got != want {
			t.Fatalf("put %d: %v, want %v", i, got, want)
		}
	}
	s := synthSession(0)
	s.Mark = 5
	s.Labels[0] = 1
	if !tb.put(&s, entry{}) {
		t.Fatal("update of an existing entry refused when full")
	}
	got, _, ok := tb.get(s.Key)
	if !ok || got != s {
		t.Fatalf("get: %v %v", got, ok)
	}
}

// TestTableRoundTrip stores every form of session the compact encoding
// distinguishes and reads each back unchanged, alone and after the others.
func TestTableRoundTrip(t *testing.T) {
	helper, _ := session.MakeName("ftp")
	v6 := session.Session{Key: session.Key{Family: session.FamilyIPv6, Proto: session.ProtoUDP, Zone: 7,
		Orig: session.Tuple{Src: addr16("2001:db8:1::5"), Dst: addr16("2001:db8:2::9"), SrcPort: 5353, DstPort: 53}}, Timeout: 30}
	v6.Reply = v6.Orig.Invert(v6.Proto)
	icmp := session.Session{Key: session.Key{Family: session.FamilyIPv4, Proto: session.ProtoICMP,
		Orig: session.Tuple{Src: addr16("192.0.2.7"), Dst: addr16("203.0.113.100"), SrcPort: 77, DstPort: 8 << 8}}, Timeout: 30}
	icmp.Reply = icmp.Orig.Invert(icmp.Proto)
	icmpNAT := icmp
	icmpNAT.Orig.SrcPort = 78
	icmpNAT.Reply = icmpNAT.Orig.Invert(icmpNAT.Proto)
	icmpNAT.Reply.Dst, icmpNAT.Reply.SrcPort = addr16("203.0.113.1"), 9000 // id translated too: odd
	dnat := synthSession(3)
	dnat.Reply.Src, dnat.Reply.SrcPort = addr16("198.51.100.200"), 8443
	both := synthSession(4)
	both.Reply.Src, both.Reply.Dst = addr16("198.51.100.200"), addr16("203.0.113.1")
	v4reply6 := synthSession(5) // nonsense the kernel never sends, kept all the same
	v4reply6.Reply.Dst = addr16("2001:db8::1")
	unmapped := synthSession(6) // IPv4 family, addresses not IPv4-mapped
	unmapped.Orig.Src = addr16("2001:db8::6")
	unmapped.Reply = unmapped.Orig.Invert(unmapped.Proto)
	labelled := snatSession(7)
	labelled.Labels = [16]byte{3: 9, 15: 1}
	labelled.Helper = helper
	for _, tc := range []struct {
		name string
		s    session.Session
		e    entry
	}{
		{"plain", synthSession(1), entry{synced: true, mark2: 3, first: 10, expires: 99}},
		{"snat", snatSession(2), entry{mark2: 1 << 31, first: 4}},
		{"dnat", dnat, entry{synced: true}},
		{"both ends translated", both, entry{}},
		{"ipv4 with ipv6 reply", v4reply6, entry{}},
		{"ipv4 family unmapped", unmapped, entry{expires: 5}},
		{"ipv6", v6, entry{synced: true, mark2: 8}},
		{"icmp", icmp, entry{}},
		{"icmp nat", icmpNAT, entry{}},
		{"labels and helper", labelled, entry{synced: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable(0)
			check := func(when string) {
				t.Helper()
				got, e, ok := tb.get(tc.s.Key)
				if !ok || got != tc.s {
					t.Fatalf("%s: get = %v, %v; want %v", when, got, ok, tc.s)
				}
				if e.synced != tc.e.synced || e.mark2 != tc.e.mark2 || e.first != tc.e.first || e.expires != tc.e.expires {
					t.Fatalf("%s: metadata %+v, want %+v", when, e, tc.e)
				}
				if !sameState(&tc.s, &e, tb.labels[tc.s.Key]) {
					t.Fatalf("%s: sameState false for the stored session", when)
				}
			}
			tb.put(&tc.s, tc.e)
			check("alone")
			for i := range 50 {
				for _, s := range []session.Session{synthSession(100 + i), snatSession(200 + i), labelled, v6} {
					if s.Key != tc.s.Key {
						tb.put(&s, entry{})
					}
				}
			}
			check("among others")
			_, e, _ := tb.get(tc.s.Key)
			e.synced, e.expires = !e.synced, 1234
			tb.setMeta(tc.s.Key, e)
			tc.e.synced, tc.e.expires = e.synced, 1234
			check("after setMeta")
			n := 0
			for k, e := range tb.all() {
				if k == tc.s.Key {
					n++
					if got := tb.session(k, &e); got != tc.s {
						t.Fatalf("all: %v, want %v", got, tc.s)
					}
				}
			}
			if n != 1 {
				t.Fatalf("all yielded the session %d times", n)
			}
			tb.del(tc.s.Key)
			if _, _, ok := tb.get(tc.s.Key); ok || tb.has(tc.s.Key) {
				t.Fatal("still there after del")
			}
		})
	}
}

// TestTableModel runs random puts, metadata changes and deletes against a
// plain map of sessions and compares everything after each step.
func TestTableModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		tb := newTable(0)
		model := map[session.Key]session.Session{}
		addrs := []string{"192.0.2.1", "192.0.2.2", "203.0.113.1", "198.51.100.9", "2001:db8::1", "2001:db8::2"}
		tuple := func(label string) session.Tuple {
			return session.Tuple{Src: addr16(rapid.SampledFrom(addrs).Draw(rt, label+"src")), Dst: addr16(rapid.SampledFrom(addrs).Draw(rt, label+"dst")),
				SrcPort: rapid.Uint16Range(1, 3).Draw(rt, label+"sport"), DstPort: rapid.Uint16Range(1, 3).Draw(rt, label+"dport")}
		}
		key := func() session.Key {
			return session.Key{Family: rapid.SampledFrom([]uint8{session.FamilyIPv4, session.FamilyIPv6}).Draw(rt, "family"),
				Proto: rapid.SampledFrom([]uint8{session.ProtoTCP, session.ProtoICMP}).Draw(rt, "proto"), Zone: rapid.Uint16Range(0, 1).Draw(rt, "zone"),
				Orig: tuple("orig")}
		}
		for range rapid.IntRange(1, 60).Draw(rt, "steps") {
			k := key()
			switch rapid.IntRange(0, 2).Draw(rt, "op") {
			case 0:
				s := session.Session{Key: k, Status: rapid.Uint32().Draw(rt, "status"), Timeout: rapid.Uint32().Draw(rt, "timeout"),
					Mark: rapid.Uint32().Draw(rt, "mark"), TCP: session.TCPInfo{State: rapid.Uint8().Draw(rt, "state")}}
				switch rapid.IntRange(0, 3).Draw(rt, "reply") {
				case 0:
					s.Reply = k.Orig.Invert(k.Proto)
				case 1:
					s.Reply = k.Orig.Invert(k.Proto)
					s.Reply.Dst = addr16(rapid.SampledFrom(addrs).Draw(rt, "nat"))
				case 2:
					s.Reply = k.Orig.Invert(k.Proto)
					s.Reply.Src = addr16(rapid.SampledFrom(addrs).Draw(rt, "nat"))
				default:
					s.Reply = tuple("reply")
				}
				if rapid.Bool().Draw(rt, "labels") {
					s.Labels[rapid.IntRange(0, 15).Draw(rt, "label")] = 1
				}
				if rapid.Bool().Draw(rt, "helper") {
					s.Helper, _ = session.MakeName("sip")
				}
				tb.put(&s, entry{synced: rapid.Bool().Draw(rt, "synced")})
				model[k] = s
			case 1:
				if _, e, ok := tb.get(k); ok {
					e.mark2++
					tb.setMeta(k, e)
				}
			default:
				tb.del(k)
				delete(model, k)
			}
			got := map[session.Key]session.Session{}
			for k, e := range tb.all() {
				got[k] = tb.session(k, &e)
			}
			if !maps.Equal(got, model) || tb.len() != len(model) {
				rt.Fatalf("table %v\nwant %v", got, model)
			}
			for k, s := range model {
				if g, _, ok := tb.get(k); !ok || g != s {
					rt.Fatalf("get %v = %v, %v; want %v", k, g, ok, s)
				}
			}
			if len(tb.labels) > len(model) || len(tb.helpers) > len(model) || len(tb.odd) > len(model) {
				rt.Fatalf("side maps leak: %d labels, %d helpers, %d replies for %d sessions", len(tb.labels), len(tb.helpers), len(tb.odd), len(model))
			}
		}
	})
}

// TestTableBytesPerSession measures the table's live memory per session
// (after a collection), for the bench's kind of session: IPv4, source-NATed.
func TestTableBytesPerSession(t *testing.T) {
	const n = 100_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tb := newTable(0)
	for i := range n {
		s := snatSession(i)
		tb.put(&s, entry{synced: true})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("table: %.0f bytes/session live for %d sessions", per, tb.len())
	if per > 120 {
		t.Errorf("%.0f bytes/session (about 95 expected, 147 before the compact layout): the table has lost its compact layout", per)
	}
	runtime.KeepAlive(tb)
}

// retained is the memory the runtime holds from the OS for the heap (in use,
// free or not yet swept), less what it has returned: what RSS sees of it.
func retained() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	var n uint64
	for _, x := range s {
		n += x.Value.Uint64()
	}
	return n
}

// TestTableRetainedPerSession measures what resident memory sees: the heap
// the runtime keeps after 100k sessions are added one by one, with the
// garbage of the map's growth and no collection forced at the end, under
// the daemon's GC policy. The issue bounds the daemon at 200 bytes per
// session, everything included.
func TestTableRetainedPerSession(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(GCPercent))
	const n = 100_000
	runtime.GC()
	debug.FreeOSMemory()
	before := retained()
	tb := newTable(0)
	for i := range n {
		s := snatSession(i)
		tb.put(&s, entry{synced: true})
	}
	per := float64(retained()-before) / n
	t.Logf("table: %.0f bytes/session retained by the heap (GOGC=%d) for %d sessions", per, GCPercent, tb.len())
	if per > 150 {
		t.Errorf("%.0f bytes/session retained: over the budget with room for the rest of the daemon", per)
	}
	runtime.KeepAlive(tb)
}

func BenchmarkTablePut(b *testing.B) {
	ss := make([]session.Session, 100_000)
	for i := range ss {
		ss[i] = snatSession(i)
	}
	tb := newTable(0)
	i := 0
	for b.Loop() {
		s := &ss[i%len(ss)]
		s.Timeout++
		tb.put(s, entry{synced: true})
		i++
	}
}

// BenchmarkTableObserve is the primary's work per event on a table of 100k:
// get, compare, put.
func BenchmarkTableObserve(b *testing.B) {
	ss := make([]session.Session, 100_000)
	tb := newTable(0)
	for i := range ss {
		ss[i] = snatSession(i)
		tb.put(&ss[i], entry{synced: true})
	}
	i := 0
	for b.Loop() {
		s := &ss[i%len(ss)]
		s.Timeout++
		_, e, ok := tb.get(s.Key)
		if !ok || !sameState(s, &e, [16]byte{}) {
			b.Fatal("lost")
		}
		e.mark2++
		tb.put(s, e)
		i++
	}
}

// BenchmarkTableChurn inserts and deletes: a table of 100k whose oldest
// session is replaced by a new one each time.
func BenchmarkTableChurn(b *testing.B) {
	const n = 100_000
	tb := newTable(0)
	for i := range n {
		s := snatSession(i)
		tb.put(&s, entry{synced: true})
	}
	i := 0
	for b.Loop() {
		old := snatSession(i)
		tb.del(old.Key)
		s := snatSession(i + n)
		tb.put(&s, entry{synced: true})
		i = (i + 1) % (3_000_000 - n)
	}
}

// BenchmarkTableAll walks a table of 100k (dump diff, bulk send, stats).
func BenchmarkTableAll(b *testing.B) {
	tb := newTable(0)
	for i := range 100_000 {
		s := snatSession(i)
		tb.put(&s, entry{synced: true})
	}
	for b.Loop() {
		n := 0
		for _, e := range tb.all() {
			if e.synced {
				n++
			}
		}
		if n != tb.len() {
			b.Fatal(n)
		}
	}
}
