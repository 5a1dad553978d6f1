package conntrack

import (
	"context"
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
	if k.opts.ReliableEvents {
		if err := s.setOption(unix.NETLINK_BROADCAST_ERROR, 1); err != nil {
			s.Close()
			return nil, fmt.Errorf("conntrack watch: reliable events: %w", err)
		}
	}
	overflow := session.Event{Kind: session.EventOverflow}
	return watch(ctx, s, k.opts.EventQueue, subsysCT, overflow, func(m nlmsg) (session.Event, bool) {
		ev := session.Event{Kind: session.EventUpdate}
		switch {
		case m.typ&0xff == msgCTDel:
			ev.Kind = session.EventDestroy
		case m.flags&(nlmCreate|nlmExcl) != 0:
			ev.Kind = session.EventNew
		}
		var err error
		ev.Session, err = parseFlow(m.data)
		return ev, err == nil // one unparsable event; the refresh dump repairs
	}), nil
}
