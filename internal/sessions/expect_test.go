package sessions

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hagate/hagate/internal/sessions/session"
)

// ftpControl is an FTP control connection from client i, with the ftp
// helper attached.
func ftpControl(i int) session.Session {
	src := netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})
	dst := netip.MustParseAddr("203.0.113.21")
	s := session.Session{Key: session.Key{Family: session.FamilyIPv4, Proto: session.ProtoTCP,
		Orig: session.Tuple{Src: session.Addr16(src), Dst: session.Addr16(dst), SrcPort: uint16(40000 + i), DstPort: 21}},
		Status: session.StatusConfirmed | session.StatusAssured | session.StatusSeenReply, Timeout: 3600,
		TCP: session.TCPInfo{State: session.TCPEstablished}}
	s.Reply = s.Orig.Invert(s.Proto)
	s.Helper, _ = session.MakeName("ftp")
	return s
}

// ftpData is the data connection a PASV reply on m announces.
func ftpData(m session.Session, port uint16) session.Expect {
	x := session.Expect{
		ExpectKey: session.ExpectKey{Family: m.Family, Proto: session.ProtoTCP,
			Tuple: session.Tuple{Src: m.Orig.Src, Dst: m.Orig.Dst, DstPort: port}},
		MaskSrc: session.Addr16(netip.MustParseAddr("255.255.255.255")),
		Master:  m.Key, Timeout: 300, Helper: m.Helper,
	}
	x.Fn, _ = session.MakeFnName("nat-follow-master")
	return x
}

func upsert(s session.Session) session.Change { return session.Change{Op: session.Upsert, Session: s} }

func xupsert(x session.Expect) session.ExpectChange {
	return session.ExpectChange{Op: session.Upsert, Expect: x}
}

func xdelete(x session.Expect) session.ExpectChange {
	return session.ExpectChange{Op: session.Delete, Expect: x}
}

// waitExpects waits until the subordinate's expectations are want.
func waitExpects(t *testing.T, n *node, want map[session.ExpectKey]session.Expect) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := n.mem.Expects()
		if cmp.Equal(want, got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("subordinate's expectations (-want +got):\n%s\nstats %+v", cmp.Diff(want, got), n.e.ExpectStats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEngineSyncsExpectations(t *testing.T) {
	ctx, p, s := pair(t, func(c *EngineConfig) { c.Expectation = true })
	m1, m2 := ftpControl(1), ftpControl(2)
	x1, x2 := ftpData(m1, 50001), ftpData(m2, 50002)
	// Before the primary starts: the bulk carries x1 after its master.
	p.mem.Inject(upsert(m1))
	p.mem.InjectExpect(xupsert(x1))
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	waitExpects(t, s, map[session.ExpectKey]session.Expect{x1.ExpectKey: x1})
	if got, _ := s.mem.Get(m1.Key); got.Helper != m1.Helper {
		t.Fatalf("subordinate's master has helper %q, want %q", got.Helper, m1.Helper)
	}

	// Incremental: a new control connection and its data channel.
	p.mem.Inject(upsert(m2))
	p.mem.InjectExpect(xupsert(x2))
	waitExpects(t, s, map[session.ExpectKey]session.Expect{x1.ExpectKey: x1, x2.ExpectKey: x2})

	// The data connection arrives (the kernel removes the expectation);
	// then the other control connection ends, taking its expectation along.
	p.mem.InjectExpect(xdelete(x1))
	waitExpects(t, s, map[session.ExpectKey]session.Expect{x2.ExpectKey: x2})
	p.mem.Inject(session.Change{Op: session.Delete, Session: m2})
	waitExpects(t, s, map[session.ExpectKey]session.Expect{})
	converge(t, p, s)

	pst, sst := p.e.ExpectStats(), s.e.ExpectStats()
	t.Logf("primary %+v; subordinate %+v", pst, sst)
	if sst.Installed < 2 || len(sst.Dropped) != 0 {
		t.Errorf("subordinate stats %+v: want 2 or more installed (a reconnect resends), none dropped", sst)
	}
}

func TestEngineExpectationsOff(t *testing.T) {
	ctx, p, s := pair(t, nil)
	m := ftpControl(1)
	p.mem.Inject(upsert(m))
	p.mem.InjectExpect(xupsert(ftpData(m, 50001)))
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	p.mem.InjectExpect(xupsert(ftpData(m, 50002)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, ok := s.mem.Get(m.Key)
		if ok {
			if !got.Helper.IsZero() {
				t.Fatalf("helper %q synced with expectations off", got.Helper)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("master not synced")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A later session change is a marker: everything queued before it has
	// been sent by the time it arrives.
	marker := ftpControl(3)
	p.mem.Inject(upsert(marker))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := s.mem.Get(marker.Key); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("marker not synced")
		}
	}
	if got := s.mem.Expects(); len(got) != 0 {
		t.Fatalf("expectations synced with expectation off: %v", got)
	}
	if st := p.e.ExpectStats(); st.Enabled || st.Sent != 0 {
		t.Fatalf("primary expectation stats with expectation off: %+v", st)
	}
}

// TestEngineExpectationWaitsForMaster: an expectation whose master is not
// synced yet (younger than delay) is held back, and sent as soon as the
// master is.
func TestEngineExpectationWaitsForMaster(t *testing.T) {
	var skew atomic.Int64 // the engines' clock runs this far ahead
	ctx, p, s := pair(t, func(c *EngineConfig) {
		c.Expectation = true
		c.Delay = 10 * time.Second
		c.Refresh = 50 * time.Millisecond
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	m := ftpControl(1)
	x := ftpData(m, 50001)
	p.mem.Inject(upsert(m))
	p.mem.InjectExpect(xupsert(x))
	for deadline := time.Now().Add(5 * time.Second); p.e.ExpectStats().Unsent != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("expectation not held back: %+v", p.e.ExpectStats())
		}
	}
	if got := s.mem.Expects(); len(got) != 0 {
		t.Fatalf("sent before its master: %v", got)
	}
	skew.Store(int64(20 * time.Second)) // the master is old enough now
	waitExpects(t, s, map[session.ExpectKey]session.Expect{x.ExpectKey: x})
	if st := s.e.ExpectStats(); len(st.Dropped) != 0 {
		t.Errorf("subordinate dropped expectations: %+v", st)
	}
}

// TestEngineExpectationMissingMaster: a subordinate that lacks the master
// (it could not install it) drops the expectation and says why.
func TestEngineExpectationMissingMaster(t *testing.T) {
	_, _, s := pair(t, func(c *EngineConfig) { c.Expectation = true })
	m := ftpControl(1)
	noHelper := ftpControl(2)
	noHelper.Helper = session.Name{}
	s.mem.Inject(upsert(noHelper))
	install(context.Background(), s.e, s.e.expectations(), []session.ExpectChange{xupsert(ftpData(m, 1)), xupsert(ftpData(noHelper, 2))})
	st := s.e.ExpectStats()
	if st.Dropped[xDropNoMaster] != 1 || st.Dropped[xDropFailed] != 1 || st.Installed != 0 {
		t.Fatalf("stats %+v: want one no-master and one failed drop", st)
	}
	if got := s.mem.Expects(); len(got) != 0 {
		t.Fatalf("installed %v", got)
	}
}

// TestEngineExpectationsManyMasters: a burst of control connections and
// data channels, some ending, converges.
func TestEngineExpectationsManyMasters(t *testing.T) {
	ctx, p, s := pair(t, func(c *EngineConfig) { c.Expectation = true })
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[session.ExpectKey]session.Expect{}
	for i := range 200 {
		m := ftpControl(i)
		m.Orig.SrcPort = uint16(1000 + i)
		m.Reply = m.Orig.Invert(m.Proto)
		x := ftpData(m, uint16(50000+i))
		p.mem.Inject(upsert(m))
		p.mem.InjectExpect(xupsert(x))
		switch i % 3 {
		case 0:
			p.mem.InjectExpect(xdelete(x))
		case 1:
			p.mem.Inject(session.Change{Op: session.Delete, Session: m})
		default:
			want[x.ExpectKey] = x
		}
	}
	waitExpects(t, s, want)
	converge(t, p, s)
	if n := len(want); n != 66 {
		t.Fatalf("test expects 66 live expectations, has %d", n)
	}
}

// TestEngineExpectationVersionMix: when one end is an older build that
// speaks protocol version 1, the connection runs at version 1: sessions
// flow, without helpers or expectations.
func TestEngineExpectationVersionMix(t *testing.T) {
	for _, primaryOld := range []bool{true, false} {
		t.Run(fmt.Sprintf("primary_old=%v", primaryOld), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			old := func(isOld bool) func(*EngineConfig) {
				return func(c *EngineConfig) {
					c.Expectation = true
					if isOld {
						c.maxVersion = 1
					}
				}
			}
			p := startNode(t, ctx, "gw1", old(primaryOld))
			s := startNode(t, ctx, "gw2", old(!primaryOld))
			if err := s.e.BecomeSubordinate(ctx, "gw1"); err != nil {
				t.Fatal(err)
			}
			p.e.SetPeers([]netip.AddrPort{s.addr(t)})
			m := ftpControl(1)
			p.mem.Inject(upsert(m))
			p.mem.InjectExpect(xupsert(ftpData(m, 50001)))
			if err := p.e.becomePrimaryMirrored(ctx); err != nil {
				t.Fatal(err)
			}
			marker := ftpControl(2)
			p.mem.Inject(upsert(marker))
			p.mem.InjectExpect(xupsert(ftpData(marker, 50002)))
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if _, ok := s.mem.Get(marker.Key); ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("sessions not synced: %+v", s.e.Stats())
				}
			}
			if got, _ := s.mem.Get(m.Key); !got.Helper.IsZero() {
				t.Errorf("helper %q sent at version 1", got.Helper)
			}
			if got := s.mem.Expects(); len(got) != 0 {
				t.Errorf("expectations sent at version 1: %v", got)
			}
			p.e.mu.Lock()
			for _, pr := range p.e.pri.peers {
				if pr.version != 1 {
					t.Errorf("connection at version %d, want 1", pr.version)
				}
			}
			p.e.mu.Unlock()
		})
	}
}
