package conntrack

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/hagate/hagate/internal/sessions/session"
)

// Watch subscribes to the table's NEW, UPDATE and DESTROY events. When the
// kernel drops events because the socket overflowed (ENOBUFS), the stream
// carries an EventOverflow and goes on; the caller must dump again. The
// channel closes when ctx ends or the socket fails.
func (k *Kernel) Watch(ctx context.Context) (<-chan session.Event, error) {
	groups := uint32(1<<(groupNew-1) | 1<<(groupUpd-1) | 1<<(groupDel-1))
	s, err := k.open(groups, k.opts.EventBuffer)
	if err != nil {
		return nil, fmt.Errorf("conntrack watch: %w", err)
	}
	ch := make(chan session.Event, k.opts.EventQueue)
	stop := context.AfterFunc(ctx, func() { s.Close() })
	go func() {
		defer close(ch)
		defer stop()
		defer s.Close()
		send := func(ev session.Event) bool {
			select {
			case ch <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			b, err := s.recv()
			if errors.Is(err, unix.ENOBUFS) {
				if !send(session.Event{Kind: session.EventOverflow}) {
					return
				}
				continue
			}
			if err != nil {
				return
			}
			for len(b) > 0 {
				m, rest, ok := nextMsg(b)
				if !ok {
					break
				}
				b = rest
				if m.typ>>8 != subsysCT {
					continue
				}
				ev := session.Event{Kind: session.EventUpdate}
				switch {
				case m.typ&0xff == msgCTDel:
					ev.Kind = session.EventDestroy
				case m.flags&(nlmCreate|nlmExcl) != 0:
					ev.Kind = session.EventNew
				}
				if ev.Session, err = parseFlow(m.data); err != nil {
					continue // one unparsable event; the refresh dump repairs
				}
				if !send(ev) {
					return
				}
			}
		}
	}()
	return ch, nil
}
