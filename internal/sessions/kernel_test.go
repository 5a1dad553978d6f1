package sessions

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/nstest"
	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions/conntrack"
	"github.com/hagate/hagate/internal/sessions/session"
)

// nsSessions returns n established TCP sessions between TEST-NET ranges, one
// in ten SNATed; none touches the sync link's own addresses.
func nsSessions(n int) []session.Change {
	cs := make([]session.Change, n)
	for i := range n {
		src := netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 250)})
		dst := netip.AddrFrom4([4]byte{203, 0, 113, byte(i / 60000 % 250)})
		s := synthSession(i)
		s.Orig.Src, s.Orig.Dst = session.Addr16(src), session.Addr16(dst)
		s.Reply = s.Orig.Invert(s.Proto)
		if i%10 == 0 {
			s.Reply.Dst = session.Addr16(netip.AddrFrom4([4]byte{198, 51, 100, 200}))
			s.Reply.DstPort = uint16(20000 + i/10%40000)
		}
		s.Timeout = 3600
		cs[i] = session.Change{Op: session.Upsert, Session: s}
	}
	return cs
}

func nsEngine(t testing.TB, ctx context.Context, ns *nstest.NS, id string, local netip.Addr, be Backend, mods ...func(*EngineConfig)) *Engine {
	t.Helper()
	cfg := EngineConfig{
		NodeID: id, Group: 1, Keyring: testKeys(t), Mode: seal.Encrypt,
		ListenAddrs: []netip.AddrPort{netip.AddrPortFrom(local, DefaultPort)},
		Listen: func(addr string) (l net.Listener, err error) {
			err = ns.Do(func() error { l, err = net.Listen("tcp", addr); return err })
			return l, err
		},
		Dial: func(ctx context.Context, addr string) (c net.Conn, err error) {
			err = ns.Do(func() error {
				var d net.Dialer
				c, err = d.DialContext(ctx, "tcp", addr)
				return err
			})
			return c, err
		},
		Filter: Filter{Connectionless: true, NAT: true},
	}
	for _, mod := range mods {
		mod(&cfg)
	}
	e, err := NewEngine(cfg, be)
	if err != nil {
		t.Fatal(err)
	}
	ectx, cancel := context.WithCancel(ctx)
	if err := e.Start(ectx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); e.Wait() })
	e.SetLocalAddrs([]netip.Addr{local})
	return e
}

func countKernel(t *testing.T, k *conntrack.Kernel, want map[session.Key]session.Session) (n, same int) {
	t.Helper()
	err := k.Dump(context.Background(), func(s session.Session) error {
		w, ok := want[s.Key]
		if !ok {
			return nil
		}
		w = liberal(w) // k is a subordinate's table
		n++
		if w.Reply == s.Reply && w.Mark == s.Mark && w.TCP == s.TCP {
			same++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, same
}

// TestNamespacesBulk100k: 100k sessions in the primary namespace's kernel
// table; a subordinate that starts afterwards holds all of them in its own.
func TestNamespacesBulk100k(t *testing.T) {
	const n = 100_000
	raiseConntrackMaxRestore(t, 4*n)
	a, b := nstest.New(t), nstest.New(t)
	nstest.Veth(t, a, "198.51.100.1/24", b, "198.51.100.2/24")
	ka, kb := openKernel(t, a, 0), openKernel(t, b, 0)
	cs := nsSessions(n)
	start := time.Now()
	if err := ka.Apply(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
	t.Logf("created %d sessions in the primary's table in %s", n, time.Since(start))
	want := make(map[session.Key]session.Session, n)
	for _, c := range cs {
		want[c.Session.Key] = c.Session
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pa, pb := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	ea := nsEngine(t, ctx, a, "gw1", pa, ka)
	start = time.Now()
	if err := ea.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("primary mirrored %d sessions in %s", ea.Stats().Sessions, time.Since(start))

	eb := nsEngine(t, ctx, b, "gw2", pb, kb)
	if err := eb.BecomeSubordinate(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	ea.SetPeers([]netip.AddrPort{netip.AddrPortFrom(pb, DefaultPort)})
	deadline := time.Now().Add(60 * time.Second)
	for !bulkDone(eb) {
		if time.Now().After(deadline) {
			t.Fatalf("no bulk completed: %+v", eb.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	st := eb.Stats()
	t.Logf("subordinate received and installed a bulk of %d sessions in %s (bulk stats %+v)", st.LastBulk.Sessions, took, st.LastBulk)
	got, same := countKernel(t, kb, want)
	if got != n || same != n {
		t.Fatalf("subordinate's kernel holds %d of %d sessions, %d identical", got, n, same)
	}
	if st.ApplyErrors != 0 {
		t.Errorf("apply errors: %d", st.ApplyErrors)
	}

	// Changes after the bulk follow: delete a session, update another.
	del, upd := cs[1].Session, cs[2].Session
	upd.Mark = 77
	if err := ka.Apply(ctx, []session.Change{{Op: session.Delete, Session: del}, {Op: session.Upsert, Exists: true, Session: upd}}); err != nil {
		t.Fatal(err)
	}
	delete(want, del.Key)
	want[upd.Key] = upd
	deadline = time.Now().Add(10 * time.Second)
	for {
		got, same := countKernel(t, kb, want)
		if got == n-1 && same == n-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("incremental changes not applied: %d sessions, %d identical", got, same)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNamespacesBulkScale is the late-subordinate bulk sync at scale,
// kernel to kernel: HAGATE_SCALE_N sessions (default 1M) created in the
// primary namespace's table, mirrored by the primary, then synced to a
// subordinate that starts afterwards, timed until its kernel table holds them
// (the bulk end is reported once every batch is installed). Opt-in
// (HAGATE_SCALE=1): it takes tens of seconds and raises nf_conntrack_max.
// Both namespaces share the host's conntrack hash table, so the primary's
// entries lengthen the chains the subordinate's inserts walk: two hosts do
// better than this.
func TestNamespacesBulkScale(t *testing.T) {
	if os.Getenv("HAGATE_SCALE") == "" {
		t.Skip("set HAGATE_SCALE=1")
	}
	n := 1_000_000
	if v := os.Getenv("HAGATE_SCALE_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatalf("HAGATE_SCALE_N: %v", err)
		}
	}
	raiseConntrackMaxRestore(t, 3*n)
	a, b := nstest.New(t), nstest.New(t)
	nstest.Veth(t, a, "198.51.100.1/24", b, "198.51.100.2/24")
	workers, _ := strconv.Atoi(os.Getenv("HAGATE_SCALE_WORKERS")) // 0: the default
	ka, kb := openKernel(t, a, 0), openKernel(t, b, workers)
	cs := nsSessions(n)
	start := time.Now()
	if err := ka.Apply(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
	t.Logf("created %d sessions in the primary's table in %s", n, time.Since(start))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pa, pb := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	ea := nsEngine(t, ctx, a, "gw1", pa, ka)
	start = time.Now()
	if err := ea.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("primary mirrored %d sessions in %s", ea.Stats().Sessions, time.Since(start))

	eb := nsEngine(t, ctx, b, "gw2", pb, kb)
	if err := eb.BecomeSubordinate(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	var ru0 syscallRusage
	ru0.read(t)
	start = time.Now()
	ea.SetPeers([]netip.AddrPort{netip.AddrPortFrom(pb, DefaultPort)})
	deadline := time.Now().Add(120 * time.Second)
	for !bulkDone(eb) {
		if time.Now().After(deadline) {
			t.Fatalf("no bulk completed: %+v", eb.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	var ru1 syscallRusage
	ru1.read(t)
	st := eb.Stats()
	created, _, _, failed := kb.Counters()
	t.Logf("subordinate received and installed a bulk of %d sessions in %s (subordinate's bulk %s; process CPU during it: user %s sys %s; kernel creates %d, failures %d)",
		st.LastBulk.Sessions, took, st.LastBulk.Duration, ru1.user-ru0.user, ru1.sys-ru0.sys, created, failed)
	if st.LastBulk.Sessions != n || created != uint64(n) || failed != 0 || st.ApplyErrors != 0 {
		t.Errorf("bulk of %d sessions, %d created in the kernel, %d failed, %d apply errors; want %d", st.LastBulk.Sessions, created, failed, st.ApplyErrors, n)
	}
	want := make(map[session.Key]session.Session, n)
	for _, c := range cs {
		want[c.Session.Key] = c.Session
	}
	if got, same := countKernel(t, kb, want); got != n || same != n {
		t.Fatalf("subordinate's kernel holds %d of %d sessions, %d identical", got, n, same)
	}
}

// bulkDone reports whether e has completed a bulk, without Stats: that walks
// the whole table under the engine's lock, and polled would slow down the
// bulk it watches.
func bulkDone(e *Engine) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.sub.lastBulk.At.IsZero()
}

// syscallRusage is the process's CPU time, user and system (the kernel's
// conntrack inserts run as the latter).
type syscallRusage struct{ user, sys time.Duration }

func (r *syscallRusage) read(t *testing.T) {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	r.user, r.sys = time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// raiseConntrackMaxRestore raises the host's nf_conntrack_max (the one
// host-wide setting tests may change) to at least n, and restores it at
// cleanup unless someone changed it meanwhile.
func raiseConntrackMaxRestore(t *testing.T, n int) {
	t.Helper()
	nstest.RequireRoot(t)
	const p = "/proc/sys/net/netfilter/nf_conntrack_max"
	read := func() int {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("nf_conntrack_max: %v", err)
		}
		v, err := strconv.Atoi(string(b[:len(b)-1]))
		if err != nil {
			t.Fatalf("nf_conntrack_max %q: %v", b, err)
		}
		return v
	}
	cur := read()
	if cur >= n {
		return
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(n)), 0o644); err != nil {
		t.Fatalf("raise nf_conntrack_max to %d: %v", n, err)
	}
	t.Cleanup(func() {
		if read() == n {
			_ = os.WriteFile(p, []byte(strconv.Itoa(cur)), 0o644)
		}
	})
}
