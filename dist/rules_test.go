package dist

import (
	"os/exec"
	"testing"
)

// The alert rules load and each fires on its failure and stays quiet on a
// healthy cluster (prometheus/hagate-rules_test.yml), as promtool judges.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; make deps installs it): alert rules not tested")
	}
	for _, args := range [][]string{
		{"check", "rules", "hagate-rules.yml"},
		{"test", "rules", "hagate-rules_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
