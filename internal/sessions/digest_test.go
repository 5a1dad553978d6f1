package sessions

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/hagate/hagate/internal/sessions/session"
)

// digestSessions returns n sessions of both families.
func digestSessions(r *rand.Rand, n int) []session.Session {
	out := make([]session.Session, n)
	for i := range out {
		out[i] = randSession(r, i)
		if i%7 == 0 {
			s := &out[i]
			s.Family = session.FamilyIPv6
			s.Orig.Src = netip.MustParseAddr("2001:db8::1").As16()
			s.Orig.Src[15] = byte(i)
			s.Orig.Dst = netip.MustParseAddr("2001:db8:1::1").As16()
			s.Reply = s.Orig.Invert(s.Proto)
		}
	}
	return out
}

// TestDigestIndependentOfOrder: two tables holding the same synced sessions,
// filled in different orders and through different histories (sessions
// added, removed and added again, unsynced ones promoted), have equal
// digests; one session more or less changes exactly its range.
func TestDigestIndependentOfOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	all := digestSessions(r, 5000)
	a, b := newTable(0), newTable(0)
	for i := range all {
		a.put(&all[i], entry{synced: true})
	}
	perm := r.Perm(len(all))
	for _, i := range perm {
		b.put(&all[i], entry{synced: i%3 != 0}) // some pending first
	}
	for _, i := range perm[:1000] {
		b.del(all[i].Key)
	}
	for _, i := range perm {
		_, m, ok := b.get(all[i].Key)
		if !ok {
			b.put(&all[i], entry{synced: true})
		} else if !m.synced {
			m.synced = true
			b.setMeta(all[i].Key, m)
		} else {
			b.put(&all[i], entry{synced: true}) // an update: no change
		}
	}
	if d := a.dig.differ(b.dig[:]); len(d) != 0 {
		t.Fatalf("equal tables, %d ranges differ: %v", len(d), d)
	}
	// From scratch, the digest is the XOR of every session's hash.
	var want digest
	for i := range all {
		want.flip(&all[i].Key)
	}
	if want != a.dig {
		t.Fatal("incremental digest differs from the one computed from scratch")
	}
	gone := all[42].Key
	b.del(gone)
	d := a.dig.differ(b.dig[:])
	if len(d) != 1 || int(d[0]) != rangeOf(&gone) {
		t.Fatalf("one session removed: ranges %v differ, want [%d]", d, rangeOf(&gone))
	}
	// An unsynced session does not count.
	extra := randSession(r, 99999)
	a.put(&extra, entry{})
	if d := a.dig.differ(want[:]); len(d) != 0 {
		t.Fatalf("a pending session changed ranges %v", d)
	}
}

// TestDigestSpreadsKeys: sessions that differ only in port land in many
// ranges (one range per source would repair whole clients at once).
func TestDigestSpreadsKeys(t *testing.T) {
	seen := map[int]bool{}
	for i := range 4096 {
		s := synthSession(i * 250) // same addresses, ports apart
		seen[rangeOf(&s.Key)] = true
	}
	if len(seen) < digestRanges*9/10 {
		t.Fatalf("4096 keys fell into %d of %d ranges", len(seen), digestRanges)
	}
}
