package netlab

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// port validates a gateway and link name and returns the switch port.
func (l *Lab) port(gw, link string) (string, error) {
	if !slices.Contains(l.gws, gw) {
		return "", fmt.Errorf("lab: no gateway %q (have %v)", gw, l.gws)
	}
	if !slices.Contains(l.links(), link) {
		return "", fmt.Errorf("lab: gateway %s has no link %q (have %v)", gw, link, l.links())
	}
	return portName(gw, link), nil
}

// LinkDown takes the switch side of a gateway's link down: the gateway sees
// its link lose carrier (NO-CARRIER, operstate DOWN), as when a cable is
// pulled.
func (l *Lab) LinkDown(gw, link string) error { return l.setPort(gw, link, "down") }

// LinkUp undoes LinkDown.
func (l *Lab) LinkUp(gw, link string) error { return l.setPort(gw, link, "up") }

func (l *Lab) setPort(gw, link, state string) error {
	port, err := l.port(gw, link)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if err := l.ip(Switch, "link", "set", port, state); err != nil {
		return fmt.Errorf("lab: link %s %s %s: %w", gw, link, state, err)
	}
	return nil
}

// Cut silently drops every frame through a gateway's link, both ways, in
// the switch. The gateway's link stays up with carrier: this is a dead peer
// or a broken switch, not a pulled cable.
func (l *Lab) Cut(gw, link string) error {
	return l.change(func() error {
		port, err := l.port(gw, link)
		if err != nil {
			return err
		}
		l.cut[port] = true
		return nil
	})
}

// Heal undoes Cut.
func (l *Lab) Heal(gw, link string) error {
	return l.change(func() error {
		port, err := l.port(gw, link)
		if err != nil {
			return err
		}
		delete(l.cut, port)
		return nil
	})
}

// Loss drops a random percent (0..100) of the frames through a gateway's
// link, each way independently. Zero removes the loss. A cut link drops
// everything whatever its loss.
func (l *Lab) Loss(gw, link string, percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("lab: loss %d%% out of range 0..100", percent)
	}
	return l.change(func() error {
		port, err := l.port(gw, link)
		if err != nil {
			return err
		}
		if percent == 0 {
			delete(l.loss, port)
		} else {
			l.loss[port] = percent
		}
		return nil
	})
}

// PowerOff cuts every link of a gateway, ha first, then ha2, lan and wan,
// each cut in force before the next, so the cluster loses its heartbeats
// before the traffic links. The caller stops the gateway's daemon too.
func (l *Lab) PowerOff(gw string) error {
	for _, link := range l.links() {
		if err := l.Cut(gw, link); err != nil {
			return fmt.Errorf("lab: power off %s: %w", gw, err)
		}
	}
	return nil
}

// PowerOn heals every link of a gateway at once.
func (l *Lab) PowerOn(gw string) error {
	err := l.change(func() error {
		for _, link := range l.links() {
			port, err := l.port(gw, link)
			if err != nil {
				return err
			}
			delete(l.cut, port)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("lab: power on %s: %w", gw, err)
	}
	return nil
}

// change edits the fault state with edit and applies it to the switch. If
// either step fails the state is left as it was.
func (l *Lab) change(edit func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	oldCut, oldLoss := cloneMap(l.cut), cloneMap(l.loss)
	err := edit()
	if err == nil {
		err = l.applyFaults()
	}
	if err != nil {
		l.cut, l.loss = oldCut, oldLoss
	}
	return err
}

func cloneMap[V any](m map[string]V) map[string]V {
	c := make(map[string]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// applyFaults replaces the switch's fault table with one rendered from the
// current state, in one nft transaction. Called with l.mu held (or before
// the lab is shared).
func (l *Lab) applyFaults() error {
	rules := faultRules(l.cut, l.loss, l.opts.Transparent)
	if _, err := runInput(context.Background(), rules, "ip", "netns", "exec", l.NS(Switch), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("lab: switch faults: %w", err)
	}
	return nil
}

// faultRules renders the switch's bridge-family table: a cut port drops
// everything in and out; a lossy port drops a random share each way. The
// bridge forward hook sees every frame between two ports, flooded ones
// included, and the switch bridges have no addresses of their own, so the
// forward chain is all there is to filter. Ports come out sorted, so the
// same state renders the same text. stormGuard caps the broadcast and
// multicast frames the switch forwards (transparent labs, where two
// bridging gateways that both forward make a loop: a test proves that
// loop, and the guard ends it after a hundred-odd copies instead of
// letting it take the machine).
func faultRules(cut map[string]bool, loss map[string]int, stormGuard bool) string {
	var b strings.Builder
	b.WriteString("table bridge lab {}\ndelete table bridge lab\ntable bridge lab {\n")
	b.WriteString("\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n")
	if stormGuard {
		b.WriteString("\t\tmeta pkttype { broadcast, multicast } limit rate over 200/second burst 100 packets counter drop comment \"storm guard\"\n")
	}
	ports := make([]string, 0, len(cut)+len(loss))
	for p, c := range cut {
		if c {
			ports = append(ports, p)
		}
	}
	for p := range loss {
		if !cut[p] {
			ports = append(ports, p)
		}
	}
	slices.Sort(ports)
	for _, p := range ports {
		for _, dir := range []string{"iifname", "oifname"} {
			// numgen's mod 100 yields 0..99, so "< 100" would be out of
			// range: total loss is written as a plain drop.
			if cut[p] || loss[p] >= 100 {
				fmt.Fprintf(&b, "\t\t%s %q counter drop\n", dir, p)
			} else {
				fmt.Fprintf(&b, "\t\t%s %q numgen random mod 100 < %d counter drop\n", dir, p, loss[p])
			}
		}
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}
