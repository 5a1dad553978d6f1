package conntrack

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hagate/hagate/internal/nstest"
	"github.com/hagate/hagate/internal/sessions/session"
)

func tuple(src, dst string, sp, dp uint16) session.Tuple {
	return session.Tuple{
		Src: session.Addr16(netip.MustParseAddr(src)), Dst: session.Addr16(netip.MustParseAddr(dst)),
		SrcPort: sp, DstPort: dp,
	}
}

func mk(fam, proto uint8, orig session.Tuple, reply *session.Tuple) session.Session {
	s := session.Session{Key: session.Key{Family: fam, Proto: proto, Orig: orig}, Timeout: 300,
		Status: session.StatusConfirmed | session.StatusSeenReply | session.StatusAssured}
	s.Reply = orig.Invert(proto)
	if reply != nil {
		s.Reply = *reply
	}
	if proto == session.ProtoTCP {
		s.TCP = session.TCPInfo{State: session.TCPEstablished, WScaleOrig: 7, WScaleReply: 9,
			FlagsOrig: session.TCPFlagWindowScale | 0x02, FlagsReply: session.TCPFlagWindowScale}
	}
	return s
}

// testSessions covers what the kernel must reproduce faithfully.
func testSessions() []session.Session {
	snatReply := tuple("198.51.100.20", "203.0.113.1", 443, 61000)
	dnatReply := tuple("192.0.2.80", "198.51.100.9", 8080, 40001)
	bothReply := tuple("192.0.2.81", "203.0.113.2", 80, 40002)
	icmpOrig := session.Tuple{Src: session.Addr16(netip.MustParseAddr("192.0.2.10")), Dst: session.Addr16(netip.MustParseAddr("198.51.100.20")), SrcPort: 77, DstPort: 8 << 8}
	udp := mk(session.FamilyIPv4, session.ProtoUDP, tuple("192.0.2.10", "198.51.100.53", 5353, 53), nil)
	udp.Mark = 0x42
	udp.Timeout = 30
	udp.Status &^= session.StatusAssured
	zoned := mk(session.FamilyIPv4, session.ProtoUDP, tuple("192.0.2.11", "198.51.100.53", 5354, 53), nil)
	zoned.Zone = 7
	v6 := mk(session.FamilyIPv6, session.ProtoTCP, tuple("2001:db8::10", "2001:db8:1::20", 50000, 22), nil)
	return []session.Session{
		mk(session.FamilyIPv4, session.ProtoTCP, tuple("192.0.2.10", "198.51.100.20", 40000, 443), nil),
		mk(session.FamilyIPv4, session.ProtoTCP, tuple("192.0.2.10", "198.51.100.20", 40001, 443), &snatReply),
		mk(session.FamilyIPv4, session.ProtoTCP, tuple("198.51.100.9", "203.0.113.1", 40001, 80), &dnatReply),
		mk(session.FamilyIPv4, session.ProtoTCP, tuple("198.51.100.9", "203.0.113.1", 40002, 81), &bothReply),
		udp, zoned, v6,
		mk(session.FamilyIPv4, session.ProtoICMP, icmpOrig, nil),
	}
}

// normalize keeps the fields the kernel reports back as given: status bits
// userspace can set plus the NAT bits, and a timeout rounded down to a window.
func normalize(s session.Session) session.Session {
	s.Status &= settableStatus | session.StatusConfirmed | session.StatusSrcNAT | session.StatusDstNAT
	s.Timeout = 0
	return s
}

func expectNAT(s session.Session) session.Session {
	plain := s.Orig.Invert(s.Proto)
	if s.Reply.Dst != plain.Dst || s.Reply.DstPort != plain.DstPort && !session.IsICMP(s.Proto) {
		s.Status |= session.StatusSrcNAT
	}
	if s.Reply.Src != plain.Src || s.Reply.SrcPort != plain.SrcPort && !session.IsICMP(s.Proto) {
		s.Status |= session.StatusDstNAT
	}
	return normalize(s)
}

func dumpMap(t *testing.T, k *Kernel) map[session.Key]session.Session {
	t.Helper()
	got := map[session.Key]session.Session{}
	err := k.Dump(context.Background(), func(s session.Session) error {
		got[s.Key] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func upserts(ss []session.Session) []session.Change {
	var cs []session.Change
	for _, s := range ss {
		cs = append(cs, session.Change{Op: session.Upsert, Session: s})
	}
	return cs
}

func openNS(t *testing.T) (*nstest.NS, *Kernel) {
	ns := nstest.New(t)
	k, err := Open(Options{NetNSPath: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return ns, k
}

func TestKernelCreateUpdateDumpDelete(t *testing.T) {
	ns, k := openNS(t)
	ctx := context.Background()
	want := testSessions()
	if err := k.Apply(ctx, upserts(want)); err != nil {
		t.Fatal(err)
	}
	got := dumpMap(t, k)
	if len(got) != len(want) {
		t.Errorf("dump has %d entries, want %d", len(got), len(want))
	}
	for _, w := range want {
		g, ok := got[w.Key]
		if !ok {
			t.Errorf("missing %s", w.Key)
			continue
		}
		if g.Timeout > w.Timeout || g.Timeout+5 < w.Timeout {
			t.Errorf("%s: timeout %d, want about %d", w.Key, g.Timeout, w.Timeout)
		}
		if d := cmp.Diff(expectNAT(w), normalize(g)); d != "" {
			t.Errorf("%s (-want +got):\n%s", w.Key, d)
		}
	}
	// The conntrack(8) tool sees the same entries (an independent reader).
	out := ns.Run(t, "conntrack", "-L", "-o", "extended")
	t.Logf("conntrack -L:\n%s", out)

	// Update everything (the create is refused and retried as an update).
	for i := range want {
		want[i].Mark = uint32(0x100 + i)
		want[i].Timeout = 500
		if want[i].Proto == session.ProtoTCP {
			want[i].TCP.State = session.TCPFinWait
			want[i].TCP.FlagsOrig |= 0x04 // CLOSE_INIT
		}
	}
	if err := k.Apply(ctx, upserts(want)); err != nil {
		t.Fatal(err)
	}
	got = dumpMap(t, k)
	for _, w := range want {
		if d := cmp.Diff(expectNAT(w), normalize(got[w.Key])); d != "" {
			t.Errorf("after update %s (-want +got):\n%s", w.Key, d)
		}
	}

	// Delete half, plus an entry that does not exist.
	var dels []session.Change
	for _, w := range want[:4] {
		dels = append(dels, session.Change{Op: session.Delete, Session: w})
	}
	ghost := mk(session.FamilyIPv4, session.ProtoTCP, tuple("192.0.2.99", "198.51.100.99", 1, 2), nil)
	dels = append(dels, session.Change{Op: session.Delete, Session: ghost})
	if err := k.Apply(ctx, dels); err != nil {
		t.Fatal(err)
	}
	got = dumpMap(t, k)
	if len(got) != len(want)-4 {
		t.Errorf("after delete: %d entries, want %d", len(got), len(want)-4)
	}
	if err := k.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got = dumpMap(t, k); len(got) != 0 {
		t.Errorf("after flush: %d entries", len(got))
	}
}

// Lookup finds entries by key (every family, protocol, zone and NAT of
// testSessions, in batches larger than one request's), skips keys the table
// does not hold, and reports what the dump reports for the same entries.
func TestKernelLookup(t *testing.T) {
	_, k := openNS(t)
	ctx := context.Background()
	present := testSessions()
	for i := range 2 * getBatch { // enough for more than two batches
		present = append(present, mk(session.FamilyIPv4, session.ProtoTCP, tuple("192.0.2.30", "198.51.100.30", uint16(10000+i), 443), nil))
	}
	if err := k.Apply(ctx, upserts(present)); err != nil {
		t.Fatal(err)
	}
	var keys []session.Key
	for i, s := range present {
		keys = append(keys, s.Key)
		if i%3 == 0 { // interleave missing keys, and end on one
			keys = append(keys, mk(session.FamilyIPv4, session.ProtoTCP, tuple("192.0.2.31", "198.51.100.31", uint16(20000+i), 443), nil).Key)
		}
	}
	got := map[session.Key]session.Session{}
	if err := k.Lookup(ctx, keys, func(s session.Session) error {
		if _, dup := got[s.Key]; dup {
			t.Errorf("%s reported twice", s.Key)
		}
		got[s.Key] = s
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dumped := dumpMap(t, k)
	if len(got) != len(present) {
		t.Errorf("got %d entries, want %d", len(got), len(present))
	}
	for _, w := range present {
		if d := cmp.Diff(normalize(dumped[w.Key]), normalize(got[w.Key])); d != "" {
			t.Errorf("%s: lookup differs from dump (-dump +lookup):\n%s", w.Key, d)
		}
	}
	if err := k.Lookup(ctx, nil, func(session.Session) error { return nil }); err != nil {
		t.Errorf("lookup of no keys: %v", err)
	}
}

// EventsForAll sets nf_conntrack_events=1 in the backend's namespace, not
// the caller's, and an entry made before anybody listened then reports its
// end to a watcher started afterwards.
func TestKernelEventsForAll(t *testing.T) {
	ns, k := openNS(t)
	host, err := os.ReadFile(eventsSysctl)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(ns.Run(t, "sysctl", "-n", "net.netfilter.nf_conntrack_events")); got != "2" {
		t.Skipf("nf_conntrack_events is %s in a new namespace, not the default 2", got)
	}
	was, err := k.EventsForAll()
	if err != nil || was != 2 {
		t.Fatalf("EventsForAll = %d, %v; want 2, nil", was, err)
	}
	if got := strings.TrimSpace(ns.Run(t, "sysctl", "-n", "net.netfilter.nf_conntrack_events")); got != "1" {
		t.Errorf("nf_conntrack_events in the namespace = %s, want 1", got)
	}
	if now, _ := os.ReadFile(eventsSysctl); string(now) != string(host) {
		t.Fatalf("the caller's nf_conntrack_events changed: %q -> %q", host, now)
	}
	if was, err := k.EventsForAll(); err != nil || was != 1 {
		t.Errorf("second EventsForAll = %d, %v; want 1, nil", was, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := testSessions()[0]
	if err := k.Apply(ctx, upserts([]session.Session{s})); err != nil {
		t.Fatal(err)
	}
	evs, err := k.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Apply(ctx, []session.Change{{Op: session.Delete, Session: s}}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-evs:
		if ev.Kind != session.EventDestroy || ev.Session.Key != s.Key {
			t.Errorf("event %v %s, want the destroy of %s", ev.Kind, ev.Session.Key, s.Key)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no destroy event for an entry made before the watch")
	}
}

func TestKernelWindowScaleNeedsFlag(t *testing.T) {
	_, k := openNS(t)
	s := mk(session.FamilyIPv4, session.ProtoTCP, tuple("192.0.2.10", "198.51.100.20", 40000, 443), nil)
	if err := k.Apply(context.Background(), upserts([]session.Session{s})); err != nil {
		t.Fatal(err)
	}
	g := dumpMap(t, k)[s.Key]
	if g.TCP.WScaleOrig != 7 || g.TCP.WScaleReply != 9 {
		t.Fatalf("window scales %d/%d, want 7/9", g.TCP.WScaleOrig, g.TCP.WScaleReply)
	}
	// Without the flag on one side the kernel drops the scales: the reason
	// flags travel with the session.
	u := mk(session.FamilyIPv4, session.ProtoTCP, tuple("192.0.2.10", "198.51.100.20", 40001, 443), nil)
	u.TCP.FlagsReply = 0
	if err := k.Apply(context.Background(), upserts([]session.Session{u})); err != nil {
		t.Fatal(err)
	}
	if g := dumpMap(t, k)[u.Key]; g.TCP.WScaleOrig != 0 || g.TCP.WScaleReply != 0 {
		t.Fatalf("window scales kept without the flag: %d/%d", g.TCP.WScaleOrig, g.TCP.WScaleReply)
	}
}

func TestKernelEvents(t *testing.T) {
	_, k := openNS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := k.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := mk(session.FamilyIPv4, session.ProtoUDP, tuple("192.0.2.10", "198.51.100.53", 5353, 53), nil)
	next := func(want session.EventKind) session.Event {
		t.Helper()
		select {
		case ev := <-ch:
			if ev.Kind != want || ev.Session.Key != s.Key {
				t.Fatalf("event %s %s, want %s %s", ev.Kind, ev.Session.Key, want, s.Key)
			}
			return ev
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event", want)
		}
		return session.Event{}
	}
	if err := k.Apply(ctx, upserts([]session.Session{s})); err != nil {
		t.Fatal(err)
	}
	next(session.EventNew)
	s.Mark = 9
	if err := k.Apply(ctx, []session.Change{{Op: session.Upsert, Exists: true, Session: s}}); err != nil {
		t.Fatal(err)
	}
	if ev := next(session.EventUpdate); ev.Session.Mark != 9 {
		t.Errorf("update event mark %d", ev.Session.Mark)
	}
	if err := k.Apply(ctx, []session.Change{{Op: session.Delete, Session: s}}); err != nil {
		t.Fatal(err)
	}
	next(session.EventDestroy)
	cancel()
	for range ch { // the stream ends with its context
	}
}

// synthetic returns n distinct established TCP sessions, a tenth of them SNATed.
func synthetic(n int) []session.Session {
	out := make([]session.Session, n)
	for i := range n {
		src := netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 250)})
		dst := netip.AddrFrom4([4]byte{198, 51, 100, byte(i / 60000 % 250)})
		o := session.Tuple{Src: session.Addr16(src), Dst: session.Addr16(dst), SrcPort: uint16(1024 + i%60000), DstPort: 443}
		var r *session.Tuple
		if i%10 == 0 {
			rt := o.Invert(session.ProtoTCP)
			rt.Dst = session.Addr16(netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 250)}))
			r = &rt
		}
		out[i] = mk(session.FamilyIPv4, session.ProtoTCP, o, r)
	}
	return out
}

func TestKernelBulk(t *testing.T) {
	_, k := openNS(t)
	const n = 20000
	ss := synthetic(n)
	start := time.Now()
	if err := k.Apply(context.Background(), upserts(ss)); err != nil {
		t.Fatal(err)
	}
	t.Logf("installed %d sessions in %s", n, time.Since(start))
	if got := len(dumpMap(t, k)); got != n {
		t.Fatalf("dump has %d, want %d", got, n)
	}
}

var benchWorkers = 2

func BenchmarkKernelBulkInstall(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			raiseConntrackMax(b, 2*n)
			ss := synthetic(n)
			cs := upserts(ss)
			var total time.Duration
			for range b.N {
				ns := nstest.New(b)
				k, err := Open(Options{NetNSPath: ns.Path(), Workers: benchWorkers})
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := k.Apply(context.Background(), cs); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				k.Close()
			}
			b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "sessions/s")
		})
	}
}

// TestKernelApplyNamesRefused: the kernel refuses one entry of a batch (a
// helper it does not have) and takes the others; Apply names the refused
// one by its index, so the caller can tell what the kernel holds.
func TestKernelApplyNamesRefused(t *testing.T) {
	_, k := openNS(t)
	ss := testSessions()[:3]
	var ok bool
	if ss[1].Helper, ok = session.MakeName("hagate-none"); !ok {
		t.Fatal("helper name")
	}
	err := k.Apply(context.Background(), upserts(ss))
	var ae *session.ApplyError
	if !errors.As(err, &ae) || !slices.Equal(ae.Failed, []int{1}) {
		t.Fatalf("Apply: %v, want the second change named as refused", err)
	}
	got := dumpMap(t, k)
	if _, held := got[ss[1].Key]; held || len(got) != 2 {
		t.Errorf("the kernel holds %d entries (the refused one: %v), want the 2 others", len(got), held)
	}
}

// TestKernelCount: the kernel's count of the namespace's entries, without a
// dump: 0 in a fresh namespace, then what was installed, and entries of
// another namespace do not count.
func TestKernelCount(t *testing.T) {
	_, k := openNS(t)
	_, other := openNS(t)
	ctx := context.Background()
	if err := other.Apply(ctx, upserts(synthetic(5))); err != nil {
		t.Fatal(err)
	}
	if n, err := k.Count(ctx); err != nil || n != 0 {
		t.Fatalf("Count in a fresh namespace = %d, %v; want 0", n, err)
	}
	if err := k.Apply(ctx, upserts(testSessions()[:3])); err != nil {
		t.Fatal(err)
	}
	if n, err := k.Count(ctx); err != nil || n != 3 {
		t.Fatalf("Count = %d, %v; want 3", n, err)
	}
}
