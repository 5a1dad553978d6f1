package configsync

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hagate/hagate/internal/checksum"
	"github.com/hagate/hagate/internal/seal"
)

// exchangeTimeout bounds one exchange, end to end.
const exchangeTimeout = 10 * time.Second

// Content returns this member's content of a part for op: the body and
// its checksum.
type Content func(ctx context.Context, op Op, part checksum.Part) ([]byte, uint64, error)

// Peer is one end of the exchange: it serves this member's content and
// fetches another's.
type Peer struct {
	Sealer  *seal.Sealer
	Opener  *seal.Opener
	Port    int
	MaxSize int
	Log     *slog.Logger
	streams atomic.Uint32
}

// Serve answers requests on ln until ctx ends, one connection at a time
// per goroutine.
func (p *Peer) Serve(ctx context.Context, ln net.Listener, content Content) error {
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("config sync: accept: %w", err)
		}
		go func() {
			defer c.Close()
			if err := p.answer(ctx, c, content); err != nil {
				p.Log.Warn("config sync: request refused", "peer", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

func (p *Peer) answer(ctx context.Context, c net.Conn, content Content) error {
	deadline := time.Now().Add(exchangeTimeout)
	fc := &conn{c: c, sealer: p.Sealer, opener: p.Opener, stream: p.streams.Add(1)}
	_, payload, err := fc.read(requestLen, deadline)
	if err != nil {
		return err
	}
	req, err := ParseRequest(payload)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	resp := Response{Op: req.Op, Part: req.Part, Nonce: req.Nonce}
	body, sum, err := content(ctx, req.Op, req.Part)
	switch {
	case err != nil:
		resp.Status, resp.Body = Refused, []byte(err.Error())
	case len(body) > p.MaxSize:
		resp.Status, resp.Body = Refused, fmt.Appendf(nil, "%s of %d bytes, larger than config_sync.max_size %d", req.Part, len(body), p.MaxSize)
	default:
		resp.Body, resp.Sum = body, sum
	}
	return fc.write(resp.Append(nil), deadline)
}

// ErrRefused is returned when the other member could not give the content.
var ErrRefused = errors.New("refused by the primary")

// Fetch asks the member at addr for a part.
func (p *Peer) Fetch(ctx context.Context, addr netip.Addr, op Op, part checksum.Part) (Response, error) {
	ctx, cancel := context.WithTimeout(ctx, exchangeTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addr.String(), strconv.Itoa(p.Port)))
	if err != nil {
		return Response{}, fmt.Errorf("config sync: %w", err)
	}
	defer c.Close()
	fc := &conn{c: c, sealer: p.Sealer, opener: p.Opener, stream: p.streams.Add(1)}
	req := Request{Op: op, Part: part}
	rand.Read(req.Nonce[:])
	if err := fc.write(req.Append(nil), deadline); err != nil {
		return Response{}, fmt.Errorf("config sync: send: %w", err)
	}
	_, payload, err := fc.read(responseHead+p.MaxSize, deadline)
	if err != nil {
		return Response{}, fmt.Errorf("config sync: receive: %w", err)
	}
	resp, err := ParseResponse(payload)
	switch {
	case err != nil:
		return resp, err
	case resp.Nonce != req.Nonce || resp.Op != op || resp.Part != part:
		return resp, fmt.Errorf("config sync: %w: the response answers another request", ErrMalformed)
	case resp.Status == Refused:
		return resp, fmt.Errorf("%w: %s", ErrRefused, resp.Body)
	}
	return resp, nil
}
