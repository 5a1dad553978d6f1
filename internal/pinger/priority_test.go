package pinger

import (
	"testing"
	"testing/synctest"
	"time"
)

// Counts sums the priority of the targets not counted as up: all of them
// before they answer, the silent one's once it is down, none again after
// its flip timeout.
func TestCountsSumDownPriority(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const s = time.Second
		p := newPinger(t, 2*s,
			Target{Interface: "wan1", Addr: addrA, Interval: s, Failures: 2, Priority: 3},
			Target{Interface: "wan2", Addr: addrB, Interval: s, Failures: 2}) // priority 1
		if up, down := p.Counts(); up != 0 || down != 4 {
			t.Fatalf("before any answer: up %d, down priority %d; want 0, 4", up, down)
		}
		n := newFakeNet()
		stop := run(t, p, n)
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if up, down := p.Counts(); up != 2 || down != 0 {
			t.Errorf("both answering: up %d, down priority %d; want 2, 0", up, down)
		}
		n.setSilent(addrA, true)
		time.Sleep(4 * s)
		synctest.Wait()
		if up, down := p.Counts(); up != 1 || down != 3 {
			t.Errorf("wan1 silent: up %d, down priority %d; want 1, 3", up, down)
		}
		n.setSilent(addrA, false)
		time.Sleep(4 * s)
		synctest.Wait()
		if up, down := p.Counts(); up != 2 || down != 0 {
			t.Errorf("wan1 back after the flip timeout: up %d, down priority %d; want 2, 0", up, down)
		}
		stop()
	})
}
