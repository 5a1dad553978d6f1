package pinger

import (
	"fmt"
	"time"
)

// State is where a target stands in the up/down cycle.
type State uint8

const (
	// StatePending: no answer yet, and fewer than Failures failed probes.
	// Counted as down: a member claims a ping server only once it answered.
	StatePending State = iota
	// StateUp: answering, or fewer than Failures consecutive failures since.
	StateUp
	// StateDown: Failures consecutive probes failed, and it has not answered
	// since (or its last answer was followed by a failure).
	StateDown
	// StateRecovering: down, answering again, waiting out the flip timeout.
	// Still counted as down.
	StateRecovering
)

var stateNames = [...]string{
	StatePending:    "pending",
	StateUp:         "up",
	StateDown:       "down",
	StateRecovering: "recovering",
}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// MarshalText makes the state readable in hagate's JSON status.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText wrote (the CLI decodes the status).
func (s *State) UnmarshalText(b []byte) error {
	for i, name := range stateNames {
		if name == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("unknown ping target state %q", b)
}

// Tracker decides whether one target counts as up from the outcomes of its
// probes. It is pure: time comes in with each outcome, so it is tested with
// a fake clock. The zero value is not ready to use; call NewTracker. Not
// safe for concurrent use.
type Tracker struct {
	threshold int           // consecutive failures that take it down
	flip      time.Duration // answering time needed to come back up

	state       State
	consecutive int       // consecutive failed probes, 0 after an answer
	since       time.Time // StateRecovering: the first answer of the current run
	flips       int       // times it went from up to down
}

// NewTracker returns a tracker in StatePending. failures below 1 count as 1;
// a negative flipTimeout counts as 0 (up again at the first answer).
func NewTracker(failures int, flipTimeout time.Duration) *Tracker {
	return &Tracker{threshold: max(failures, 1), flip: max(flipTimeout, 0)}
}

// Step records the outcome of one probe finished at now and reports whether
// the target counts as up afterwards, and whether that changed.
//
// A target goes down after Failures consecutive failures, whether it was up
// or had never answered. Once down it must answer continuously for the flip
// timeout before it counts as up again: any failure restarts the wait, so a
// flapping target keeps the member's lowered rank instead of bouncing the
// cluster back and forth (FGCP's pingserver-flip-timeout).
func (t *Tracker) Step(now time.Time, ok bool) (up, changed bool) {
	was := t.state == StateUp
	if ok {
		t.consecutive = 0
		switch t.state {
		case StatePending:
			t.state = StateUp
		case StateDown:
			t.state = StateRecovering
			t.since = now
		}
		if t.state == StateRecovering && now.Sub(t.since) >= t.flip {
			t.state = StateUp
		}
	} else {
		t.consecutive++
		switch t.state {
		case StatePending, StateUp:
			if t.consecutive >= t.threshold {
				t.state = StateDown
			}
		case StateRecovering:
			t.state = StateDown
		}
	}
	up = t.state == StateUp
	if was && !up {
		t.flips++
	}
	return up, up != was
}

// Up reports whether the target counts as up.
func (t *Tracker) Up() bool { return t.state == StateUp }

// State returns the target's state.
func (t *Tracker) State() State { return t.state }

// ConsecutiveFailures returns the failed probes since the last answer.
func (t *Tracker) ConsecutiveFailures() int { return t.consecutive }

// Flips returns how many times the target went from up to down.
func (t *Tracker) Flips() int { return t.flips }

// FlipLeft returns, while recovering, how much longer the target must keep
// answering to count as up; 0 in every other state.
func (t *Tracker) FlipLeft(now time.Time) time.Duration {
	if t.state != StateRecovering {
		return 0
	}
	return max(t.flip-now.Sub(t.since), 0)
}
