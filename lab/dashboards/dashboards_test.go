// Package dashboards tests what hagate ships for Grafana: the dashboard's
// queries are PromQL and name only metrics hagate exports. It lives in the
// lab module so that the Prometheus parser stays out of the product's
// dependencies.
package dashboards

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/hagate/hagate/internal/metrics"
)

// grafanaVars are Grafana's variables in queries, as PromQL values.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h", "${job}", "x", "$job", "x")

// queries lists every PromQL expression of the dashboard: the panels'
// targets and the annotations.
func queries(t *testing.T, path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Templating struct {
			List []struct{ Name, Type string }
		}
		Annotations struct {
			List []struct{ Name, Expr string }
		}
		Panels []struct {
			Title   string
			Targets []struct{ Expr, RefID string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct{ Name, Type string }) bool { return v.Type == "datasource" }) {
		t.Error("the dashboard has no data source variable: it cannot be imported against another Prometheus")
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out["panel "+p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	for _, a := range d.Annotations.List {
		out["annotation "+a.Name] = a.Expr
	}
	return out
}

var hagateName = regexp.MustCompile(`^hagate_`)

func TestDashboardQueries(t *testing.T) {
	exported := metrics.New().Names()
	qs := queries(t, "../../dist/grafana/hagate.json")
	if len(qs) < 10 {
		t.Fatalf("only %d queries found", len(qs))
	}
	for where, q := range qs {
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(q))
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", where, q, err)
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			if !hagateName.MatchString(vs.Name) || !slices.Contains(exported, vs.Name) {
				t.Errorf("%s: %s is not a metric hagate exports", where, vs.Name)
			}
			return nil
		})
	}
}
