package configsync

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hagate/hagate/internal/seal"
)

// conn carries sealed frames over TCP, each prefixed with its length.
type conn struct {
	c      net.Conn
	sealer *seal.Sealer
	opener *seal.Opener
	stream uint32
}

func (f *conn) write(payload []byte, deadline time.Time) error {
	buf := f.sealer.Seal(make([]byte, 4, 4+len(payload)+seal.Overhead), f.stream, time.Now(), payload)
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
	if err := f.c.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := f.c.Write(buf)
	return err
}

// read returns the next authenticated payload of at most limit bytes.
func (f *conn) read(limit int, deadline time.Time) (seal.Header, []byte, error) {
	if err := f.c.SetReadDeadline(deadline); err != nil {
		return seal.Header{}, nil, err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(f.c, hdr[:]); err != nil {
		return seal.Header{}, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > limit+seal.Overhead {
		return seal.Header{}, nil, fmt.Errorf("frame of %d bytes, limit %d", n, limit+seal.Overhead)
	}
	frame := make([]byte, n)
	if _, err := io.ReadFull(f.c, frame); err != nil {
		return seal.Header{}, nil, err
	}
	return f.opener.Open(frame, time.Now())
}
