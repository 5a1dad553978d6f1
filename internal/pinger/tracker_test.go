package pinger

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// step is one probe outcome at an offset from t0, and what must follow.
type step struct {
	at      time.Duration
	ok      bool
	up      bool
	changed bool
	state   State
}

func TestTrackerTable(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name     string
		failures int
		flip     time.Duration
		steps    []step
	}{
		{
			name: "first answer brings a new target up", failures: 3, flip: 10 * s,
			steps: []step{
				{0, true, true, true, StateUp},
				{s, true, true, false, StateUp},
			},
		},
		{
			name: "failures before the first answer do not delay it", failures: 3, flip: 10 * s,
			steps: []step{
				{0, false, false, false, StatePending},
				{s, false, false, false, StatePending},
				{2 * s, true, true, true, StateUp},
			},
		},
		{
			name: "never answering is down after the threshold", failures: 2, flip: 10 * s,
			steps: []step{
				{0, false, false, false, StatePending},
				{s, false, false, false, StateDown},
				{2 * s, true, false, false, StateRecovering},
				{12 * s, true, true, true, StateUp},
			},
		},
		{
			name: "down after exactly the threshold", failures: 3, flip: 0,
			steps: []step{
				{0, true, true, true, StateUp},
				{s, false, true, false, StateUp},
				{2 * s, false, true, false, StateUp},
				{3 * s, false, false, true, StateDown},
				{4 * s, false, false, false, StateDown},
			},
		},
		{
			name: "an answer resets the count", failures: 2, flip: 0,
			steps: []step{
				{0, true, true, true, StateUp},
				{s, false, true, false, StateUp},
				{2 * s, true, true, false, StateUp},
				{3 * s, false, true, false, StateUp},
				{4 * s, false, false, true, StateDown},
			},
		},
		{
			name: "flip timeout 0: up at the first answer", failures: 1, flip: 0,
			steps: []step{
				{0, true, true, true, StateUp},
				{s, false, false, true, StateDown},
				{2 * s, true, true, true, StateUp},
			},
		},
		{
			name: "up only after answering for the flip timeout", failures: 1, flip: 3 * s,
			steps: []step{
				{0, true, true, true, StateUp},
				{s, false, false, true, StateDown},
				{2 * s, true, false, false, StateRecovering},
				{3 * s, true, false, false, StateRecovering},
				{4 * s, true, false, false, StateRecovering},
				{5 * s, true, true, true, StateUp},
			},
		},
		{
			name: "a failure while recovering restarts the wait", failures: 3, flip: 3 * s,
			steps: []step{
				{0, true, true, true, StateUp},
				{s, false, true, false, StateUp},
				{2 * s, false, true, false, StateUp},
				{3 * s, false, false, true, StateDown},
				{4 * s, true, false, false, StateRecovering},
				{6 * s, true, false, false, StateRecovering},
				{7 * s, false, false, false, StateDown}, // one failure is enough
				{8 * s, true, false, false, StateRecovering},
				{10 * s, true, false, false, StateRecovering},
				{11 * s, true, true, true, StateUp},
			},
		},
		{
			name: "flapping stays down", failures: 1, flip: 3 * s,
			steps: []step{
				{0, true, true, true, StateUp},
				{s, false, false, true, StateDown},
				{2 * s, true, false, false, StateRecovering},
				{3 * s, false, false, false, StateDown},
				{4 * s, true, false, false, StateRecovering},
				{5 * s, false, false, false, StateDown},
				{6 * s, true, false, false, StateRecovering},
				{7 * s, false, false, false, StateDown},
			},
		},
		{
			name: "sparse probes: one late answer can end the wait", failures: 1, flip: 3 * s,
			steps: []step{
				{0, false, false, false, StateDown},
				{s, true, false, false, StateRecovering},
				{10 * s, true, true, true, StateUp},
			},
		},
		{
			name: "clock going backwards only lengthens the wait", failures: 1, flip: 3 * s,
			steps: []step{
				{10 * s, false, false, false, StateDown},
				{11 * s, true, false, false, StateRecovering},
				{5 * s, true, false, false, StateRecovering},
				{14 * s, true, true, true, StateUp},
			},
		},
		{
			name: "failures below 1 count as 1", failures: 0, flip: 0,
			steps: []step{
				{0, true, true, true, StateUp},
				{s, false, false, true, StateDown},
			},
		},
		{
			name: "negative flip counts as 0", failures: 1, flip: -s,
			steps: []step{
				{0, false, false, false, StateDown},
				{s, true, true, true, StateUp},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(tt.failures, tt.flip)
			for i, st := range tt.steps {
				up, changed := tr.Step(t0.Add(st.at), st.ok)
				if up != st.up || changed != st.changed || tr.State() != st.state || tr.Up() != up {
					t.Fatalf("step %d (%v ok=%v): got up=%v changed=%v state=%v, want up=%v changed=%v state=%v",
						i, st.at, st.ok, up, changed, tr.State(), st.up, st.changed, st.state)
				}
			}
		})
	}
}

func TestTrackerCounters(t *testing.T) {
	const s = time.Second
	tr := NewTracker(2, 5*s)
	outcomes := []bool{true, false, false, false, true, true, false, true}
	for i, ok := range outcomes {
		tr.Step(t0.Add(time.Duration(i)*s), ok)
	}
	// up, down at 2, recovering since 4, down again at 6, recovering since 7.
	got := []any{tr.State(), tr.ConsecutiveFailures(), tr.Flips(), tr.FlipLeft(t0.Add(8 * s))}
	want := []any{StateRecovering, 0, 1, 4 * s}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	tr.Step(t0.Add(8*s), false)
	tr.Step(t0.Add(9*s), false)
	if got := tr.ConsecutiveFailures(); got != 2 {
		t.Errorf("ConsecutiveFailures = %d, want 2", got)
	}
	if got := tr.FlipLeft(t0.Add(9 * s)); got != 0 {
		t.Errorf("FlipLeft while down = %v, want 0", got)
	}
	if got := tr.FlipLeft(t0.Add(99 * s)); got != 0 {
		t.Errorf("FlipLeft = %v, want 0", got)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StatePending: "pending", StateUp: "up", StateDown: "down", StateRecovering: "recovering", 9: "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", s, got, want)
		}
		if b, _ := s.MarshalText(); string(b) != want {
			t.Errorf("State(%d).MarshalText() = %q, want %q", s, b, want)
		}
	}
}

// specUp is the rule written differently from Tracker, as a check on it:
// after the outcomes ok[0..i] at times at[0..i], the target is up iff
//   - no run of `failures` consecutive failures has happened and some probe
//     was answered, or
//   - after the last such run completed, some run of answers lasted at least
//     flip (from its first answer to a later one in the same run).
func specUp(ok []bool, at []time.Duration, failures int, flip time.Duration) bool {
	down := -1 // index at which the last run of failures reached the threshold
	run := 0
	for i, o := range ok {
		if o {
			run = 0
			continue
		}
		run++
		if run >= failures {
			down = i
		}
	}
	if down < 0 {
		for _, o := range ok {
			if o {
				return true
			}
		}
		return false
	}
	start := -1
	for i := down + 1; i < len(ok); i++ {
		if !ok[i] {
			start = -1
			continue
		}
		if start < 0 {
			start = i
		}
		if at[i]-at[start] >= flip {
			return true
		}
	}
	return false
}

// TestTrackerExhaustive checks every outcome sequence up to 12 probes, one
// per second, for several thresholds and flip timeouts, against specUp.
func TestTrackerExhaustive(t *testing.T) {
	const n = 12
	for _, failures := range []int{1, 2, 3, 5} {
		for _, flip := range []time.Duration{0, time.Second, 2500 * time.Millisecond, 3 * time.Second} {
			at := make([]time.Duration, n)
			for i := range at {
				at[i] = time.Duration(i) * time.Second
			}
			for mask := range 1 << n {
				ok := make([]bool, n)
				for i := range ok {
					ok[i] = mask&(1<<i) != 0
				}
				if msg := checkAgainstSpec(ok, at, failures, flip); msg != "" {
					t.Fatalf("failures=%d flip=%v: %s", failures, flip, msg)
				}
			}
		}
	}
}

// TestTrackerIrregularTimes checks random outcome sequences at irregular
// times (probes delayed, clock jumps) against specUp.
func TestTrackerIrregularTimes(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		failures := rapid.IntRange(1, 6).Draw(rt, "failures")
		flip := time.Duration(rapid.IntRange(0, 5000).Draw(rt, "flipMs")) * time.Millisecond
		n := rapid.IntRange(0, 60).Draw(rt, "n")
		ok := make([]bool, n)
		at := make([]time.Duration, n)
		var now time.Duration
		for i := range n {
			now += time.Duration(rapid.IntRange(0, 3000).Draw(rt, "gapMs")) * time.Millisecond
			at[i] = now
			ok[i] = rapid.Bool().Draw(rt, "ok")
		}
		if msg := checkAgainstSpec(ok, at, failures, flip); msg != "" {
			rt.Fatalf("failures=%d flip=%v: %s", failures, flip, msg)
		}
	})
}

// checkAgainstSpec feeds the outcomes to a Tracker and compares up, changed
// and the failure count after every step with the spec.
func checkAgainstSpec(ok []bool, at []time.Duration, failures int, flip time.Duration) string {
	tr := NewTracker(failures, flip)
	prev, consecutive, flips := false, 0, 0
	for i := range ok {
		up, changed := tr.Step(t0.Add(at[i]), ok[i])
		want := specUp(ok[:i+1], at[:i+1], failures, flip)
		if ok[i] {
			consecutive = 0
		} else {
			consecutive++
		}
		if prev && !want {
			flips++
		}
		if up != want || changed != (want != prev) || tr.ConsecutiveFailures() != consecutive || tr.Flips() != flips {
			return fmt.Sprintf("outcomes %v at %v: step %d got up=%v changed=%v failures=%d flips=%d, want up=%v changed=%v failures=%d flips=%d",
				ok[:i+1], at[:i+1], i, up, changed, tr.ConsecutiveFailures(), tr.Flips(), want, want != prev, consecutive, flips)
		}
		if (tr.State() == StateUp) != up {
			return fmt.Sprintf("step %d: state %v but up=%v", i, tr.State(), up)
		}
		prev = want
	}
	return ""
}
