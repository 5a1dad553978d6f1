package netlab

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFaultRules(t *testing.T) {
	const head = "table bridge lab {}\ndelete table bridge lab\ntable bridge lab {\n" +
		"\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n"
	const tail = "\t}\n}\n"
	tests := []struct {
		name string
		cut  map[string]bool
		loss map[string]int
		want string
	}{
		{"none", nil, nil, head + tail},
		{"cut", map[string]bool{"gw1-lan": true}, nil, head +
			"\t\tiifname \"gw1-lan\" counter drop\n" +
			"\t\toifname \"gw1-lan\" counter drop\n" + tail},
		{"healed entry ignored", map[string]bool{"gw1-lan": false}, nil, head + tail},
		{"loss", nil, map[string]int{"gw2-wan": 30}, head +
			"\t\tiifname \"gw2-wan\" numgen random mod 100 < 30 counter drop\n" +
			"\t\toifname \"gw2-wan\" numgen random mod 100 < 30 counter drop\n" + tail},
		{"total loss is a drop", nil, map[string]int{"gw2-wan": 100}, head +
			"\t\tiifname \"gw2-wan\" counter drop\n" +
			"\t\toifname \"gw2-wan\" counter drop\n" + tail},
		{"cut wins over loss, sorted", map[string]bool{"gw2-ha": true}, map[string]int{"gw2-ha": 5, "gw1-ha": 1}, head +
			"\t\tiifname \"gw1-ha\" numgen random mod 100 < 1 counter drop\n" +
			"\t\toifname \"gw1-ha\" numgen random mod 100 < 1 counter drop\n" +
			"\t\tiifname \"gw2-ha\" counter drop\n" +
			"\t\toifname \"gw2-ha\" counter drop\n" + tail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, faultRules(tt.cut, tt.loss, false)); diff != "" {
				t.Errorf("faultRules mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGatewayRules(t *testing.T) {
	chains := func(stmt string) string {
		return "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n" + stmt + "\t}\n" +
			"\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n" + stmt + "\t}\n"
	}
	fwdDrop, fwdCount := chains("\t\tct state invalid counter drop\n"), chains("\t\tct state invalid counter\n")
	const nat = "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n" +
		"\t\toifname \"wan\" ip saddr 192.0.2.0/24 counter snat ip to 203.0.113.1\n\t}\n"
	const head = "table inet lab {}\ndelete table inet lab\ntable inet lab {\n"
	tests := []struct {
		snat, drop bool
		want       string
	}{
		{true, true, head + fwdDrop + nat + "}\n"},
		{false, true, head + fwdDrop + "}\n"},
		{true, false, head + fwdCount + nat + "}\n"},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, gatewayRules(tt.snat, tt.drop)); diff != "" {
			t.Errorf("gatewayRules(%v, %v) mismatch (-want +got):\n%s", tt.snat, tt.drop, diff)
		}
	}
}

func TestWaitFor(t *testing.T) {
	calls := 0
	if err := WaitFor(time.Second, time.Millisecond, func() (bool, error) {
		calls++
		return calls == 3, nil
	}); err != nil || calls != 3 {
		t.Errorf("WaitFor = %v after %d calls, want nil after 3", err, calls)
	}
	boom := errors.New("boom")
	if err := WaitFor(time.Second, time.Millisecond, func() (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Errorf("WaitFor with a failing condition = %v, want %v", err, boom)
	}
	calls = 0
	err := WaitFor(0, time.Millisecond, func() (bool, error) { calls++; return false, nil })
	if !errors.Is(err, ErrTimeout) || calls != 1 {
		t.Errorf("WaitFor(0) = %v after %d calls, want ErrTimeout after 1", err, calls)
	}
}
