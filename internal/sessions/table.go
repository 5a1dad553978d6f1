package sessions

import (
	"github.com/hagate/hagate/internal/sessions/session"
)

// entry is what the table keeps per session besides its key: a fixed-size,
// pointer-free value, so a million entries cost the garbage collector
// nothing to scan. Labels are rare and live in a side map.
type entry struct {
	reply   session.Tuple
	status  uint32
	timeout uint32
	mark    uint32
	tcp     session.TCPInfo
	labels  bool
	synced  bool   // primary: sent to subordinates (older than delay)
	mark2   uint32 // Engine.gen when last seen: primary dump round, subordinate bulk
	first   uint32 // primary: first seen, seconds since the engine started
	expires uint32 // primary: when the subordinates' copy times out, same clock
}

// table holds sessions by key. Not safe for concurrent use.
type table struct {
	m      map[session.Key]entry
	labels map[session.Key][16]byte
	max    int
}

func newTable(max int) *table {
	return &table{m: map[session.Key]entry{}, labels: map[session.Key][16]byte{}, max: max}
}

func (t *table) len() int { return len(t.m) }

// get returns the session and its metadata.
func (t *table) get(k session.Key) (session.Session, entry, bool) {
	e, ok := t.m[k]
	if !ok {
		return session.Session{}, e, false
	}
	return t.session(k, &e), e, true
}

func (t *table) session(k session.Key, e *entry) session.Session {
	s := session.Session{Key: k, Reply: e.reply, Status: e.status, Timeout: e.timeout, Mark: e.mark, TCP: e.tcp}
	if e.labels {
		s.Labels = t.labels[k]
	}
	return s
}

// put stores s with metadata e (whose session fields it overwrites). It
// returns false, storing nothing, when the table is full and s is new.
func (t *table) put(s *session.Session, e entry) bool {
	if t.max > 0 && len(t.m) >= t.max {
		if _, ok := t.m[s.Key]; !ok {
			return false
		}
	}
	e.reply, e.status, e.timeout, e.mark, e.tcp = s.Reply, s.Status, s.Timeout, s.Mark, s.TCP
	e.labels = s.Labels != ([16]byte{})
	if e.labels {
		t.labels[s.Key] = s.Labels
	} else if len(t.labels) > 0 {
		delete(t.labels, s.Key)
	}
	t.m[s.Key] = e
	return true
}

// setMeta replaces the metadata of an existing entry.
func (t *table) setMeta(k session.Key, e entry) { t.m[k] = e }

func (t *table) del(k session.Key) {
	delete(t.m, k)
	if len(t.labels) > 0 {
		delete(t.labels, k)
	}
}

// sameState reports whether s equals the stored session in what the kernel
// would install (everything but the timeout).
func sameState(s *session.Session, e *entry, labels [16]byte) bool {
	return s.Reply == e.reply && s.Status == e.status && s.Mark == e.mark && s.TCP == e.tcp && s.Labels == labels
}
