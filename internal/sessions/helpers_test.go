package sessions

import (
	"context"

	"github.com/hagate/hagate/internal/sessions/session"
)

// becomePrimaryMirrored is BecomePrimary followed by the wait for the table
// to be mirrored, for tests that look at the primary's table right after.
func (e *Engine) becomePrimaryMirrored(ctx context.Context) error {
	if err := e.BecomePrimary(ctx); err != nil {
		return err
	}
	return e.WaitMirrored(ctx)
}

// liberal is s as a subordinate without tcp_window_tracking installs it.
func liberal(s session.Session) session.Session {
	if s.Proto == session.ProtoTCP {
		s.TCP.FlagsOrig |= session.TCPFlagBeLiberal
		s.TCP.FlagsReply |= session.TCPFlagBeLiberal
	}
	return s
}
