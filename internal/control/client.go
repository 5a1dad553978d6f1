package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"
	"time"
)

// ErrNotRunning is returned by Call when no daemon listens on the socket.
var ErrNotRunning = errors.New("hagate is not running")

// defaultCallTimeout bounds a call whose context has no deadline.
const defaultCallTimeout = 30 * time.Second

// Call sends req to the daemon listening on path and returns its response.
// A failed command is a Response with OK false, not an error; errors are for
// failing to talk to the daemon at all.
func Call(ctx context.Context, path string, req Request) (Response, error) {
	msg, err := encodeMessage(req, MaxRequestSize)
	if err != nil {
		return Response{}, fmt.Errorf("request %q: %w", req.Command, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultCallTimeout)
		defer cancel()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return Response{}, dialError(path, err)
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	// Cancelling ctx interrupts a call in progress.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	_, werr := c.Write(msg)
	// Even when the write failed the daemon may have answered already (it
	// refuses a caller before reading its request), so read what it said.
	line, rerr := readMessage(c, MaxResponseSize)
	if rerr != nil {
		if ctx.Err() != nil {
			return Response{}, fmt.Errorf("control socket %s: %w", path, ctx.Err())
		}
		if werr != nil {
			return Response{}, fmt.Errorf("control socket %s: send request: %w", path, werr)
		}
		return Response{}, fmt.Errorf("control socket %s: read response: %w", path, rerr)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("control socket %s: bad response: %w", path, err)
	}
	return resp, nil
}

// dialError turns the common failures to reach the daemon into messages an
// operator can act on.
func dialError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w (no control socket at %s)", ErrNotRunning, path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (stale control socket at %s)", ErrNotRunning, path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("control socket %s: permission denied (run as root or as a member of the control group)", path)
	}
	return fmt.Errorf("control socket %s: %w", path, err)
}
