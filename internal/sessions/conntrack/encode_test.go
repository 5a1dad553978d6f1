package conntrack

import (
	"testing"

	"github.com/hagate/hagate/internal/sessions/session"
)

// BenchmarkEncodeCreate measures the encoding of one create request, the
// userspace hot path of a bulk install (a tenth of the entries NATed, as in
// synthetic). It must not allocate once the buffer has grown.
func BenchmarkEncodeCreate(b *testing.B) {
	ss := synthetic(1024)
	var w builder
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%256 == 0 {
			w.reset()
		}
		w.create(&ss[i%len(ss)], uint32(i), 0)
	}
	b.SetBytes(int64(len(w.b) / max(w.msgs, 1)))
}

// BenchmarkEncodeUpdate is BenchmarkEncodeCreate for updates.
func BenchmarkEncodeUpdate(b *testing.B) {
	ss := synthetic(1024)
	var w builder
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%256 == 0 {
			w.reset()
		}
		w.update(&ss[i%len(ss)], uint32(i), 0)
	}
}

// TestEncodeCreateAllocs: encoding into a grown buffer allocates nothing.
func TestEncodeCreateAllocs(t *testing.T) {
	ss := synthetic(16)
	var w builder
	for i := range ss {
		w.create(&ss[i], uint32(i), 0)
	}
	allocs := testing.AllocsPerRun(100, func() {
		w.reset()
		for i := range ss {
			w.create(&ss[i], uint32(i), 0)
			w.del(&ss[i].Key, uint32(i), 0)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per batch of %d creates", allocs, len(ss))
	}
	var _ = session.Session{}
}
