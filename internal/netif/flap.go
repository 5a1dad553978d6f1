package netif

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Flap takes those of the named interfaces that are up down for the given
// time, then up again: FGCP's link-failed signal. The switch at the other
// end of each link sees it drop and flushes the MAC addresses it learnt on
// that port, so it learns the new primary's at once. Interfaces that are
// down (or missing) are left alone; those taken down are brought up again
// even if ctx ends early (then at once). It returns the interfaces it took
// down and every error met, none of which stops the others.
func (h *Handle) Flap(ctx context.Context, names []string, down time.Duration) ([]string, error) {
	var flapped []string
	var errs []error
	for _, name := range names {
		l, err := h.link(name)
		if errors.Is(err, ErrNoInterface) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			continue
		}
		if err := h.nl.LinkSetDown(l); err != nil {
			errs = append(errs, fmt.Errorf("link-failed signal: set %s down: %w", name, err))
			continue
		}
		flapped = append(flapped, name)
	}
	if len(flapped) > 0 {
		t := time.NewTimer(down)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	for _, name := range flapped {
		l, err := h.link(name)
		if err == nil {
			err = h.nl.LinkSetUp(l)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("link-failed signal: set %s up again: %w", name, err))
		}
	}
	return flapped, errors.Join(errs...)
}
