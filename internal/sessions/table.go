package sessions

import (
	"iter"
	"math"
	"os"
	"runtime/debug"

	"github.com/hagate/hagate/internal/sessions/session"
)

// entry is the table's view of one session's metadata besides its key, as
// get and iteration return it and put and setMeta take it. The table does
// not store it as it is: see rec.
type entry struct {
	reply   session.Tuple
	status  uint32
	timeout uint32
	mark    uint32
	tcp     session.TCPInfo
	labels  bool
	helper  bool
	synced  bool   // primary: sent to subordinates (older than delay)
	mark2   uint32 // Engine.gen when last seen: primary dump round, subordinate bulk
	first   uint32 // primary: first seen, seconds since the engine started
	expires uint32 // primary: when the subordinates' copy times out, same clock
}

// The table stores an entry compactly, because its size is the daemon's
// memory per session (the bound is 200 bytes of resident memory, garbage
// collector headroom included):
//
//   - IPv4 sessions, nearly all of them, live in maps of their own whose
//     keys hold 4-byte addresses: 16 bytes instead of session.Key's 40.
//   - The reply tuple is not stored when it is the original one inverted
//     (no NAT); with source or destination NAT only the translated address
//     and port are (the rest is the inverse). Other replies (both ends
//     translated, or an IPv4 key with a non-IPv4 reply) go to a side map.
//   - Labels and helper names, rare, live in side maps too.
//
// An IPv4 session costs 52 bytes of map slot (key4 16 + val4 36) against 112
// for session.Key and entry; with the maps' free slots (see shards) about 95
// bytes of heap, against 147 (100k) to 235 (1M) before. Everything stored is
// pointer-free, so the garbage collector never scans the table.

// key4 is the key of an IPv4 session. It has no padding, so the map hashes
// and compares it as 16 bytes of memory.
type key4 struct {
	proto        uint8
	pad          uint8 // always zero
	zone         uint16
	src, dst     [4]byte
	sport, dport uint16
}

// rec is the stored metadata, shared by both maps. natPort belongs to
// val4's nat, placed here to fill rec's padding.
type rec struct {
	tcp     session.TCPInfo
	flags   uint8
	natPort uint16
	status  uint32
	timeout uint32
	mark    uint32
	mark2   uint32
	first   uint32
	expires uint32
}

// val4 is what the IPv4 map holds: the translated address of a NATed
// reply (rec.flags says which end) and the metadata. 36 bytes.
type val4 struct {
	nat [4]byte
	r   rec
}

// val6 is what the map of other sessions holds: the whole reply tuple.
type val6 struct {
	reply session.Tuple
	r     rec
}

// rec.flags bits.
const (
	flagLabels uint8 = 1 << iota
	flagSynced
	flagHelper
	// The reply's form (IPv4 map only). Neither bit: the inverse of the
	// original with the destination replaced by val4.nat:rec.natPort
	// (source NAT, or none when that is the original's source). DNAT: the
	// inverse with the source replaced. Other: in the side map.
	flagReplyDNAT
	flagReplyOther
)

// table holds sessions by key. Not safe for concurrent use.
type table struct {
	m4      [shards]map[key4]val4 // IPv4 sessions, by shardOf
	n4      int
	m6      map[session.Key]val6 // IPv6, and IPv4 keys not in IPv4-mapped form
	labels  map[session.Key][16]byte
	helpers map[session.Key]session.Name
	odd     map[session.Key]session.Tuple // IPv4 replies of flagReplyOther
	max     int
	dig     digest // of the synced sessions (digest.go)
}

func newTable(max int) *table {
	t := &table{m6: map[session.Key]val6{}, labels: map[session.Key][16]byte{},
		helpers: map[session.Key]session.Name{}, odd: map[session.Key]session.Tuple{}, max: max}
	for i := range t.m4 {
		t.m4[i] = map[key4]val4{}
	}
	return t
}

func (t *table) len() int { return t.n4 + len(t.m6) }

// The IPv4 sessions are spread over several maps of unequal shares, so
// that the map's growth does not make the memory per session swing by a
// factor of two with the table's size. A Go map holds its entries in
// tables of 1024 slots that split in two when 7/8 full; with a uniform
// hash they all split at about the same size, so the slots in use go from
// 7/8 down to 7/16 each time the session count doubles (about 60 and 120
// bytes per IPv4 session). Maps whose shares step by 2^(1/shards) split at
// sizes spread evenly over each doubling: the average, about 0.6 of the
// slots in use (about 95 bytes per session measured), whatever the count.
const shards = 8

// shardOfByte maps the top byte of a key's hash to its shard: shard i
// gets a share of the 256 values proportional to 2^(i/shards).
var shardOfByte = func() (t [256]uint8) {
	var w [shards]float64
	total := 0.0
	for i := range w {
		w[i] = math.Exp2(float64(i) / shards)
		total += w[i]
	}
	acc, i := 0.0, 0
	for b := range t {
		for i < shards-1 && float64(b)+0.5 >= 256*(acc+w[i]/total) {
			acc += w[i] / total
			i++
		}
		t[b] = uint8(i)
	}
	return t
}()

// shardOf picks k's map by a hash of its own (independent of the maps'
// seeded hash).
func shardOf(k *key4) int {
	a := uint64(k.proto) | uint64(k.zone)<<16 | uint64(k.src[0])<<24 | uint64(k.src[1])<<32 | uint64(k.src[2])<<40 | uint64(k.src[3])<<48
	b := uint64(k.dst[0]) | uint64(k.dst[1])<<8 | uint64(k.dst[2])<<16 | uint64(k.dst[3])<<24 | uint64(k.sport)<<32 | uint64(k.dport)<<48
	h := (a ^ b*0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
	h ^= h >> 29
	h *= 0x94d049bb133111eb
	return int(shardOfByte[h>>56])
}

var v4Prefix = [12]byte{10: 0xff, 11: 0xff}

func isV4(a *[16]byte) bool { return [12]byte(a[:12]) == v4Prefix }

func from4(a [4]byte) [16]byte {
	return [16]byte{10: 0xff, 11: 0xff, 12: a[0], 13: a[1], 14: a[2], 15: a[3]}
}

// compact returns k's IPv4 form, or false if k belongs in m6.
func compact(k *session.Key) (key4, bool) {
	if k.Family != session.FamilyIPv4 || !isV4(&k.Orig.Src) || !isV4(&k.Orig.Dst) {
		return key4{}, false
	}
	return key4{proto: k.Proto, zone: k.Zone, src: [4]byte(k.Orig.Src[12:]), dst: [4]byte(k.Orig.Dst[12:]),
		sport: k.Orig.SrcPort, dport: k.Orig.DstPort}, true
}

func (k4 *key4) key() session.Key {
	return session.Key{Family: session.FamilyIPv4, Proto: k4.proto, Zone: k4.zone,
		Orig: session.Tuple{Src: from4(k4.src), Dst: from4(k4.dst), SrcPort: k4.sport, DstPort: k4.dport}}
}

// has reports whether k is in the table.
func (t *table) has(k session.Key) bool {
	if k4, ok := compact(&k); ok {
		_, ok = t.m4[shardOf(&k4)][k4]
		return ok
	}
	_, ok := t.m6[k]
	return ok
}

// get returns the session and its metadata.
func (t *table) get(k session.Key) (session.Session, entry, bool) {
	var e entry
	if k4, ok := compact(&k); ok {
		v, ok := t.m4[shardOf(&k4)][k4]
		if !ok {
			return session.Session{}, e, false
		}
		t.expand4(&k, &v, &e)
	} else {
		v, ok := t.m6[k]
		if !ok {
			return session.Session{}, e, false
		}
		expand(&v.r, &e)
		e.reply = v.reply
	}
	return t.session(k, &e), e, true
}

func (t *table) session(k session.Key, e *entry) session.Session {
	s := session.Session{Key: k, Reply: e.reply, Status: e.status, Timeout: e.timeout, Mark: e.mark, TCP: e.tcp}
	if e.labels {
		s.Labels = t.labels[k]
	}
	if e.helper {
		s.Helper = t.helpers[k]
	}
	return s
}

func expand(r *rec, e *entry) {
	*e = entry{status: r.status, timeout: r.timeout, mark: r.mark, tcp: r.tcp, labels: r.flags&flagLabels != 0,
		helper: r.flags&flagHelper != 0, synced: r.flags&flagSynced != 0, mark2: r.mark2, first: r.first, expires: r.expires}
}

func (t *table) expand4(k *session.Key, v *val4, e *entry) {
	expand(&v.r, e)
	switch {
	case v.r.flags&(flagReplyDNAT|flagReplyOther) == 0:
		// The inverse's source is the original's destination, with its
		// port (the ICMP identifier for ICMP).
		sport := k.Orig.DstPort
		if session.IsICMP(k.Proto) {
			sport = k.Orig.SrcPort
		}
		e.reply = session.Tuple{Src: k.Orig.Dst, SrcPort: sport, Dst: from4(v.nat), DstPort: v.r.natPort}
	case v.r.flags&flagReplyOther == 0:
		e.reply = k.Orig.Invert(k.Proto)
		e.reply.Src, e.reply.SrcPort = from4(v.nat), v.r.natPort
	default:
		e.reply = t.odd[*k]
	}
}

func shrink(e *entry) rec {
	r := rec{tcp: e.tcp, status: e.status, timeout: e.timeout, mark: e.mark, mark2: e.mark2, first: e.first, expires: e.expires}
	if e.labels {
		r.flags |= flagLabels
	}
	if e.helper {
		r.flags |= flagHelper
	}
	if e.synced {
		r.flags |= flagSynced
	}
	return r
}

// store writes e under k, which is in the table or has room.
func (t *table) store(k *session.Key, e *entry) {
	r := shrink(e)
	k4, ok := compact(k)
	if !ok {
		old, had := t.m6[*k]
		t.m6[*k] = val6{reply: e.reply, r: r}
		t.dig.update(k, had && old.r.flags&flagSynced != 0, e.synced)
		return
	}
	v := val4{r: r}
	o, rp := &k.Orig, &e.reply
	// The inverse of the original: source o.Dst:isport, destination
	// o.Src:idport (ICMP keeps the identifier and inverts the type).
	isport, idport := o.DstPort, o.SrcPort
	if session.IsICMP(k.Proto) {
		inv := o.Invert(k.Proto)
		isport, idport = inv.SrcPort, inv.DstPort
	}
	switch {
	case rp.Src == o.Dst && rp.SrcPort == isport && isV4(&rp.Dst):
		v.nat, v.r.natPort = [4]byte(rp.Dst[12:]), rp.DstPort
	case rp.Dst == o.Src && rp.DstPort == idport && isV4(&rp.Src):
		v.r.flags |= flagReplyDNAT
		v.nat, v.r.natPort = [4]byte(rp.Src[12:]), rp.SrcPort
	default:
		v.r.flags |= flagReplyOther
	}
	if v.r.flags&flagReplyOther != 0 {
		t.odd[*k] = e.reply
	} else if len(t.odd) > 0 {
		delete(t.odd, *k)
	}
	m := t.m4[shardOf(&k4)]
	old, had := m[k4]
	m[k4] = v
	if !had {
		t.n4++
	}
	t.dig.update(k, had && old.r.flags&flagSynced != 0, e.synced)
}

// put stores s with metadata e (whose session fields it overwrites). It
// returns false, storing nothing, when the table is full and s is new.
func (t *table) put(s *session.Session, e entry) bool {
	if t.max > 0 && t.len() >= t.max && !t.has(s.Key) {
		return false
	}
	e.reply, e.status, e.timeout, e.mark, e.tcp = s.Reply, s.Status, s.Timeout, s.Mark, s.TCP
	e.labels = s.Labels != ([16]byte{})
	if e.labels {
		t.labels[s.Key] = s.Labels
	} else if len(t.labels) > 0 {
		delete(t.labels, s.Key)
	}
	e.helper = !s.Helper.IsZero()
	if e.helper {
		t.helpers[s.Key] = s.Helper
	} else if len(t.helpers) > 0 {
		delete(t.helpers, s.Key)
	}
	t.store(&s.Key, &e)
	return true
}

// setMeta replaces the metadata of an existing entry.
func (t *table) setMeta(k session.Key, e entry) { t.store(&k, &e) }

func (t *table) del(k session.Key) {
	var old rec
	var had bool
	if k4, ok := compact(&k); ok {
		m := t.m4[shardOf(&k4)]
		var v val4
		if v, had = m[k4]; had {
			delete(m, k4)
			t.n4--
			old = v.r
		}
	} else {
		var v val6
		if v, had = t.m6[k]; had {
			delete(t.m6, k)
			old = v.r
		}
	}
	t.dig.update(&k, had && old.flags&flagSynced != 0, false)
	if len(t.labels) > 0 {
		delete(t.labels, k)
	}
	if len(t.helpers) > 0 {
		delete(t.helpers, k)
	}
	if len(t.odd) > 0 {
		delete(t.odd, k)
	}
}

// all iterates over the sessions' keys and metadata, in no particular
// order. Deleting the current entry during the iteration is allowed, as
// with a map.
func (t *table) all() iter.Seq2[session.Key, entry] {
	return func(yield func(session.Key, entry) bool) {
		var e entry
		for _, m := range t.m4 {
			for k4, v := range m {
				k := k4.key()
				t.expand4(&k, &v, &e)
				if !yield(k, e) {
					return
				}
			}
		}
		for k, v := range t.m6 {
			expand(&v.r, &e)
			e.reply = v.reply
			if !yield(k, e) {
				return
			}
		}
	}
}

// recs yields the protocol and the stored metadata of every session
// without building its key and reply, for a pass over the table that needs
// no more (the bulk's ranks): building them is most of all's cost.
func (t *table) recs() iter.Seq2[uint8, *rec] {
	return func(yield func(uint8, *rec) bool) {
		for _, m := range t.m4 {
			for k4, v := range m {
				if !yield(k4.proto, &v.r) {
					return
				}
			}
		}
		for k, v := range t.m6 {
			if !yield(k.Proto, &v.r) {
				return
			}
		}
	}
}

// sameState reports whether s equals the stored session in what the kernel
// would install (everything but the timeout).
func sameState(s *session.Session, e *entry, labels [16]byte) bool {
	return s.Reply == e.reply && s.Status == e.status && s.Mark == e.mark && s.TCP == e.tcp && s.Labels == labels
}

// GCPercent is the garbage collector's GOGC for a process that holds the
// table: see TuneGC.
const GCPercent = 25

// TuneGC sets the garbage collector for a daemon that holds the session
// table, unless the GOGC environment variable chooses. The Go default
// (GOGC=100) lets the heap grow to twice the live data before collecting,
// and resident memory follows the heap's high-water mark: with a million
// sessions that headroom alone would cost the table's size again. The
// table is pointer-free, so a collection never scans it and costs about
// the same whatever its size: collecting at 25% growth is cheap. GOMEMLIMIT
// (the runtime's soft memory limit) is honoured as usual.
func TuneGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(GCPercent)
	}
}
