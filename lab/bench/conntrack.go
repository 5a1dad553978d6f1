package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/hagate/hagate/internal/nstest"
)

// Synthetic sessions: entry i of a benchmark's conntrack table is an
// established, source-NATed TCP session from a LAN host to the server, as
// the gateways' SNAT rule would have made it:
//
//	original 192.0.2.H:sport -> 203.0.113.100:dport
//	reply    203.0.113.100:dport -> 203.0.113.1:sport
//
// with sport cycling through 60,000 ports and dport and H stepping every
// 60,000 entries, so both tuples are unique for up to 3.3M entries. No lab
// address is among the hosts (H in 20..99), and no dport is the echo
// port, so the synthetic sessions never collide with real traffic.
const (
	portsPerBlock   = 60000
	firstSport      = 1024
	firstDport      = 10000
	firstHost       = 20
	hostsPerCycle   = 80
	sessionTimeout  = 3600 // seconds: nothing expires during a benchmark
	tcpEstablished  = 3    // TCP_CONNTRACK_ESTABLISHED
	maxSynthSession = 55 * portsPerBlock
	// SyntheticMark marks every synthetic session, as a firewall's rules
	// might mark forwarded sessions (a sync must carry it).
	SyntheticMark = 0x48424e43
)

var serverAddr = netip.MustParseAddr("203.0.113.100")

// SyntheticFlow returns synthetic session i.
func SyntheticFlow(i int) conntrack.Flow {
	block := i / portsPerBlock
	sport := uint16(firstSport + i%portsPerBlock)
	dport := uint16(firstDport + block)
	src := netip.AddrFrom4([4]byte{192, 0, 2, byte(firstHost + block%hostsPerCycle)})
	f := conntrack.NewFlow(6,
		conntrack.StatusConfirmed|conntrack.StatusSeenReply|conntrack.StatusAssured|conntrack.StatusSrcNAT|conntrack.StatusSrcNATDone,
		src, serverAddr, sport, dport, sessionTimeout, SyntheticMark)
	f.TupleReply.IP.DestinationAddress = netip.MustParseAddr("203.0.113.1")
	f.ProtoInfo.TCP = &conntrack.ProtoInfoTCP{State: tcpEstablished}
	return f
}

// ctPool is a few conntrack netlink sockets opened inside one network
// namespace: a socket keeps the namespace it was created in, so the
// benchmark can fill a gateway's table without running inside it. The
// library sends one request per entry and waits for its acknowledgement,
// so several sockets in parallel go faster.
type ctPool struct {
	conns []*conntrack.Conn
}

// dialNS opens n conntrack sockets in the named network namespace
// ("ip netns" name).
func dialNS(nsName string, n int) (*ctPool, error) {
	p := &ctPool{}
	err := nstest.Do(nsName, func() error {
		for range n {
			c, err := conntrack.Dial(nil)
			if err != nil {
				return err
			}
			p.conns = append(p.conns, c)
		}
		return nil
	})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("conntrack: dial in %s: %w", nsName, err)
	}
	return p, nil
}

// Close closes every socket.
func (p *ctPool) Close() {
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// forEach calls op for every i in [from, to), spread over the sockets, and
// returns how many succeeded and the first error.
func (p *ctPool) forEach(ctx context.Context, from, to int, op func(c *conntrack.Conn, i int) error) (int, error) {
	var ok atomic.Int64
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	n := len(p.conns)
	for w, c := range p.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := from + w; i < to; i += n {
				if i%1024 < n && ctx.Err() != nil {
					return
				}
				if err := op(c, i); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("session %d: %w", i, err)
					}
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return int(ok.Load()), first
}

// Create creates synthetic sessions [from, to).
func (p *ctPool) Create(ctx context.Context, from, to int) (int, error) {
	if to > maxSynthSession {
		return 0, fmt.Errorf("conntrack: at most %d synthetic sessions", maxSynthSession)
	}
	return p.forEach(ctx, from, to, func(c *conntrack.Conn, i int) error { return c.Create(SyntheticFlow(i)) })
}

// Delete deletes synthetic sessions [from, to); missing ones count as done.
func (p *ctPool) Delete(ctx context.Context, from, to int) (int, error) {
	return p.forEach(ctx, from, to, func(c *conntrack.Conn, i int) error {
		err := c.Delete(SyntheticFlow(i))
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	})
}

// Count returns how many synthetic sessions the namespace's table holds.
// It recognises them by their tuple (server address and port range), not
// by their mark, so that it counts sessions a sync daemon installed
// whatever it did with the mark.
func (p *ctPool) Count() (int, error) {
	fs, err := p.conns[0].Dump(nil)
	if err != nil {
		return 0, fmt.Errorf("conntrack: dump: %w", err)
	}
	n := 0
	for _, f := range fs {
		o := f.TupleOrig
		if o.Proto.Protocol == 6 && o.IP.DestinationAddress == serverAddr &&
			o.Proto.DestinationPort >= firstDport && o.Proto.DestinationPort < firstDport+maxSynthSession/portsPerBlock {
			n++
		}
	}
	return n, nil
}
