package heartbeat

import (
	"cmp"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Why a member is "not heard" is almost always one of a few mistakes: a
// wrong key, a group id that differs, a duplicate node id, clocks apart.
// Every dropped frame's reason is known here, so the transport keeps, per
// source address, the last reasons, logs each (source, reason) at most once
// a minute, and hands the summary to `hagate status`.

const (
	// maxDropSources bounds the addresses, other than the configured
	// peers, whose drops are kept apart; the rest are summed under
	// OtherSource. Anyone on the HA segment can send from many addresses:
	// the bound keeps memory and metric labels small, and a flood from
	// strangers cannot push a configured peer's reasons out.
	maxDropSources = 64
	// OtherSource names the drops from sources beyond maxDropSources.
	OtherSource = "other"
	// dropLogEvery is how often one (source, reason) is logged at most.
	dropLogEvery = time.Minute
)

// DropSummary is what the transport dropped from one source for one reason.
type DropSummary struct {
	Source string    `json:"source"` // the sender's address, or OtherSource
	Link   string    `json:"link"`   // the link of the last drop
	Reason string    `json:"reason"` // the short label of seal.DropError and the metrics
	Hint   string    `json:"hint"`   // what it means to a person, e.g. "unknown key id (wrong key?)"
	Detail string    `json:"detail"` // the last drop's detail
	Count  uint64    `json:"count"`
	Last   time.Time `json:"last"`
}

// String reads "198.51.100.4: 1204 frames dropped: unknown key id (wrong key?)".
func (d DropSummary) String() string {
	return d.Source + ": " + plural(d.Count, "frame") + " dropped: " + d.Hint
}

func plural(n uint64, what string) string {
	s := formatCount(n) + " " + what
	if n != 1 {
		s += "s"
	}
	return s
}

// formatCount writes n with thousands separators, as status shows counts.
func formatCount(n uint64) string {
	d := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range d {
		if i > 0 && (len(d)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// hints turns the drop reasons into what to check.
var hints = map[string]string{
	"key":            "unknown key id (wrong key?)",
	"auth":           "authentication failed (wrong key, or altered on the way)",
	"group":          "group mismatch (group_id differs)",
	"mode":           "security mode mismatch (authentication or encryption differ)",
	"purpose":        "not a heartbeat (session-sync traffic on the heartbeat port?)",
	"self":           "frame carries this member's own node id (duplicate node_id?)",
	"stale":          "clock skew (check NTP) or a replayed old frame",
	"epoch":          "boot id later than its send time (forged, or clock far off)",
	"replay":         "replay (a copy of a frame already received)",
	"early":          "sent before this member started, without echoing it (a capture?)",
	"unknown-source": "source is not a peer configured on this link",
	"wrong-address":  "member's frame from another peer's address (relayed?)",
	"wrong-link":     "frame of another heartbeat link (links cross-connected, or relayed?)",
	"node-id":        "invalid node id (not letters, digits, '.', '_', '-')",
	"malformed":      "malformed frame (another program on the port, or another version?)",
	"short":          "malformed frame (truncated)",
	"magic":          "not a hagate frame (another program on the port?)",
	"version":        "unknown frame version (a newer hagate?)",
	"oversize":       "frame too large for a heartbeat",
	"queue-full":     "receive queue full (daemon overloaded)",
}

func hint(reason string) string {
	if h, ok := hints[reason]; ok {
		return h
	}
	return reason
}

type dropKey struct{ source, reason string }

// dropBook holds the drop summaries. Guarded by Transport.dropMu.
type dropBook struct {
	sources map[string]bool // strangers kept apart, at most maxDropSources
	byKey   map[dropKey]*dropRecord
}

type dropRecord struct {
	DropSummary
	logged   time.Time // when last logged
	unlogged uint64    // drops since
}

// sourceLabel returns the name drops from src are counted under: its
// address if it is a configured peer or one of the first strangers.
func (b *dropBook) sourceLabel(src netip.Addr, peer bool) string {
	s := src.String()
	if !src.IsValid() {
		return OtherSource
	}
	if peer || b.sources[s] {
		return s
	}
	if len(b.sources) >= maxDropSources {
		return OtherSource
	}
	b.sources[s] = true
	return s
}

// noteDrop records one dropped frame, logs it if its (source, reason) was
// not logged in the last minute, and returns the source label for metrics.
func (t *Transport) noteDrop(l *linkConn, src netip.Addr, reason, detail string, now time.Time) string {
	link := l.Interface
	t.dropMu.Lock()
	if t.drops.byKey == nil {
		t.drops = dropBook{sources: map[string]bool{}, byKey: map[dropKey]*dropRecord{}}
	}
	label := t.drops.sourceLabel(src, l.peers[src])
	k := dropKey{label, reason}
	r := t.drops.byKey[k]
	if r == nil {
		r = &dropRecord{DropSummary: DropSummary{Source: label, Reason: reason, Hint: hint(reason)}}
		t.drops.byKey[k] = r
	}
	r.Link, r.Detail, r.Last = link, detail, now
	r.Count++
	r.unlogged++
	var logNow bool
	var n uint64
	if now.Sub(r.logged) >= dropLogEvery {
		logNow, n = true, r.unlogged
		r.logged, r.unlogged = now, 0
	}
	t.dropMu.Unlock()
	if logNow && t.log != nil {
		t.log.Warn("heartbeat dropped: "+hint(reason), "source", label, "link", link, "reason", reason,
			"detail", detail, "dropped", n, "next_log_in", dropLogEvery)
	}
	return label
}

// DropReasons returns what the transport dropped, per source and reason,
// sources in address order and the most frequent reason first, for
// `hagate status` to say why a member is not heard.
func (t *Transport) DropReasons() []DropSummary {
	t.dropMu.Lock()
	out := make([]DropSummary, 0, len(t.drops.byKey))
	for _, r := range t.drops.byKey {
		out = append(out, r.DropSummary)
	}
	t.dropMu.Unlock()
	slices.SortFunc(out, func(a, b DropSummary) int {
		if c := compareSource(a.Source, b.Source); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	return out
}

func compareSource(a, b string) int {
	pa, ea := netip.ParseAddr(a)
	pb, eb := netip.ParseAddr(b)
	switch {
	case ea == nil && eb == nil:
		return pa.Compare(pb)
	case ea == nil:
		return -1 // addresses before "other"
	case eb == nil:
		return 1
	}
	return strings.Compare(a, b)
}

// Options tune the transport beyond what Open needs.
type Options struct {
	// DeadInterval is heartbeat interval x lost_threshold: how long a
	// member's boot, link binding or address must be silent before another
	// may take its place. Zero keeps DefaultDeadInterval.
	DeadInterval time.Duration
	// Log receives one line per (source, reason) of dropped frames a
	// minute. Nil: no log.
	Log *slog.Logger
}

// DefaultDeadInterval is the dead interval of the default heartbeat
// settings (200 ms x 6).
const DefaultDeadInterval = 1200 * time.Millisecond

// Configure applies o; call it before Run.
func (t *Transport) Configure(o Options) {
	t.log = o.Log
	t.dead = o.DeadInterval
	if t.opener != nil && o.DeadInterval > 0 {
		t.opener.SetRebootSilence(o.DeadInterval)
	}
}

func (t *Transport) deadInterval() time.Duration {
	if t.dead > 0 {
		return t.dead
	}
	return DefaultDeadInterval
}
