package netlab

import (
	"strings"
	"testing"
)

func TestGatewayRulesSNATFlags(t *testing.T) {
	const want = "\t\toifname \"wan\" ip saddr 192.0.2.0/24 counter snat ip to 203.0.113.1 fully-random\n"
	if got := gatewayRules(true, true, "fully-random"); !strings.Contains(got, want) {
		t.Errorf("gatewayRules with fully-random:\n%s\nwant the line %q", got, want)
	}
	if got := gatewayRules(false, true, "fully-random"); strings.Contains(got, "snat") {
		t.Errorf("no SNAT asked, got:\n%s", got)
	}
}
