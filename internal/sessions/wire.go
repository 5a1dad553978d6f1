package sessions

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/hagate/hagate/internal/seal"
)

// MaxFrame is the largest sealed frame accepted on a sync connection; a
// longer length prefix drops the connection before anything is allocated.
const MaxFrame = 4 << 20

// maxPayload keeps batches well under MaxFrame after sealing.
const maxPayload = 256 << 10

var errFrameTooBig = errors.New("frame too big")

const (
	// firstFrameMax bounds the first frame of a connection, before the
	// peer has authenticated (a hello is a few dozen bytes).
	firstFrameMax = 4 << 10
	// readChunk is how much a frame's buffer grows per read.
	readChunk = 64 << 10
)

// frameConn carries sealed frames over TCP, each prefixed with its length
// (uint32, big-endian). One connection uses one seal stream, so sequence
// numbers and replay windows are per connection.
type frameConn struct {
	c      net.Conn
	sealer *seal.Sealer
	opener *seal.Opener
	stream uint32
	now    func() time.Time
	wbuf   []byte
	rbuf   []byte
	hdr    [4]byte
	authed bool // a frame has authenticated: full-size frames allowed
	// The first authenticated frame binds the connection to its sender's
	// boot and stream; later frames must follow it in sequence, so frames
	// recorded from another connection cannot be spliced in.
	peer seal.Header
}

// newFrameConn starts a connection's frames on a seal stream of its own.
// The caller must call release when the connection ends.
func (e *Engine) newFrameConn(c net.Conn) *frameConn {
	return &frameConn{c: c, sealer: e.sealer, opener: e.opener, stream: e.streams.Add(1), now: e.now}
}

// release lets the sealer forget the connection's stream: streams are never
// reused, and a sealer that kept each one would grow with every connection.
func (f *frameConn) release() { f.sealer.Forget(f.stream) }

// write seals payload and sends it within timeout. Socket deadlines are
// read on the kernel's wall clock, not on now (the engine's clock, which
// stamps the frames): a test's clock must not stall real connections.
func (f *frameConn) write(payload []byte, timeout time.Duration) error {
	f.wbuf = append(f.wbuf[:0], 0, 0, 0, 0)
	f.wbuf = f.sealer.Seal(f.wbuf, f.stream, f.now(), payload)
	binary.BigEndian.PutUint32(f.wbuf[:4], uint32(len(f.wbuf)-4))
	if err := f.c.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	_, err := f.c.Write(f.wbuf)
	return err
}

// read returns the next authenticated payload, valid until the next read.
// Errors from the seal layer are *seal.DropError.
func (f *frameConn) read(timeout time.Duration) (seal.Header, []byte, error) {
	if err := f.c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return seal.Header{}, nil, err
	}
	if _, err := io.ReadFull(f.c, f.hdr[:]); err != nil {
		return seal.Header{}, nil, err
	}
	n := int(binary.BigEndian.Uint32(f.hdr[:]))
	// Until the peer has authenticated, a frame may only be as large as a
	// hello: a stranger announcing megabytes gets nothing allocated.
	limit := MaxFrame
	if !f.authed {
		limit = firstFrameMax
	}
	if n > limit {
		return seal.Header{}, nil, fmt.Errorf("%d bytes (limit %d): %w", n, limit, errFrameTooBig)
	}
	// Grow the buffer as the bytes arrive, not to the announced size.
	f.rbuf = f.rbuf[:0]
	for len(f.rbuf) < n {
		chunk := min(n-len(f.rbuf), readChunk)
		f.rbuf = slices.Grow(f.rbuf, chunk)
		end := len(f.rbuf) + chunk
		if _, err := io.ReadFull(f.c, f.rbuf[len(f.rbuf):end]); err != nil {
			return seal.Header{}, nil, err
		}
		f.rbuf = f.rbuf[:end]
	}
	h, p, err := f.opener.Open(f.rbuf, f.now())
	if err != nil {
		return h, p, err
	}
	if f.authed && (h.Sender != f.peer.Sender || h.Epoch != f.peer.Epoch || h.Stream != f.peer.Stream || h.Seq <= f.peer.Seq) {
		return h, nil, &seal.DropError{Reason: "stream", Detail: fmt.Sprintf("frame %s/%d/%d after %s/%d/%d", h.Sender, h.Stream, h.Seq, f.peer.Sender, f.peer.Stream, f.peer.Seq)}
	}
	f.authed, f.peer = true, h
	return h, p, nil
}
