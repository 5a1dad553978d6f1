package daemon

import (
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/netif"
)

// A failed fetch (the primary died, or runs a build that does not serve
// its forwarding database) keeps the addresses fetched before, which are
// the ones a failover must announce, and asks that primary again only
// after the backoff; a success clears the error.
func TestBridgeFDBKeepsLastOnFailure(t *testing.T) {
	d := &Daemon{log: slog.New(slog.DiscardHandler)}
	b := &bridgeFDB{bridge: "br0", ports: []string{"lan", "wan"}}
	t0 := time.Now()
	fdb := []netif.FDBEntry{{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Port: "lan"}}
	b.done(t0, fdb, "gw1", nil, d)
	if len(b.entries) != 1 || b.from != "gw1" || b.err != "" {
		t.Fatalf("after a fetch: %+v", b)
	}
	b.next = t0.Add(fdbPeriod)
	b.done(t0, nil, "gw1", errors.New("connection reset"), d)
	if len(b.entries) != 1 || b.err == "" || !b.next.Equal(t0.Add(fdbBackoff)) {
		t.Fatalf("after a failure: entries %d, err %q, next in %s", len(b.entries), b.err, b.next.Sub(t0))
	}
	b.done(t0, fdb[:0], "gw1", nil, d)
	if len(b.entries) != 0 || b.err != "" {
		t.Fatalf("after a fetch of an empty database: %+v", b)
	}
}
