package daemon

import (
	"testing"
	"time"
)

// session_pickup.dump_interval as the engine takes it: unset is its
// default (by table size), 0 is off (negative), a period stays.
func TestDumpIntervalToEngine(t *testing.T) {
	d := func(v time.Duration) *time.Duration { return &v }
	for _, tt := range []struct {
		in   *time.Duration
		want time.Duration
	}{{nil, 0}, {d(0), -1}, {d(30 * time.Second), 30 * time.Second}} {
		if got := dumpInterval(tt.in); got != tt.want {
			t.Errorf("dumpInterval(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
