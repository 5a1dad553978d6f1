package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

// wellFormed parses an SVG document fully and returns its root element.
func wellFormed(t *testing.T, doc []byte) string {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	return root
}

func TestChartSVG(t *testing.T) {
	charts := map[string]Chart{
		"empty": {Title: "nothing"},
		"escaping": {Title: `gap < 1 s & "fast"`, XLabel: "x <", YLabel: "y >",
			Series: []Series{{Name: "a&b", Color: colorHagate, Points: []Point{{0, 1}, {1, 2}}, Line: true, Dots: true}}},
		"log axes, NaN and non-positive values": {XLog: true, YLog: true, YMin: 0.01, YMax: 1e5,
			Series: []Series{{Name: "s", Color: colorKAD, Points: []Point{{1000, 0.2}, {1e6, 1.7}, {0, -1}, {math.NaN(), 3}}, Line: true, Top: []float64{2000}}},
			Marks:  []Mark{{X: 1000, Label: "fault"}}, Notes: []string{"note <1>"}},
		"one point": {Series: []Series{{Name: "s", Points: []Point{{3, 3}}, Dots: true}}},
	}
	for name, ch := range charts {
		t.Run(name, func(t *testing.T) {
			doc := ch.SVG()
			if root := wellFormed(t, doc); root != "svg" {
				t.Errorf("root element %q, want svg", root)
			}
			if bytes.Contains(doc, []byte("NaN")) || bytes.Contains(doc, []byte("Inf")) {
				t.Errorf("SVG holds NaN or Inf coordinates:\n%s", doc)
			}
		})
	}
}

func TestChartLegendNamesEverySeries(t *testing.T) {
	doc := string(Chart{Series: []Series{{Name: "hagate"}, {Name: "keepalived+conntrackd"}}}.SVG())
	for _, n := range []string{">hagate<", ">keepalived+conntrackd<"} {
		if !strings.Contains(doc, n) {
			t.Errorf("legend lacks %s", n)
		}
	}
}

func TestAxisTicks(t *testing.T) {
	lin := axis{lo: 0, hi: 7.3}
	ticks := lin.ticks()
	if len(ticks) < 3 || len(ticks) > 9 || ticks[0] != 0 {
		t.Errorf("linear ticks %v", ticks)
	}
	for _, v := range (axis{lo: -1.3, hi: 12.4}).ticks() {
		if s := fmtTick(v); s == "-0" {
			t.Errorf("tick %v written as -0", v)
		}
	}
	lg := axis{lo: 0.01, hi: 1e5, log: true}
	if got := len(lg.ticks()); got != 8 {
		t.Errorf("log ticks %v, want the 8 decades", lg.ticks())
	}
}
