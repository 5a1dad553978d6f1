package conntrack

import (
	"context"
	"errors"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hagate/hagate/internal/nstest"
	"github.com/hagate/hagate/internal/sessions/session"
)

// ftpRuleset gives a namespace the kernel's FTP helper on TCP port 21, as a
// gateway doing FTP would have it.
const ftpRuleset = `table inet hgftp {
	ct helper ftp-h { type "ftp" protocol tcp; l3proto inet; }
	chain pre { type filter hook prerouting priority filter; tcp dport 21 ct helper set "ftp-h"; }
}`

// nftLoad loads an nftables ruleset into the namespace.
func nftLoad(t *testing.T, ns *nstest.NS, ruleset string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
}

func name(s string) session.Name {
	n, ok := session.MakeName(s)
	if !ok {
		panic(s)
	}
	return n
}

// ftpMaster is an FTP control connection carrying the ftp helper.
func ftpMaster(fam uint8, client, server string) session.Session {
	s := mk(fam, session.ProtoTCP, tuple(client, server, 40021, 21), nil)
	s.Helper = name("ftp")
	return s
}

// ftpExpect is the data connection a PASV reply announces: from the client,
// any source port, to the server's port 50000.
func ftpExpect(m session.Session) session.Expect {
	x := session.Expect{
		ExpectKey: session.ExpectKey{Family: m.Family, Proto: session.ProtoTCP,
			Tuple: session.Tuple{Src: m.Orig.Src, Dst: m.Orig.Dst, DstPort: 50000}},
		Master: m.Key, Timeout: 200, Helper: name("ftp"),
	}
	for i := range x.MaskSrc {
		x.MaskSrc[i] = 0xff
	}
	if m.Family == session.FamilyIPv4 {
		x.MaskSrc = session.Addr16(netip.MustParseAddr("255.255.255.255"))
	}
	return x
}

func dumpExpects(t *testing.T, k *Kernel) map[session.ExpectKey]session.Expect {
	t.Helper()
	got := map[session.ExpectKey]session.Expect{}
	if err := k.DumpExpect(context.Background(), func(x session.Expect) error {
		got[x.ExpectKey] = x
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestKernelExpectations(t *testing.T) {
	for _, tc := range []struct {
		name           string
		fam            uint8
		client, server string
	}{
		{"ipv4", session.FamilyIPv4, "192.0.2.10", "203.0.113.20"},
		{"ipv6", session.FamilyIPv6, "2001:db8::10", "2001:db8:1::20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns, k := openNS(t)
			nftLoad(t, ns, ftpRuleset)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			evs, err := k.WatchExpect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m := ftpMaster(tc.fam, tc.client, tc.server)
			x := ftpExpect(m)

			// Without its master the kernel refuses the expectation.
			err = k.ApplyExpect(ctx, []session.ExpectChange{{Op: session.Upsert, Expect: x}})
			if !errors.Is(err, session.ErrNoMaster) {
				t.Fatalf("expectation without master: %v, want ErrNoMaster", err)
			}
			if err := k.Apply(ctx, upserts([]session.Session{m})); err != nil {
				t.Fatal(err)
			}
			if g := dumpMap(t, k)[m.Key]; g.Helper != m.Helper {
				t.Fatalf("master's helper %q, want %q", g.Helper, m.Helper)
			}
			if err := k.ApplyExpect(ctx, []session.ExpectChange{{Op: session.Upsert, Expect: x}}); err != nil {
				t.Fatal(err)
			}
			got := dumpExpects(t, k)
			g, ok := got[x.ExpectKey]
			if !ok || len(got) != 1 {
				t.Fatalf("dump %v, want %s", got, x)
			}
			t.Logf("dumped %s flags=%#x class=%d fn=%q", g, g.Flags, g.Class, g.Fn)
			if g.Timeout > x.Timeout || g.Timeout+5 < x.Timeout {
				t.Errorf("timeout %d, want about %d", g.Timeout, x.Timeout)
			}
			want := x
			want.Timeout = g.Timeout
			if d := cmp.Diff(want, g); d != "" {
				t.Errorf("dump (-want +got):\n%s", d)
			}
			t.Logf("conntrack -L expect:\n%s", ns.Run(t, "conntrack", "-L", "expect"))

			// Installing again is an update of the timeout.
			x.Timeout = 100
			if err := k.ApplyExpect(ctx, []session.ExpectChange{{Op: session.Upsert, Expect: x}}); err != nil {
				t.Fatal(err)
			}
			if g := dumpExpects(t, k)[x.ExpectKey]; g.Timeout > 100 || g.Timeout < 95 {
				t.Errorf("timeout after update %d, want about 100", g.Timeout)
			}
			dels := []session.ExpectChange{{Op: session.Delete, Expect: x}, {Op: session.Delete, Expect: x}}
			if err := k.ApplyExpect(ctx, dels); err != nil {
				t.Fatalf("delete (twice): %v", err)
			}
			if got := dumpExpects(t, k); len(got) != 0 {
				t.Fatalf("after delete: %v", got)
			}
			for _, want := range []session.EventKind{session.EventNew, session.EventDestroy} {
				select {
				case ev := <-evs:
					if ev.Kind != want || ev.Expect.ExpectKey != x.ExpectKey {
						t.Fatalf("event %s %s, want %s %s", ev.Kind, ev.Expect.ExpectKey, want, x.ExpectKey)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("no %s event", want)
				}
			}
		})
	}
}

// TestKernelExpectationNAT: the NAT part of an expectation (what the NAT
// helpers set) survives a create and a dump.
func TestKernelExpectationNAT(t *testing.T) {
	ns, k := openNS(t)
	nftLoad(t, ns, ftpRuleset)
	ctx := context.Background()
	m := ftpMaster(session.FamilyIPv4, "192.0.2.10", "203.0.113.20")
	if err := k.Apply(ctx, upserts([]session.Session{m})); err != nil {
		t.Fatal(err)
	}
	x := ftpExpect(m)
	x.NAT, x.NATDir, x.NATPort = true, 1, 50000
	x.NATAddr = session.Addr16(netip.MustParseAddr("0.0.0.0"))
	x.Fn, _ = session.MakeFnName("nat-follow-master")
	if err := k.ApplyExpect(ctx, []session.ExpectChange{{Op: session.Upsert, Expect: x}}); err != nil {
		t.Fatal(err)
	}
	g := dumpExpects(t, k)[x.ExpectKey]
	x.Timeout = g.Timeout
	if d := cmp.Diff(x, g); d != "" {
		t.Errorf("dump (-want +got):\n%s", d)
	}
}
