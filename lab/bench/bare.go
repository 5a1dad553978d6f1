package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hagate/hagate/internal/nstest"
	"github.com/hagate/hagate/internal/sessions/session"
	"github.com/hagate/hagate/lab/netlab"
)

// bareWorkers is the reference loop's sockets: as many as a hagate
// subordinate installs its bulk over (the daemon opens session pickup's
// backend with the default, one: conntrack.Options.Workers says why more
// do not help).
const bareWorkers = 1

// bareCreate is the reference for a late subordinate's bulk: the kernel's
// own create rate, with nothing of hagate in the way. In a fresh namespace
// of lab l it times one Apply of n synthetic sessions over bareWorkers
// ctnetlink sockets, the sessions as the subordinate installs them (TCP
// liberal, as without tcp_window_tracking), then flushes them and removes
// the namespace. The caller runs it just before the subordinate starts:
// the hash table is host-wide, so the primary's n entries lengthen the
// chains that both the bare creates and the bulk's walk.
func bareCreate(ctx context.Context, l *netlab.Lab, n int) (took time.Duration, err error) {
	ns := l.NS("bare")
	if err := nstest.Add(ns); err != nil {
		return 0, fmt.Errorf("bare create: %w", err)
	}
	defer func() {
		if rerr := nstest.Remove(ns); rerr != nil {
			err = errors.Join(err, fmt.Errorf("bare create: %w", rerr))
		}
	}()
	gen, err := openChurnGen(ns, bareWorkers)
	if err != nil {
		return 0, fmt.Errorf("bare create: %w", err)
	}
	defer gen.Close()
	if err := gen.prepare([2]int{0, n}, [2]int{}); err != nil {
		return 0, fmt.Errorf("bare create: %w", err)
	}
	for i := range gen.changes {
		tcp := &gen.changes[i].Session.TCP
		tcp.FlagsOrig |= session.TCPFlagBeLiberal
		tcp.FlagsReply |= session.TCPFlagBeLiberal
	}
	start := time.Now()
	created, _, err := gen.apply(ctx)
	took = time.Since(start)
	// Flushed whatever happened: left behind, the entries would lengthen
	// the chains of the bulk that follows.
	ferr := gen.k.Flush(ctx)
	if err != nil {
		return 0, fmt.Errorf("bare create: %d of %d created: %w", created, n, err)
	}
	if created != n {
		return 0, fmt.Errorf("bare create: %d of %d created", created, n)
	}
	if ferr != nil {
		return 0, fmt.Errorf("bare create: %w", ferr)
	}
	return took, nil
}
