package daemon

import (
	"testing"
	"time"
)

func TestSendClock(t *testing.T) {
	const iv = 50 * time.Millisecond
	t0 := time.Unix(1_700_000_000, 0)
	var c sendClock
	steps := []struct {
		at            time.Duration
		late, largest time.Duration
	}{
		{0, 0, 0}, // the first: nothing to compare with
		{60 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},    // the tick's grain
		{240 * time.Millisecond, 130 * time.Millisecond, 130 * time.Millisecond}, // held up
		{250 * time.Millisecond, 0, 130 * time.Millisecond},                      // early (a role change): not negative
		{70 * time.Second, 69700 * time.Millisecond, 69700 * time.Millisecond},   // the next window
		{125 * time.Second, 54950 * time.Millisecond, 69700 * time.Millisecond},  // the previous window still counts
	}
	for _, s := range steps {
		late, largest := c.sent(t0.Add(s.at), iv)
		if late != s.late || largest != s.largest {
			t.Errorf("at %v: late %v largest %v, want %v and %v", s.at, late, largest, s.late, s.largest)
		}
	}
	// Two windows of heartbeats on time forget the hold-ups.
	at := t0.Add(125 * time.Second)
	var largest time.Duration
	for range int(2 * jitterWindow / iv) {
		at = at.Add(iv)
		_, largest = c.sent(at, iv)
	}
	if largest != 0 {
		t.Errorf("after two windows on time: largest %v, want 0", largest)
	}
}

// TestCopyWindow: the sender covers a late loop for a dead interval, and
// for no less than minCopyWindow when the dead interval is shorter (10 ms x
// 3 under load); the default timings keep their dead interval.
func TestCopyWindow(t *testing.T) {
	for _, tc := range []struct{ dead, want time.Duration }{
		{30 * time.Millisecond, minCopyWindow},
		{150 * time.Millisecond, 150 * time.Millisecond},
		{1200 * time.Millisecond, 1200 * time.Millisecond},
	} {
		if got := copyWindow(tc.dead); got != tc.want {
			t.Errorf("copyWindow(%v) = %v, want %v", tc.dead, got, tc.want)
		}
	}
}
