package bench

import (
	"testing"

	"github.com/hagate/hagate/internal/sessions/session"
)

// TestSyntheticSession checks that the churn generator makes the sessions
// SyntheticFlow describes, which the rest of the suite counts.
func TestSyntheticSession(t *testing.T) {
	for _, i := range []int{0, 1, portsPerBlock - 1, portsPerBlock, 17 * portsPerBlock, maxSynthSession - 1} {
		s, f := syntheticSession(i), SyntheticFlow(i)
		o, r := f.TupleOrig, f.TupleReply
		tuple := func(src, dst [16]byte, sport, dport uint16) session.Tuple {
			return session.Tuple{Src: src, Dst: dst, SrcPort: sport, DstPort: dport}
		}
		wantOrig := tuple(session.Addr16(o.IP.SourceAddress), session.Addr16(o.IP.DestinationAddress), o.Proto.SourcePort, o.Proto.DestinationPort)
		wantReply := tuple(session.Addr16(r.IP.SourceAddress), session.Addr16(r.IP.DestinationAddress), r.Proto.SourcePort, r.Proto.DestinationPort)
		if s.Orig != wantOrig || s.Reply != wantReply {
			t.Errorf("%d: %v, want orig %v reply %v", i, s, wantOrig, wantReply)
		}
		if s.Proto != o.Proto.Protocol || s.Mark != f.Mark || s.Timeout != f.Timeout || s.TCP.State != f.ProtoInfo.TCP.State {
			t.Errorf("%d: %v, want %+v", i, s, f)
		}
		if !s.IsNAT() || s.Status&session.StatusSrcNAT == 0 {
			t.Errorf("%d: %v is not source-NATed", i, s)
		}
	}
}
