package netif

import "fmt"

// SetLearning turns MAC learning on or off on a bridge port. A
// subordinate's ports in transparent mode do not learn: its bridge
// forwards nothing, and what it would learn from flooded frames is stale by
// the time it becomes primary.
func (h *Handle) SetLearning(port string, on bool) error {
	l, err := h.link(port)
	if err != nil {
		return fmt.Errorf("bridge port learning: %w", err)
	}
	if err := h.nl.LinkSetLearning(l, on); err != nil {
		return fmt.Errorf("bridge port %s learning %v: %w", port, on, err)
	}
	return nil
}
