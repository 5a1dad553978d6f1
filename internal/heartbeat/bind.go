package heartbeat

import (
	"net/netip"
	"time"

	"github.com/hagate/hagate/internal/seal"
)

// A heartbeat is bound to the link and the address it arrives on. Release
// 0.1.0 puts in a frame's stream its own index of the link (the position in
// its configuration), which need not be the receiver's index of the same
// link, and the configuration does not say which peer address is which
// member. So the bindings are learned, per member boot: the first frame of
// a member on a link binds that link to the stream and the source address
// it came with, and then
//   - a frame of that member from another address on the link is refused
//     (a member's frame re-sent from another member's address), and
//   - a stream bound to one link is refused on another (a frame sealed for
//     link ha re-sent on ha2).
// A binding silent for a dead interval may be replaced, so a member whose
// address changes, or a binding a relayed frame won by a race, heals by
// itself. 0.1.0 senders are bound like the others: nothing changes on the
// wire.

// maxBindings bounds the (member, link) bindings kept; only authenticated
// members get one.
const maxBindings = 256

type bindKey struct {
	sender string
	link   int
}

type binding struct {
	epoch  uint64
	stream uint32
	addr   netip.Addr
	last   time.Time
}

// bind checks an authenticated heartbeat against the bindings of its
// member and records it. It returns the drop reason, or "".
func (t *Transport) bind(l *linkConn, h seal.Header, from netip.Addr, now time.Time) *seal.DropError {
	t.mu.Lock()
	defer t.mu.Unlock()
	dead := t.deadInterval()
	live := func(b *binding) bool { return b != nil && b.epoch == h.Epoch && now.Sub(b.last) < dead }
	if t.bindings == nil {
		t.bindings = map[bindKey]*binding{}
	}
	b := t.bindings[bindKey{h.Sender, l.index}]
	if live(b) && b.addr != from {
		return &seal.DropError{Reason: "wrong-address", Detail: "frame of " + h.Sender + " from " + from.String() + ", which sends from " + b.addr.String() + " on " + l.Interface}
	}
	if live(b) && b.stream != h.Stream {
		return &seal.DropError{Reason: "wrong-link", Detail: "frame of " + h.Sender + " sealed for another link than " + l.Interface}
	}
	for _, o := range t.links {
		if ob := t.bindings[bindKey{h.Sender, o.index}]; o.index != l.index && live(ob) && ob.stream == h.Stream {
			return &seal.DropError{Reason: "wrong-link", Detail: "frame of " + h.Sender + " sealed for link " + o.Interface + " arrived on " + l.Interface}
		}
	}
	if b == nil {
		if len(t.bindings) >= maxBindings {
			t.forgetSilentBindings(now, dead)
		}
		b = &binding{}
		t.bindings[bindKey{h.Sender, l.index}] = b
	}
	*b = binding{epoch: h.Epoch, stream: h.Stream, addr: from, last: now}
	return nil
}

// forgetSilentBindings drops the bindings silent for a dead interval, or
// all of them if none is: they are learned again from the next frames.
func (t *Transport) forgetSilentBindings(now time.Time, dead time.Duration) {
	for k, b := range t.bindings {
		if now.Sub(b.last) >= dead {
			delete(t.bindings, k)
		}
	}
	if len(t.bindings) >= maxBindings {
		clear(t.bindings)
	}
}

// validNodeID reports whether id, taken from the wire, is a node id the
// configuration could hold (config checks the same): 1..32 letters, digits,
// '.', '_' and '-'. Ids reach logs, metric labels and the notify command's
// environment, where a NUL or a newline does harm.
func validNodeID(id string) bool {
	if id == "" || len(id) > seal.MaxSenderLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c == '.' || c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
