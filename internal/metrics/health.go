package metrics

import (
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Health judges a member as a load balancer or a monitoring check would
// want to: healthy when it is in a cluster (another member heard), every
// heartbeat link is up, its sessions are in sync, and no second primary or
// lost quorum is seen. The reasons name what is wrong.
func Health(s Snapshot) (ok bool, reasons []string) {
	alone := true
	for _, p := range s.Peers {
		if p.Up {
			alone = false
		}
	}
	if alone {
		reasons = append(reasons, "not in a cluster: no other member heard")
	}
	for _, l := range s.Links {
		if !l.Up {
			reasons = append(reasons, "heartbeat link "+l.Interface+" down")
		}
	}
	if s.DualPrimary {
		reasons = append(reasons, "another member also claims the primary role")
	}
	if s.QuorumOn && !s.Quorate {
		reasons = append(reasons, "no quorum")
	}
	if ss := s.Sessions; ss != nil {
		if ss.SyncPending {
			reasons = append(reasons, "sessions not in sync: waiting for the primary's bulk sync")
		}
		for _, p := range ss.Subordinates {
			if !p.Connected {
				reasons = append(reasons, "session sync to "+p.Peer+" not connected")
			}
		}
	}
	return len(reasons) == 0, reasons
}

// healthz answers 200 "ok" for a healthy member, 503 with the reasons
// otherwise (see Health), and 503 when the daemon does not answer.
func (m *Metrics) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	m.snapshots.mu.Lock()
	observed := m.snapshots.source != nil
	m.snapshots.mu.Unlock()
	if !observed {
		io.WriteString(w, "ok\n") // not a daemon: the server runs, nothing more is known
		return
	}
	s, err := m.Snapshot()
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "unhealthy: %v\n", err)
		return
	}
	if ok, reasons := Health(s); !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "unhealthy: %s\n", strings.Join(reasons, "; "))
		return
	}
	io.WriteString(w, "ok\n")
}
