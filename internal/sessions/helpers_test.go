package sessions

import "context"

// becomePrimaryMirrored is BecomePrimary followed by the wait for the table
// to be mirrored, for tests that look at the primary's table right after.
func (e *Engine) becomePrimaryMirrored(ctx context.Context) error {
	if err := e.BecomePrimary(ctx); err != nil {
		return err
	}
	return e.WaitMirrored(ctx)
}
