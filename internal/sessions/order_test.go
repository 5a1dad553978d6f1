package sessions

import (
	"testing"

	"github.com/hagate/hagate/internal/sessions/session"
)

// TestBulkRank: a session's rank counts the doublings of how far its
// timeout is below the longest of its class (protocol and TCP state) among
// the synced sessions, IPv6 ones included; a session not synced yet does
// not set the longest.
func TestBulkRank(t *testing.T) {
	e, err := NewEngine(EngineConfig{NodeID: "gw1"}, NewMemory(16))
	if err != nil {
		t.Fatal(err)
	}
	put := func(s session.Session, synced bool) session.Session {
		e.tab.put(&s, entry{synced: synced})
		return s
	}
	tcp := func(i int, timeout uint32) session.Session {
		s := synthSession(i)
		s.Timeout = timeout
		return s
	}
	udp6 := func(i int, timeout uint32) session.Session {
		s := synthSession(i)
		s.Family, s.Proto, s.TCP = session.FamilyIPv6, session.ProtoUDP, session.TCPInfo{}
		s.Orig.Src, s.Orig.Dst = addr16("2001:db8::1"), addr16("2001:db8::2")
		s.Reply = s.Orig.Invert(s.Proto)
		s.Timeout = timeout
		return s
	}
	put(tcp(0, 1000), false) // not synced: the longest TCP one is 500
	cases := []struct {
		s    session.Session
		rank int
	}{
		{put(tcp(1, 500), true), 0},
		{put(tcp(2, 499), true), 1},
		{put(tcp(3, 496), true), 3},
		{put(udp6(4, 120), true), 0},
		{put(udp6(5, 100), true), 5},
	}
	rank := e.bulkRankLocked()
	for _, c := range cases {
		if got := rank(&session.Change{Op: session.Upsert, Session: c.s}); got != c.rank {
			t.Errorf("%v timeout %d: rank %d, want %d", c.s.Proto, c.s.Timeout, got, c.rank)
		}
	}
}
