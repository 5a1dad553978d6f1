// Package conntrack is session pickup's kernel backend: it dumps, watches and
// writes the Linux connection-tracking table over ctnetlink. Writes are
// batched (many requests per sendmsg, one acknowledgement per batch) and
// spread over several sockets, so a million entries install in seconds
// rather than the ~44 us per entry of one request per round trip.
package conntrack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hagate/hagate/internal/sessions/session"
)

// Options tune the backend. The zero value is ready to use.
type Options struct {
	// NetNSPath, when set, is a network namespace file (/var/run/netns/NAME)
	// whose table the backend works on, instead of the caller's.
	NetNSPath string
	// Workers is the number of sockets writing in parallel (default 1).
	// The kernel runs every ctnetlink create and update under one mutex,
	// shared by all network namespaces, so a second socket mostly spins on
	// it: a late subordinate's bulk of 100k sessions took 410 ms with one
	// and 486 ms with two, 1M 14.7 s and 15-18 s, with a quarter of the
	// CPU spent in mutex_spin_on_owner (TestNamespacesBulkScale,
	// HAGATE_SCALE_WORKERS).
	Workers int
	// BatchBytes bounds the requests sent in one sendmsg (default 64 KiB).
	BatchBytes int
	// EventBuffer is the receive buffer of the event socket (default 32 MiB).
	EventBuffer int
	// EventQueue is the length of the channel Watch returns (default 4096).
	EventQueue int
	// ReliableEvents asks the kernel to hold the events it could not
	// deliver to Watch's socket (NETLINK_BROADCAST_ERROR, conntrackd's
	// NetlinkEventsReliable): an entry's missed events ride with its next
	// one, and a destroy event is delivered again until the socket takes
	// it. The overflow is still reported (NETLINK_NO_ENOBUFS stays off),
	// so a dump repairs the rest.
	ReliableEvents bool
}

// Kernel is the ctnetlink backend. Safe for concurrent use.
type Kernel struct {
	opts Options
	nsf  *os.File // nil: the caller's namespace

	mu     sync.Mutex
	idle   []*socket // writing sockets not in use
	closed bool

	// counters
	created, updated, deleted, failed atomic.Uint64
}

// Open prepares a backend. It checks that ctnetlink answers.
func Open(opts Options) (*Kernel, error) {
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 64 << 10
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = 32 << 20
	}
	if opts.EventQueue <= 0 {
		opts.EventQueue = 4096
	}
	k := &Kernel{opts: opts}
	if opts.NetNSPath != "" {
		f, err := os.Open(opts.NetNSPath)
		if err != nil {
			return nil, fmt.Errorf("conntrack: %w", err)
		}
		k.nsf = f
	}
	s, err := k.open(0, 8<<20)
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("conntrack: %w", err)
	}
	k.idle = append(k.idle, s)
	return k, nil
}

func (k *Kernel) nsfd() int {
	if k.nsf == nil {
		return -1
	}
	return int(k.nsf.Fd())
}

func (k *Kernel) open(groups uint32, rcvbuf int) (*socket, error) {
	var s *socket
	err := inNetNS(k.nsfd(), func() error {
		var err error
		s, err = openSocket(groups, rcvbuf, 4<<20)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Errors need not echo our requests back; sequence numbers identify them.
	_ = s.rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	})
	return s, nil
}

// get returns an idle writing socket or opens one.
func (k *Kernel) get() (*socket, error) {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil, errors.New("conntrack: closed")
	}
	if n := len(k.idle); n > 0 {
		s := k.idle[n-1]
		k.idle = k.idle[:n-1]
		k.mu.Unlock()
		return s, nil
	}
	k.mu.Unlock()
	return k.open(0, 8<<20)
}

// put returns a healthy socket to the pool; a socket that saw an error is
// closed instead, so stale replies never reach the next caller.
func (k *Kernel) put(s *socket, healthy bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !healthy || k.closed || len(k.idle) >= k.opts.Workers {
		s.Close()
		return
	}
	k.idle = append(k.idle, s)
}

// Close releases the sockets. Watch streams end with their contexts.
func (k *Kernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	for _, s := range k.idle {
		s.Close()
	}
	k.idle = nil
	if k.nsf != nil {
		k.nsf.Close()
	}
	return nil
}

// Counters returns how many entries were created, updated and deleted, and
// how many changes failed, since Open.
func (k *Kernel) Counters() (created, updated, deleted, failed uint64) {
	return k.created.Load(), k.updated.Load(), k.deleted.Load(), k.failed.Load()
}

// Dump calls fn for every entry of the table, IPv4 and IPv6, as the kernel
// streams them. Entries that change during the dump may be missed or seen
// twice; callers that watch events first lose nothing.
func (k *Kernel) Dump(ctx context.Context, fn func(session.Session) error) error {
	req := func(w *builder, seq uint32) { w.end(w.begin(msgCTGet, nlmDumpFlg, seq, unix.AF_UNSPEC)) }
	return dump(ctx, k, "conntrack dump", 8<<20, subsysCT, req, parseFlow, fn)
}

// getBatch bounds the lookups sent at once, so that their answers (a few
// hundred bytes each) fit the socket's receive buffer many times over.
const getBatch = 256

// Lookup looks entries up by key and calls fn for each one the table
// holds; keys it does not hold are skipped. It costs the kernel a lookup per
// key, where a dump costs it a walk of the whole table.
func (k *Kernel) Lookup(ctx context.Context, keys []session.Key, fn func(session.Session) error) error {
	s, err := k.get()
	if err != nil {
		return fmt.Errorf("conntrack lookup: %w", err)
	}
	healthy := false
	defer func() { k.put(s, healthy) }()
	var w builder
	for len(keys) > 0 {
		part := keys[:min(len(keys), getBatch)]
		keys = keys[len(part):]
		w.b = w.b[:0]
		first := s.nextSeq()
		seq := first
		for i := range part {
			if i > 0 {
				seq = s.nextSeq()
			}
			flags := uint16(0)
			if i == len(part)-1 {
				flags = nlmAck // the last answer ends the batch: an entry then an ack, or an error
			}
			w.get(&part[i], seq, flags)
		}
		if err := k.lookupBatch(ctx, s, w.b, first, seq, fn); err != nil {
			return fmt.Errorf("conntrack lookup: %w", err)
		}
	}
	healthy = true
	return nil
}

// lookupBatch sends a batch of GET requests numbered first..last and passes the
// entries found to fn until the last request is answered. A missing entry
// (ENOENT) is no error.
func (k *Kernel) lookupBatch(ctx context.Context, s *socket, batch []byte, first, last uint32, fn func(session.Session) error) error {
	return k.roundTrip(ctx, s, batch, first, last, func(m nlmsg) (bool, error) {
		if m.typ == nlmsgError {
			if e := errnoOf(m.data); e != 0 && e != unix.ENOENT {
				return true, e
			}
			return m.seq == last, nil
		}
		if m.typ>>8 != subsysCT {
			return false, nil
		}
		sess, err := parseFlow(m.data)
		if err != nil {
			return true, err
		}
		return false, fn(sess)
	})
}

// ctaStatsGlobalEntries is CTA_STATS_GLOBAL_ENTRIES in the answer to
// IPCTNL_MSG_CT_GET_STATS: the entries of the namespace.
const ctaStatsGlobalEntries = 1

// Count returns how many entries the table holds, from the kernel's count
// (what conntrack -C prints), without walking them.
func (k *Kernel) Count(ctx context.Context) (int, error) {
	s, err := k.get()
	if err != nil {
		return 0, err
	}
	var w builder
	seq := s.nextSeq()
	w.end(w.begin(msgCTStats, 0, seq, unix.AF_UNSPEC))
	n := -1
	var refused syscall.Errno // the kernel's answer, not the socket's failure
	err = k.roundTrip(ctx, s, w.b, seq, seq, func(m nlmsg) (bool, error) {
		if m.typ == nlmsgError {
			refused = errnoOf(m.data)
			return refused != 0, nil
		}
		var family uint8
		return true, parseMsg(m.data, "conntrack stats", &family, func(typ uint16, v []byte) error {
			if typ&nlaTypeMsk == ctaStatsGlobalEntries {
				c, err := be32(v)
				n = int(c)
				return err
			}
			return nil
		})
	})
	k.put(s, err == nil)
	switch {
	case err != nil:
		return 0, fmt.Errorf("conntrack count: %w", err)
	case refused != 0:
		return 0, fmt.Errorf("conntrack count: %w", refused)
	case n < 0:
		return 0, errors.New("conntrack count: no entry count in the answer")
	}
	return n, nil
}

// Flush deletes every entry of the table.
func (k *Kernel) Flush(ctx context.Context) error {
	s, err := k.get()
	if err != nil {
		return err
	}
	var w builder
	seq := s.nextSeq()
	w.end(w.begin(msgCTDel, nlmAck, seq, unix.AF_UNSPEC))
	errs, err := k.exchange(ctx, s, w.b, seq, seq)
	k.put(s, err == nil)
	if err != nil {
		return fmt.Errorf("conntrack flush: %w", err)
	}
	if e := errs[seq]; e != 0 {
		return fmt.Errorf("conntrack flush: %w", e)
	}
	return nil
}

// exchange sends a batch whose requests carry sequence numbers first..last
// (only the last asks for an acknowledgement) and collects the errors the
// kernel reports, by sequence number, until the last one is answered.
func (k *Kernel) exchange(ctx context.Context, s *socket, batch []byte, first, last uint32) (map[uint32]syscall.Errno, error) {
	errs := map[uint32]syscall.Errno{}
	err := k.roundTrip(ctx, s, batch, first, last, func(m nlmsg) (bool, error) {
		if m.typ != nlmsgError {
			return false, nil
		}
		if e := errnoOf(m.data); e != 0 {
			errs[m.seq] = e
		}
		return m.seq == last, nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// roundTrip sends a batch of requests numbered first..last and hands every
// answer to them to each until each says the batch is done (or fails).
// Answers to other sequence numbers (stale ones) are skipped.
func (k *Kernel) roundTrip(ctx context.Context, s *socket, batch []byte, first, last uint32, each func(m nlmsg) (done bool, err error)) error {
	if err := s.send(batch); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	s.f.SetReadDeadline(deadline)
	defer s.f.SetReadDeadline(time.Time{})
	for {
		b, err := s.recv()
		if err != nil {
			return err
		}
		for len(b) > 0 {
			m, rest, ok := nextMsg(b)
			if !ok {
				return errors.New("malformed reply")
			}
			b = rest
			if m.seq-first > last-first {
				continue
			}
			done, err := each(m)
			if err != nil || done {
				return err
			}
		}
	}
}

// eventsSysctl chooses which entries carry event reporting: 0 none, 1 all,
// 2 (the kernel's default) only those made while an event listener exists.
const eventsSysctl = "/proc/sys/net/netfilter/nf_conntrack_events"

// EventsForAll makes the kernel attach event reporting to every new entry
// of the backend's namespace (nf_conntrack_events=1) and returns the
// former setting. Under the default (2), an entry made while no socket
// listens for events never reports its changes or its end, even once
// somebody listens: the sessions a subordinate installs (it does not
// listen) would fall silent on it after a takeover, and the primary would
// learn their ends only from a dump. Event messages are still built only
// while somebody listens, so a subordinate's installs cost no more.
func (k *Kernel) EventsForAll() (was int, err error) {
	// /proc/sys/net follows the namespace of the thread that opens it.
	err = inNetNS(k.nsfd(), func() error {
		b, err := os.ReadFile(eventsSysctl)
		if err != nil {
			return err
		}
		if was, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			return err
		}
		if was == 1 {
			return nil
		}
		return os.WriteFile(eventsSysctl, []byte("1\n"), 0)
	})
	if err != nil {
		return was, fmt.Errorf("conntrack events: %w", err)
	}
	return was, nil
}

// HashBuckets is the size of the kernel's conntrack hash table
// (nf_conntrack_buckets, the module's hashsize): one table for the whole
// host. Inserts slow down as its chains grow, so a table holding many more
// sessions than buckets installs a bulk sync slowly.
func (k *Kernel) HashBuckets() (int, error) {
	b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_buckets")
	if err != nil {
		return 0, fmt.Errorf("conntrack buckets: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("conntrack buckets: %w", err)
	}
	return n, nil
}
