package syncproto

import (
	"errors"
	"net/netip"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"pgregory.net/rapid"

	"github.com/hagate/hagate/internal/sessions/session"
)

func addr(s string) [16]byte { return session.Addr16(netip.MustParseAddr(s)) }

func sampleChanges() []session.Change {
	tcp := session.Session{Key: session.Key{Family: session.FamilyIPv4, Proto: session.ProtoTCP,
		Orig: session.Tuple{Src: addr("192.0.2.1"), Dst: addr("198.51.100.2"), SrcPort: 40000, DstPort: 443}},
		Status: 0xe, Timeout: 431999, TCP: session.TCPInfo{State: 3, WScaleOrig: 7, WScaleReply: 9, FlagsOrig: 0x23, FlagsReply: 0x01}}
	tcp.Reply = tcp.Orig.Invert(tcp.Proto)
	snat := tcp
	snat.Reply.Dst = addr("203.0.113.9")
	snat.Reply.DstPort = 61000
	snat.Mark = 0xdead
	snat.Zone = 3
	snat.Labels[15] = 1
	udp6 := session.Session{Key: session.Key{Family: session.FamilyIPv6, Proto: session.ProtoUDP,
		Orig: session.Tuple{Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"), SrcPort: 5353, DstPort: 53}},
		Status: 0x8, Timeout: 30}
	udp6.Reply = udp6.Orig.Invert(udp6.Proto)
	icmp := session.Session{Key: session.Key{Family: session.FamilyIPv4, Proto: session.ProtoICMP,
		Orig: session.Tuple{Src: addr("192.0.2.1"), Dst: addr("198.51.100.2"), SrcPort: 77, DstPort: 8 << 8}},
		Status: 0xa, Timeout: 29}
	icmp.Reply = icmp.Orig.Invert(icmp.Proto)
	ftp := tcp
	ftp.Orig.DstPort = 21
	ftp.Reply = ftp.Orig.Invert(ftp.Proto)
	ftp.Helper, _ = session.MakeName("ftp")
	return []session.Change{
		{Op: session.Upsert, Session: ftp},
		{Op: session.Upsert, Session: tcp},
		{Op: session.Upsert, Session: snat},
		{Op: session.Upsert, Session: udp6},
		{Op: session.Upsert, Session: icmp},
		{Op: session.Delete, Session: session.Session{Key: snat.Key}},
		{Op: session.Delete, Session: session.Session{Key: udp6.Key}},
	}
}

func sampleMessages() []Message {
	return []Message{
		Hello{Version: Version, NodeID: "gw1", WantBulk: true},
		Hello{Version: Version, NodeID: "a-node-with-a-longer-name"},
		Hello{Version: Version, NodeID: "gw2", Nonce: [NonceLen]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		Hello{Version: Version + 1, NodeID: "newer"}, // a newer peer: negotiated down
		BulkStart{Gen: 7, Count: 1_000_000},
		Batch{Seq: 1, Changes: sampleChanges()},
		Batch{Seq: 2, Changes: []session.Change{}},
		BulkEnd{Gen: 7, Count: 999_999},
		Ack{Seq: 12345},
		Heartbeat{Seq: 99},
		Resync{Reason: 2},
		ExpectBatch{Seq: 3, Changes: sampleExpects()},
		Batch{Seq: 4, Changes: sampleChanges(), Oldest: 1_700_000_000_123_456_789},
		Digest{Round: 1, Hashes: []uint64{0, 0xdeadbeef, 1 << 63, 42}},
		Digest{Round: 2, Hashes: []uint64{7}},
		Differ{Round: 1, Index: []uint16{1, 3}},
		Differ{Round: 9, Index: []uint16{}},
		RepairStart{Round: 1, Index: []uint16{0, 4095}},
		RepairEnd{Round: 1, Count: 12},
	}
}

func encode(m Message) []byte {
	switch m := m.(type) {
	case Hello:
		return AppendHello(nil, m)
	case BulkStart:
		return AppendBulkStart(nil, m)
	case Batch:
		return AppendBatch(nil, m)
	case BulkEnd:
		return AppendBulkEnd(nil, m)
	case Ack:
		return AppendAck(nil, m)
	case Heartbeat:
		return AppendHeartbeat(nil, m)
	case Resync:
		return AppendResync(nil, m)
	case ExpectBatch:
		return AppendExpectBatch(nil, m)
	case Digest:
		return AppendDigest(nil, m)
	case Differ:
		return AppendDiffer(nil, m)
	case RepairStart:
		return AppendRepairStart(nil, m)
	case RepairEnd:
		return AppendRepairEnd(nil, m)
	}
	panic("unknown message")
}

func TestRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		t.Run(m.Type().String(), func(t *testing.T) {
			b := encode(m)
			got, err := Decode(b, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(m, got, cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
			// Every strict prefix is refused.
			for i := range len(b) - 1 {
				if _, err := Decode(b[:i], nil); err == nil {
					t.Fatalf("prefix of %d bytes accepted", i)
				}
			}
			if _, err := Decode(append(b, 0), nil); err == nil {
				t.Fatal("trailing byte accepted")
			}
		})
	}
}

func TestCompact(t *testing.T) {
	c := sampleChanges()[0]
	if n := len(AppendChange(nil, &c)); n > 32 {
		t.Errorf("IPv4 TCP upsert is %d bytes, want <= 32", n)
	}
}

func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"unknown type", []byte{99}, ErrMalformed},
		{"zero nonce", append([]byte(nil), byte(THello), Version, helloNonce, 1, 'x', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), ErrMalformed},
		{"short nonce", []byte{byte(THello), Version, helloNonce, 1, 'x', 1, 2, 3}, ErrTruncated},
		{"unknown hello flag", []byte{byte(THello), Version, 4, 1, 'x'}, ErrMalformed},
		{"hello version 0", AppendHello(nil, Hello{Version: 0, NodeID: "x"}), ErrVersion},
		{"huge batch count", []byte{byte(TBatch), 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff}, ErrMalformed},
		{"bad op", append([]byte{byte(TBatch), 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1}, make([]byte, 14)...), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(tc.b, nil); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func genSession(t *rapid.T) session.Session {
	v6 := rapid.Bool().Draw(t, "v6")
	proto := rapid.SampledFrom([]uint8{session.ProtoTCP, session.ProtoUDP, session.ProtoICMP, session.ProtoICMPv6, session.ProtoGRE, 50}).Draw(t, "proto")
	a := func(name string) [16]byte {
		b := rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, name)
		var x [16]byte
		copy(x[:], b)
		if !v6 {
			x = [16]byte{10: 0xff, 11: 0xff, 12: b[0], 13: b[1], 14: b[2], 15: b[3]}
		}
		return x
	}
	tup := func(p string) session.Tuple {
		return session.Tuple{Src: a(p + "src"), Dst: a(p + "dst"), SrcPort: rapid.Uint16().Draw(t, p+"sp"), DstPort: rapid.Uint16().Draw(t, p+"dp")}
	}
	s := session.Session{Key: session.Key{Family: session.FamilyIPv4, Proto: proto, Orig: tup("o")}}
	if v6 {
		s.Family = session.FamilyIPv6
	}
	s.Zone = rapid.SampledFrom([]uint16{0, 1, 65535}).Draw(t, "zone")
	s.Reply = s.Orig.Invert(proto)
	if rapid.Bool().Draw(t, "nat") {
		s.Reply = tup("r")
	}
	s.Status = rapid.Uint32().Draw(t, "status")
	s.Timeout = rapid.Uint32().Draw(t, "timeout")
	s.Mark = rapid.SampledFrom([]uint32{0, 1, 0xffffffff}).Draw(t, "mark")
	if rapid.Bool().Draw(t, "labels") {
		s.Labels[rapid.IntRange(0, 15).Draw(t, "lb")] = rapid.Byte().Draw(t, "lv")
	}
	if proto == session.ProtoTCP {
		b := rapid.SliceOfN(rapid.Byte(), 5, 5).Draw(t, "tcp")
		s.TCP = session.TCPInfo{State: b[0], WScaleOrig: b[1], WScaleReply: b[2], FlagsOrig: b[3], FlagsReply: b[4]}
	}
	return s
}

func TestBatchProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 20).Draw(t, "n")
		var cs []session.Change
		for range n {
			s := genSession(t)
			if rapid.Bool().Draw(t, "delete") {
				cs = append(cs, session.Change{Op: session.Delete, Session: session.Session{Key: s.Key}})
			} else {
				cs = append(cs, session.Change{Op: session.Upsert, Session: s})
			}
		}
		want := Batch{Seq: rapid.Uint64().Draw(t, "seq"), Changes: cs}
		b := AppendBatch(nil, want)
		got, err := Decode(b, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(Message(want), got, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("(-want +got):\n%s", d)
		}
	})
}

func BenchmarkEncodeBatch(b *testing.B) {
	cs := benchChanges(1000)
	var buf []byte
	for b.Loop() {
		buf = AppendBatch(buf[:0], Batch{Seq: 1, Changes: cs})
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(len(cs))*float64(b.N)/b.Elapsed().Seconds(), "changes/s")
}

func BenchmarkDecodeBatch(b *testing.B) {
	cs := benchChanges(1000)
	buf := AppendBatch(nil, Batch{Seq: 1, Changes: cs})
	scratch := make([]session.Change, 0, len(cs))
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		m, err := Decode(buf, scratch)
		if err != nil {
			b.Fatal(err)
		}
		scratch = m.(Batch).Changes
	}
	b.ReportMetric(float64(len(cs))*float64(b.N)/b.Elapsed().Seconds(), "changes/s")
}

// benchChanges returns n IPv4 TCP upserts, one in ten SNATed.
func benchChanges(n int) []session.Change {
	cs := make([]session.Change, n)
	base := sampleChanges()
	for i := range cs {
		c := base[i%2]
		c.Session.Orig.SrcPort = uint16(i)
		if i%10 != 0 {
			c = base[0]
			c.Session.Orig.SrcPort = uint16(i)
			c.Session.Reply = c.Session.Orig.Invert(c.Session.Proto)
		}
		cs[i] = c
	}
	return cs
}

// deletesBatch encodes a batch of n deletes of IPv4 keys, the smallest
// change there is.
func deletesBatch(n int) []byte {
	var w BatchWriter
	w.Reset(nil)
	for i := range n {
		c := session.Change{Op: session.Delete, Session: session.Session{Key: session.Key{Family: session.FamilyIPv4, Proto: session.ProtoTCP,
			Orig: session.Tuple{Src: addr("192.0.2.1"), Dst: addr("198.51.100.2"), SrcPort: uint16(i), DstPort: uint16(i >> 16)}}}}
		w.Add(&c)
	}
	return w.Finish(1)
}

// A batch of tiny deletes decodes to about 9 times its size; past
// MaxBatchChanges it is refused before anything is allocated, so that a
// frame of a few MiB cannot cost tens of MiB once decoded.
func TestDecodeBatchBounded(t *testing.T) {
	if _, err := Decode(deletesBatch(MaxBatchChanges), nil); err != nil {
		t.Fatalf("a batch of MaxBatchChanges: %v", err)
	}
	big := deletesBatch(4 * MaxBatchChanges) // 1.8 MiB on the wire
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Decode(big, nil)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("a batch of %d changes: %v, want ErrMalformed", 4*MaxBatchChanges, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("decoding a %d KiB batch allocated %d KiB", len(big)>>10, alloc>>10)
	}
}
