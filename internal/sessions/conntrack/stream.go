package conntrack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// dump sends a dump request (built by req) on a new socket and calls fn
// for every record of subsystem subsys, as parse reads it from a message,
// until the kernel says done. what names the dump in errors.
func dump[R any](ctx context.Context, k *Kernel, what string, rcvbuf int, subsys uint16, req func(w *builder, seq uint32), parse func(data []byte) (R, error), fn func(R) error) error {
	s, err := k.open(0, rcvbuf)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.f.SetReadDeadline(time.Now()) })
	defer stop()
	var w builder
	req(&w, s.nextSeq())
	if err := s.send(w.b); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for {
		b, err := s.recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		for len(b) > 0 {
			m, rest, ok := nextMsg(b)
			if !ok {
				return fmt.Errorf("%s: malformed message", what)
			}
			b = rest
			switch {
			case m.typ == nlmsgDone:
				return nil
			case m.typ == nlmsgError:
				if e := errnoOf(m.data); e != 0 {
					return fmt.Errorf("%s: %w", what, e)
				}
				return nil
			case m.typ>>8 == subsys:
				r, err := parse(m.data)
				if err != nil {
					return fmt.Errorf("%s: %w", what, err)
				}
				if err := fn(r); err != nil {
					return err
				}
			}
		}
	}
}

// watch reads the events of subsystem subsys from s into a new channel of
// queue entries: decode turns a message into an event (false: skip it),
// and overflow is sent when the socket overflowed (the stream goes on).
// The channel closes when ctx ends or the socket fails.
func watch[E any](ctx context.Context, s *socket, queue int, subsys uint16, overflow E, decode func(m nlmsg) (E, bool)) <-chan E {
	ch := make(chan E, queue)
	stop := context.AfterFunc(ctx, func() { s.Close() })
	go func() {
		defer close(ch)
		defer stop()
		defer s.Close()
		send := func(ev E) bool {
			select {
			case ch <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			bs, err := s.recvBatch()
			for _, b := range bs {
				for len(b) > 0 {
					m, rest, ok := nextMsg(b)
					if !ok {
						break
					}
					b = rest
					if m.typ>>8 != subsys {
						continue
					}
					if ev, ok := decode(m); ok && !send(ev) {
						return
					}
				}
			}
			if errors.Is(err, errTruncated) {
				// An event lost, as in an overflow: the caller dumps.
				if !send(overflow) {
					return
				}
				continue
			}
			if errors.Is(err, unix.ENOBUFS) {
				// The kernel says ENOBUFS once per congestion, and the
				// congestion lasts until the queue is empty: what is
				// queued is older than the dump the overflow calls for,
				// so it goes, and a loss from now on is reported again.
				if err := s.drain(); err != nil {
					return
				}
				if !send(overflow) {
					return
				}
				continue
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}
