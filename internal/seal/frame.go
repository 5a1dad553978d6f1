package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hagate/hagate/internal/replay"
)

// Purpose separates the keys and sequence spaces of the two kinds of traffic.
type Purpose uint8

const (
	Heartbeat Purpose = 1
	Sync      Purpose = 2
	// ConfigSync: the configuration sync (internal/configsync).
	ConfigSync Purpose = 3
)

// Mode is how a frame is protected.
type Mode uint8

const (
	// Plain: no protection at all; only when the config says so explicitly.
	Plain Mode = 0
	// Authenticate: payload in clear, AES-GCM tag over header and payload.
	Authenticate Mode = 1
	// Encrypt: payload encrypted and authenticated with AES-GCM.
	Encrypt Mode = 2
)

func (m Mode) String() string {
	switch m {
	case Plain:
		return "plaintext"
	case Authenticate:
		return "authenticated"
	case Encrypt:
		return "encrypted"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

const (
	magic0, magic1 = 'H', 'G'
	version        = 1
	fixedLen       = 40
	tagLen         = 16
	// MaxSenderLen bounds the sender id carried in every frame.
	MaxSenderLen = 32
	// Overhead is the most a frame adds to its payload.
	Overhead = fixedLen + MaxSenderLen + tagLen
	// maxPeers bounds the per-sender state an Opener keeps. Only senders that
	// authenticated get state, so this is a guard, not a limit users meet.
	maxPeers = 64
	// maxStreams bounds the replay windows kept per sender and boot.
	maxStreams = 64
	// maxSealStreams bounds the streams a Sealer counts: session sync uses
	// a new stream per connection, for as long as the daemon runs.
	maxSealStreams = 256
	maxRetired     = 4
	// DefaultRebootSilence is how long a member's boot must have been
	// silent before a frame of an earlier boot is taken for a reboot with a
	// clock set back (see Opener.SetRebootSilence).
	DefaultRebootSilence = 10 * time.Second
)

// Header is the authenticated, unencrypted part of a frame.
type Header struct {
	Purpose Purpose
	Mode    Mode
	Group   uint16
	KeyID   [4]byte
	Epoch   uint64 // the sender's boot, in unix nanoseconds
	Sent    time.Time
	Stream  uint32 // heartbeat link index, or sync connection number
	Seq     uint64
	Sender  string
}

// DropError says why a frame was refused; Reason is a short label for metrics.
type DropError struct {
	Reason string
	Detail string
}

func (e *DropError) Error() string {
	if e.Detail == "" {
		return "dropped: " + e.Reason
	}
	return "dropped: " + e.Reason + ": " + e.Detail
}

func drop(reason, format string, args ...any) error {
	return &DropError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

func newAEAD(k []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func nonce(stream uint32, seq uint64) []byte {
	var n [12]byte
	binary.BigEndian.PutUint32(n[0:4], stream)
	binary.BigEndian.PutUint64(n[4:12], seq)
	return n[:]
}

// Sealer protects the frames one node sends for one purpose. Safe for
// concurrent use.
type Sealer struct {
	mode    Mode
	purpose Purpose
	group   uint16
	sender  string
	epoch   uint64
	keyID   [4]byte
	aead    cipher.AEAD

	mu   sync.Mutex
	seqs map[uint32]*streamSeq
	// floor is where a stream not in seqs starts counting: above every
	// number a forgotten stream used, so that a stream number used again
	// never repeats a nonce under this boot's key.
	floor uint64
	uses  uint64 // counts Seal calls, to find the stream used least recently
}

type streamSeq struct {
	next    uint64
	lastUse uint64
}

// NewSealer prepares sealing for sender in boot epoch with the keyring's first
// key. In Plain mode kr may be nil.
func NewSealer(kr *Keyring, mode Mode, p Purpose, group uint16, sender string, epoch uint64) (*Sealer, error) {
	if len(sender) == 0 || len(sender) > MaxSenderLen {
		return nil, fmt.Errorf("seal: sender id %q: want 1..%d bytes", sender, MaxSenderLen)
	}
	s := &Sealer{mode: mode, purpose: p, group: group, sender: sender, epoch: epoch, seqs: map[uint32]*streamSeq{}}
	if mode == Plain {
		return s, nil
	}
	if kr == nil || len(kr.keys) == 0 {
		return nil, fmt.Errorf("seal: %s mode needs a key", mode)
	}
	k := kr.keys[0]
	tk, err := trafficKey(k.secret, p, group, epoch, sender)
	if err != nil {
		return nil, fmt.Errorf("seal: derive key: %w", err)
	}
	if s.aead, err = newAEAD(tk); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	s.keyID = k.id
	return s, nil
}

// Epoch returns the boot epoch the sealer stamps on every frame.
func (s *Sealer) Epoch() uint64 { return s.epoch }

// Rekey switches to the first key of kr for what is sealed from now on,
// keeping the sequence numbers, so receivers' replay windows carry on.
func (s *Sealer) Rekey(kr *Keyring) error {
	if s.mode == Plain {
		return nil
	}
	if kr == nil || len(kr.keys) == 0 {
		return fmt.Errorf("seal: %s mode needs a key", s.mode)
	}
	k := kr.keys[0]
	tk, err := trafficKey(k.secret, s.purpose, s.group, s.epoch, s.sender)
	if err != nil {
		return fmt.Errorf("seal: derive key: %w", err)
	}
	aead, err := newAEAD(tk)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	s.mu.Lock()
	s.aead, s.keyID = aead, k.id
	s.mu.Unlock()
	return nil
}

// Seal appends to dst one frame carrying payload on stream, stamped with now.
// Sequence numbers count up per stream from 0 (from higher once the sealer
// has forgotten streams; receivers accept any first number).
func (s *Sealer) Seal(dst []byte, stream uint32, now time.Time, payload []byte) []byte {
	s.mu.Lock()
	seq := s.nextSeq(stream)
	aead, keyID := s.aead, s.keyID
	s.mu.Unlock()

	start := len(dst)
	var h [fixedLen]byte
	h[0], h[1], h[2] = magic0, magic1, version
	h[3] = byte(s.purpose)
	h[4] = byte(s.mode)
	h[5] = byte(len(s.sender))
	binary.BigEndian.PutUint16(h[6:8], s.group)
	copy(h[8:12], keyID[:])
	binary.BigEndian.PutUint64(h[12:20], s.epoch)
	binary.BigEndian.PutUint64(h[20:28], uint64(now.UnixMilli()))
	binary.BigEndian.PutUint32(h[28:32], stream)
	binary.BigEndian.PutUint64(h[32:40], seq)
	dst = append(dst, h[:]...)
	dst = append(dst, s.sender...)
	switch s.mode {
	case Encrypt:
		hdr := dst[start:]
		dst = aead.Seal(dst, nonce(stream, seq), payload, hdr)
	case Authenticate:
		dst = append(dst, payload...)
		covered := dst[start:]
		dst = aead.Seal(dst, nonce(stream, seq), nil, covered)
	default:
		dst = append(dst, payload...)
	}
	return dst
}

// nextSeq returns the sequence number for the next frame on stream. When
// more than maxSealStreams streams are counted, the one used least recently
// is forgotten. Called with s.mu held.
func (s *Sealer) nextSeq(stream uint32) uint64 {
	s.uses++
	st := s.seqs[stream]
	if st == nil {
		if len(s.seqs) >= maxSealStreams {
			s.forgetOldest()
		}
		st = &streamSeq{next: s.floor}
		s.seqs[stream] = st
	}
	seq := st.next
	st.next++
	st.lastUse = s.uses
	return seq
}

func (s *Sealer) forgetOldest() {
	var oldest uint32
	var o *streamSeq
	for id, st := range s.seqs {
		if o == nil || st.lastUse < o.lastUse {
			oldest, o = id, st
		}
	}
	s.floor = max(s.floor, o.next)
	delete(s.seqs, oldest)
}

// Forget drops the sequence number of a stream whose connection has ended,
// so that a long-running node's sealer does not grow with every connection
// it ever had. A stream sealed on again later starts above every number
// used before (see nextSeq), so no nonce repeats.
func (s *Sealer) Forget(stream uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.seqs[stream]; st != nil {
		s.floor = max(s.floor, st.next)
		delete(s.seqs, stream)
	}
}

// Streams returns how many streams the sealer holds a sequence number for.
func (s *Sealer) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seqs)
}

// ParseHeader reads a frame's header without checking anything but its shape.
// It returns the header and the length of the header bytes.
func ParseHeader(frame []byte) (Header, int, error) {
	var h Header
	if len(frame) < fixedLen {
		return h, 0, drop("short", "%d bytes", len(frame))
	}
	if frame[0] != magic0 || frame[1] != magic1 {
		return h, 0, drop("magic", "")
	}
	if frame[2] != version {
		return h, 0, drop("version", "version %d", frame[2])
	}
	h.Purpose = Purpose(frame[3])
	h.Mode = Mode(frame[4])
	n := int(frame[5])
	if n == 0 || n > MaxSenderLen {
		return h, 0, drop("malformed", "sender length %d", n)
	}
	if len(frame) < fixedLen+n {
		return h, 0, drop("short", "%d bytes", len(frame))
	}
	h.Group = binary.BigEndian.Uint16(frame[6:8])
	copy(h.KeyID[:], frame[8:12])
	h.Epoch = binary.BigEndian.Uint64(frame[12:20])
	h.Sent = time.UnixMilli(int64(binary.BigEndian.Uint64(frame[20:28])))
	h.Stream = binary.BigEndian.Uint32(frame[28:32])
	h.Seq = binary.BigEndian.Uint64(frame[32:40])
	h.Sender = string(frame[fixedLen : fixedLen+n])
	return h, fixedLen + n, nil
}

// Opener checks and opens the frames one node receives for one purpose. Safe
// for concurrent use.
type Opener struct {
	kr      *Keyring
	mode    Mode
	purpose Purpose
	group   uint16
	self    string
	maxSkew time.Duration

	mu            sync.Mutex
	peers         map[string]*peerState
	notBefore     time.Time
	rebootSilence time.Duration
}

type peerState struct {
	epoch uint64
	// retired holds boots replaced by a lower one (a reboot with the clock
	// set back, or the end of a forged boot): their frames, captured and
	// replayed, must not bring them back. At most maxRetired.
	retired []uint64
	aeads   map[[4]byte]cipher.AEAD
	streams map[uint32]*replay.Filter
	last    time.Time
}

// NewOpener prepares receiving for node self. maxSkew > 0 refuses frames whose
// send time is further than that from now (captures replayed later, senders
// with a wrong clock); 0 disables the check.
func NewOpener(kr *Keyring, mode Mode, p Purpose, group uint16, self string, maxSkew time.Duration) *Opener {
	return &Opener{kr: kr, mode: mode, purpose: p, group: group, self: self, maxSkew: maxSkew,
		peers: map[string]*peerState{}, rebootSilence: DefaultRebootSilence}
}

// SetRebootSilence sets how long a member's boot must have been silent
// before a frame of an earlier boot (a lower epoch) is taken for a reboot:
// a member whose clock was set back across a restart, or whose name a key
// holder used for a forged later boot. Until then such frames are refused
// as replays. The heartbeat's dead interval (interval x lost_threshold) is
// the natural value: by then the cluster has declared the later boot gone.
func (o *Opener) SetRebootSilence(d time.Duration) {
	o.mu.Lock()
	o.rebootSilence = d
	o.mu.Unlock()
}

// RefuseBefore refuses frames sent before t (by the sender's clock). A
// receiver that has just started has no replay windows yet; frames captured
// before it started can be refused by this, frames sent after by the
// windows it builds from then on. Such a cut depends on the clocks agreeing:
// the heartbeat transport instead opens early frames and accepts those
// whose payload proves they were sent after this boot (Header.Sent is there
// for that).
func (o *Opener) RefuseBefore(t time.Time) {
	o.mu.Lock()
	o.notBefore = t
	o.mu.Unlock()
}

// SetKeyring replaces the accepted keys (a key file reloaded on SIGHUP).
func (o *Opener) SetKeyring(kr *Keyring) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.kr = kr
	for _, p := range o.peers {
		p.aeads = map[[4]byte]cipher.AEAD{} // keys no longer listed stop working now
	}
}

// Open authenticates frame and returns its header and payload. Every refusal
// is a *DropError. The returned payload may alias frame.
func (o *Opener) Open(frame []byte, now time.Time) (Header, []byte, error) {
	h, hl, err := ParseHeader(frame)
	if err != nil {
		return h, nil, err
	}
	switch {
	case h.Purpose != o.purpose:
		return h, nil, drop("purpose", "purpose %d", h.Purpose)
	case h.Group != o.group:
		return h, nil, drop("group", "group %d", h.Group)
	case h.Mode != o.mode:
		return h, nil, drop("mode", "%s frame, want %s", h.Mode, o.mode)
	case h.Sender == o.self:
		return h, nil, drop("self", "frame from own node id %q (duplicate node_id?)", h.Sender)
	}
	if o.maxSkew > 0 {
		if d := now.Sub(h.Sent); d > o.maxSkew || d < -o.maxSkew {
			return h, nil, drop("stale", "sent %s ago (max_clock_skew %s)", d.Round(time.Millisecond), o.maxSkew)
		}
		// A boot cannot start after the frames it sends: an epoch later
		// than the send time, beyond the clock allowance, is forged (a
		// key holder claiming a boot no real one could supersede).
		if limit := h.Sent.Add(o.maxSkew).UnixNano(); limit < 0 || h.Epoch > uint64(limit) {
			return h, nil, drop("epoch", "boot %d of %q later than its frame's send time %s", h.Epoch, h.Sender, h.Sent.UTC().Format(time.RFC3339))
		}
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	if h.Sent.Before(o.notBefore) {
		return h, nil, drop("stale", "sent %s before this member started", o.notBefore.Sub(h.Sent).Round(time.Millisecond))
	}
	p := o.peers[h.Sender]
	kr := o.kr
	// An earlier boot's frame is a replay while the later boot speaks; once
	// that has been silent for rebootSilence, it is the member restarted
	// with its clock set back (or the later boot was forged), and is heard.
	if p != nil && h.Epoch < p.epoch && now.Sub(p.last) < o.rebootSilence {
		return h, nil, drop("stale", "frame from an earlier boot of %s", h.Sender)
	}
	if p != nil && slices.Contains(p.retired, h.Epoch) {
		return h, nil, drop("stale", "frame from a boot of %s that a restart replaced", h.Sender)
	}
	payload := frame[hl:]
	if o.mode != Plain {
		var aead cipher.AEAD
		if p != nil && h.Epoch == p.epoch {
			aead = p.aeads[h.KeyID]
		}
		if aead == nil {
			k := kr.find(h.KeyID)
			if k == nil {
				return h, nil, drop("key", "unknown key id %x", h.KeyID)
			}
			tk, err := trafficKey(k.secret, h.Purpose, h.Group, h.Epoch, h.Sender)
			if err != nil {
				return h, nil, drop("key", "%v", err)
			}
			if aead, err = newAEAD(tk); err != nil {
				return h, nil, drop("key", "%v", err)
			}
		}
		if len(payload) < tagLen {
			return h, nil, drop("short", "no tag")
		}
		n := nonce(h.Stream, h.Seq)
		if o.mode == Encrypt {
			pt, err := aead.Open(nil, n, payload, frame[:hl])
			if err != nil {
				return h, nil, drop("auth", "bad tag from %q", h.Sender)
			}
			payload = pt
		} else {
			body := len(frame) - tagLen
			if _, err := aead.Open(nil, n, frame[body:], frame[:body]); err != nil {
				return h, nil, drop("auth", "bad tag from %q", h.Sender)
			}
			payload = frame[hl:body]
		}
		p = o.remember(h, p)
		if p.aeads[h.KeyID] == nil {
			p.aeads[h.KeyID] = aead
		}
	} else {
		p = o.remember(h, p)
	}
	f := p.streams[h.Stream]
	if f == nil {
		if len(p.streams) >= maxStreams {
			for s := range p.streams { // forget an arbitrary old stream
				delete(p.streams, s)
				break
			}
		}
		f = &replay.Filter{}
		p.streams[h.Stream] = f
	}
	if !f.Accept(h.Seq) {
		return h, nil, drop("replay", "seq %d on stream %d from %q", h.Seq, h.Stream, h.Sender)
	}
	p.last = now
	return h, payload, nil
}

// remember returns the state for an authenticated frame's sender, starting
// afresh when the sender has rebooted.
func (o *Opener) remember(h Header, p *peerState) *peerState {
	if p != nil && p.epoch == h.Epoch {
		return p
	}
	if p == nil && len(o.peers) >= maxPeers {
		var oldest string
		for id, q := range o.peers {
			if oldest == "" || q.last.Before(o.peers[oldest].last) {
				oldest = id
			}
		}
		delete(o.peers, oldest)
	}
	q := &peerState{epoch: h.Epoch, aeads: map[[4]byte]cipher.AEAD{}, streams: map[uint32]*replay.Filter{}}
	if p != nil {
		q.retired = p.retired
		if h.Epoch < p.epoch {
			q.retired = append(q.retired, p.epoch)
			q.retired = q.retired[max(0, len(q.retired)-maxRetired):]
		}
	}
	o.peers[h.Sender] = q
	return q
}
