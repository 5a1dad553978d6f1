package sessions

import (
	"net/netip"
	"runtime"
	"testing"

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

// TestTableBytesPerSession measures the table's memory per session, the
// figure the issue bounds at 200 bytes.
func TestTableBytesPerSession(t *testing.T) {
	const n = 100_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tb := newTable(0)
	for i := range n {
		s := synthSession(i)
		tb.put(&s, entry{synced: true})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("table: %.0f bytes/session for %d sessions", per, tb.len())
	if per > 400 {
		t.Errorf("%.0f bytes/session: the table has lost its compact layout", per)
	}
	runtime.KeepAlive(tb)
}

func BenchmarkTablePut(b *testing.B) {
	ss := make([]session.Session, 100_000)
	for i := range ss {
		ss[i] = synthSession(i)
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
