package demo

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hagate/hagate/internal/lab"
)

// prober opens a new TCP connection from the client to the server through
// the cluster every 50 ms and records which ones worked.
type prober struct {
	l      *lab.Lab
	mu     sync.Mutex
	ok     int
	failed int
	gap    time.Duration // the longest run without a working connection
	lastOK time.Time
	cancel context.CancelFunc
}

func newProber(l *lab.Lab) *prober { return &prober{l: l, lastOK: time.Now()} }

func (p *prober) run(ctx context.Context) {
	ctx, p.cancel = context.WithCancel(ctx)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		out, err := p.l.ExecContext(cctx, lab.Client, "sh", "-c",
			"echo x | socat -t0.2 -T1 - TCP:"+lab.ServerAddr.Addr().String()+":7000,connect-timeout=1")
		cancel()
		now := time.Now()
		p.mu.Lock()
		if err == nil && strings.Contains(out, "x") {
			p.ok++
			p.gap = max(p.gap, now.Sub(p.lastOK))
			p.lastOK = now
		} else {
			p.failed++
		}
		p.mu.Unlock()
	}
}

func (p *prober) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ok, p.failed, p.gap, p.lastOK = 0, 0, 0, time.Now()
}

func (p *prober) summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("%d connections worked, %d failed; longest time without a working connection %s",
		p.ok, p.failed, p.gap.Round(time.Millisecond))
}

func (p *prober) stop() {
	if p.cancel != nil {
		p.cancel()
	}
}
