package syncproto

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"pgregory.net/rapid"

	"github.com/hagate/hagate/internal/sessions/session"
)

// sampleExpects covers an FTP data channel (IPv4, with NAT), an IPv6 one
// in a zone with flags, and deletes.
func sampleExpects() []session.ExpectChange {
	master := session.Key{Family: session.FamilyIPv4, Proto: session.ProtoTCP,
		Orig: session.Tuple{Src: addr("192.0.2.1"), Dst: addr("198.51.100.2"), SrcPort: 40000, DstPort: 21}}
	ftp := session.Expect{
		ExpectKey: session.ExpectKey{Family: session.FamilyIPv4, Proto: session.ProtoTCP,
			Tuple: session.Tuple{Src: addr("192.0.2.1"), Dst: addr("198.51.100.2"), DstPort: 50000}},
		MaskSrc: addr("255.255.255.255"), Master: master, Timeout: 299,
		NAT: true, NATDir: 1, NATAddr: addr("0.0.0.0"), NATPort: 50000,
	}
	ftp.Helper, _ = session.MakeName("ftp")
	ftp.Fn, _ = session.MakeFnName("nat-follow-master")
	v6 := session.Expect{
		ExpectKey: session.ExpectKey{Family: session.FamilyIPv6, Proto: session.ProtoUDP, Zone: 4,
			Tuple: session.Tuple{Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"), SrcPort: 5060, DstPort: 20000}},
		MaskSrc: addr("ffff:ffff:ffff:ffff::"), MaskSrcPort: 0xffff, Timeout: 3, Flags: session.ExpectPermanent, Class: 1,
		Master: session.Key{Family: session.FamilyIPv6, Proto: session.ProtoUDP, Zone: 4,
			Orig: session.Tuple{Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"), SrcPort: 5060, DstPort: 5060}},
	}
	v6.Helper, _ = session.MakeName("sip")
	return []session.ExpectChange{
		{Op: session.Upsert, Expect: ftp},
		{Op: session.Upsert, Expect: v6},
		{Op: session.Delete, Expect: session.Expect{ExpectKey: ftp.ExpectKey}},
		{Op: session.Delete, Expect: session.Expect{ExpectKey: v6.ExpectKey}},
	}
}

func TestExpectRefusals(t *testing.T) {
	up := sampleExpects()[0]
	enc := func(c session.ExpectChange) []byte {
		return AppendExpectBatch(nil, ExpectBatch{Seq: 1, Changes: []session.ExpectChange{c}})
	}
	hdr := batchHeaderLen
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"bad op", func() []byte { b := enc(up); b[hdr] &^= xOpMask; return b }()},
		{"nat dir 2", func() []byte { c := up; c.Expect.NATDir = 2; return enc(c) }()},
		{"zone flag, zone 0", func() []byte {
			c := sampleExpects()[2]
			b := enc(c)
			b[hdr] |= xZone
			// insert a zero zone after the protocol
			return append(b[:hdr+2:hdr+2], append([]byte{0, 0}, b[hdr+2:]...)...)
		}()},
		{"upsert flag on delete", func() []byte { b := enc(sampleExpects()[2]); b[hdr] |= xNAT; return b }()},
		{"empty helper", func() []byte {
			b := enc(up)
			i := len(b) - (1 + 4 + 2) - (1 + len("nat-follow-master")) - (1 + len("ftp"))
			if b[i] != 3 {
				t.Fatalf("helper length at %d is %d", i, b[i])
			}
			return append(append(b[:i:i], 0), b[i+4:]...)
		}()},
		{"huge count", []byte{byte(TExpect), 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(tc.b, nil); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

// TestHelperLeftOutAtVersion1: a version-1 peer never sees op bits 3.
func TestHelperLeftOutAtVersion1(t *testing.T) {
	c := sampleChanges()[0]
	if c.Session.Helper.IsZero() {
		t.Fatal("sample has no helper")
	}
	for _, v := range []uint8{1, 2} {
		w := BatchWriter{Version: v}
		w.Reset(nil)
		w.Add(&c)
		m, err := Decode(w.Finish(1), nil)
		if err != nil {
			t.Fatal(err)
		}
		got := m.(Batch).Changes[0].Session.Helper
		if want := (v == 2); !got.IsZero() != want {
			t.Errorf("version %d: helper %q", v, got)
		}
	}
	if c.Session.Helper.IsZero() {
		t.Fatal("writer changed the caller's change")
	}
}

func genExpect(t *rapid.T) session.Expect {
	s := genSession(t)
	x := session.Expect{ExpectKey: session.ExpectKey{Family: s.Family, Proto: rapid.SampledFrom([]uint8{session.ProtoTCP, session.ProtoUDP, 47}).Draw(t, "xproto"), Zone: s.Zone, Tuple: s.Reply}}
	x.MaskSrc, x.MaskSrcPort = s.Orig.Dst, s.Orig.DstPort
	x.Master = s.Key
	x.Timeout = s.Timeout
	x.Flags = rapid.SampledFrom([]uint32{0, 1, 3}).Draw(t, "flags")
	x.Class = rapid.SampledFrom([]uint32{0, 1}).Draw(t, "class")
	if rapid.Bool().Draw(t, "helper") {
		x.Helper, _ = session.MakeName(rapid.StringMatching(`[a-z0-9.-]{1,15}`).Draw(t, "helpername"))
	}
	if rapid.Bool().Draw(t, "fn") {
		x.Fn, _ = session.MakeFnName(rapid.StringMatching(`[a-z-]{1,31}`).Draw(t, "fnname"))
	}
	if rapid.Bool().Draw(t, "nat") {
		x.NAT, x.NATDir, x.NATAddr, x.NATPort = true, uint8(rapid.IntRange(0, 1).Draw(t, "dir")), s.Orig.Src, s.Orig.SrcPort
	}
	return x
}

func TestExpectBatchProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var cs []session.ExpectChange
		for range rapid.IntRange(0, 10).Draw(t, "n") {
			x := genExpect(t)
			if rapid.Bool().Draw(t, "delete") {
				cs = append(cs, session.ExpectChange{Op: session.Delete, Expect: session.Expect{ExpectKey: x.ExpectKey}})
			} else {
				cs = append(cs, session.ExpectChange{Op: session.Upsert, Expect: x})
			}
		}
		want := ExpectBatch{Seq: rapid.Uint64().Draw(t, "seq"), Changes: cs}
		got, err := Decode(AppendExpectBatch(nil, want), nil)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(Message(want), got, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("(-want +got):\n%s", d)
		}
	})
}
