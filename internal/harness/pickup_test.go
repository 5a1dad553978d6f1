package harness

import (
	"testing"
	"time"

	"github.com/hagate/hagate/internal/lab"
)

const pickupOn = "session_pickup:\n  enabled: true\n"
const pickupOff = "session_pickup:\n  enabled: false\n"

// startSession opens the long-lived echo session through the primary and
// waits until it has exchanged a few messages (and the primary has synced
// it).
func startSession(t *testing.T, c *Cluster) *Session {
	t.Helper()
	if err := c.StartEchoServer(); err != nil {
		t.Fatal(err)
	}
	var s *Session
	err := lab.WaitFor(5*time.Second, 200*time.Millisecond, func() (bool, error) {
		var err error
		if s, err = c.StartSession(50 * time.Millisecond); err != nil {
			return false, err
		}
		time.Sleep(500 * time.Millisecond)
		if r, err := s.Progress(); err == nil && r.Received > 3 && s.Alive() {
			return true, nil
		}
		s.Stop()
		return false, nil
	})
	if err != nil {
		t.Fatalf("echo session never started: %v", err)
	}
	time.Sleep(time.Second)
	return s
}

// finish lets the session run on after the failover and returns its report.
func finish(t *testing.T, s *Session) (survived bool, report string) {
	t.Helper()
	time.Sleep(3 * time.Second)
	r, err := s.Stop()
	if err != nil {
		t.Fatal(err)
	}
	return r.Survived, r.String()
}

// The test: a long-lived TCP session through the virtual IP with
// SNAT, strict TCP tracking, a message every 50 ms; the primary loses power
// (heartbeat link first). With session pickup it carries on through the new
// primary with no reset and no lost or duplicated bytes; without it, the
// new primary drops the session's packets as invalid and it dies.
func TestSessionSurvivesPowerLoss(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra string
		want  bool
	}{{"pickup", pickupOn, true}, {"no-pickup", pickupOff, false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := setup(t, 3, Options{Extra: tc.extra}, lab.Options{})
			c.StartAll()
			mustHolder(t, c, 15*time.Second, "gw1")
			s := startSession(t, c)
			if err := c.PowerOff("gw1"); err != nil {
				t.Fatal(err)
			}
			mustHolder(t, c, 10*time.Second, "gw2")
			survived, rep := finish(t, s)
			t.Logf("session: %s", rep)
			if survived != tc.want {
				t.Fatalf("survived %v, want %v: %s", survived, tc.want, rep)
			}
		})
	}
}

// Link failover (the primary's wan link down) and the failover back when it
// returns (within the uptime margin, priority brings gw1 back): the session
// survives both.
func TestSessionSurvivesLinkFailoverAndBack(t *testing.T) {
	c := setup(t, 2, Options{Extra: pickupOn}, lab.Options{})
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	s := startSession(t, c)
	if err := c.Lab.LinkDown("gw1", lab.WAN); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 5*time.Second, "gw2")
	time.Sleep(2 * time.Second)
	if r, _ := s.Progress(); r.Err != "" || !s.Alive() {
		t.Fatalf("after link failover: %s", r)
	}
	if err := c.Lab.LinkUp("gw1", lab.WAN); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 10*time.Second, "gw1")
	survived, rep := finish(t, s)
	t.Logf("session: %s", rep)
	if !survived {
		t.Fatalf("session did not survive link failover and back: %s", rep)
	}
}
