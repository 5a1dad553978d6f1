// Command hagate-charts draws the main dashboard panels as PNG line charts
// from metrics recorded during a lab failover (see TestMetricsThroughFailover
// and HAGATE_METRICS_RECORD), for docs/observability.md. Standard library
// only: one line per member, in the colours the docs name.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type recording struct {
	Scrapes []struct {
		At      time.Time          `json:"at"`
		Member  string             `json:"member"`
		Samples map[string]float64 `json:"samples"`
	} `json:"scrapes"`
}

// colours per member: gw1 red, gw2 blue, gw3 green.
var colours = map[string]color.RGBA{
	"gw1": {200, 40, 40, 255}, "gw2": {40, 80, 200, 255}, "gw3": {30, 150, 60, 255},
}

// chart is one panel: a value per scrape of each member.
type chart struct {
	file  string
	value func(s map[string]float64) (float64, bool)
}

func sum(prefix string) func(map[string]float64) (float64, bool) {
	return func(s map[string]float64) (float64, bool) {
		var v float64
		found := false
		for k, x := range s {
			if k == prefix || strings.HasPrefix(k, prefix+"{") || (strings.Contains(prefix, "{") && strings.HasPrefix(k, prefix)) {
				v += x
				found = true
			}
		}
		return v, found
	}
}

func main() {
	in := flag.String("in", "", "recording (JSON) from HAGATE_METRICS_RECORD")
	out := flag.String("out", "docs/img", "directory for the PNGs")
	flag.Parse()
	b, err := os.ReadFile(*in)
	if err != nil {
		log.Fatal(err)
	}
	var r recording
	if err := json.Unmarshal(b, &r); err != nil {
		log.Fatalf("%s: %v", *in, err)
	}
	charts := []chart{
		{"role.png", func(s map[string]float64) (float64, bool) {
			p, ok1 := s[`hagate_role{role="primary"}`]
			sub, ok2 := s[`hagate_role{role="subordinate"}`]
			return 2*p + sub, ok1 && ok2
		}},
		{"failovers.png", sum("hagate_failovers_total")},
		{"peers-up.png", sum("hagate_peer_up")},
		{"sessions-synced.png", sum("hagate_sessions_synced")},
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	for _, c := range charts {
		if err := draw(filepath.Join(*out, c.file), r, c.value); err != nil {
			log.Fatal(err)
		}
	}
}

const w, h, margin = 640, 200, 20

// draw plots each member's values against time, scaled to the chart.
func draw(path string, r recording, value func(map[string]float64) (float64, bool)) error {
	type point struct {
		t time.Time
		v float64
	}
	lines := map[string][]point{}
	var t0, t1 time.Time
	lo, hi := 0.0, 1.0
	for _, s := range r.Scrapes {
		v, ok := value(s.Samples)
		if !ok {
			continue
		}
		lines[s.Member] = append(lines[s.Member], point{s.At, v})
		if t0.IsZero() || s.At.Before(t0) {
			t0 = s.At
		}
		if s.At.After(t1) {
			t1 = s.At
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	if len(lines) == 0 {
		return fmt.Errorf("%s: no data", path)
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	grey := color.RGBA{200, 200, 200, 255}
	for x := margin; x < w-margin; x++ { // axes
		img.Set(x, h-margin, grey)
	}
	for y := margin; y < h-margin; y++ {
		img.Set(margin, y, grey)
	}
	span := t1.Sub(t0).Seconds()
	px := func(p point) (int, int) {
		x := margin + int(p.t.Sub(t0).Seconds()/span*float64(w-3*margin))
		y := h - margin - int((p.v-lo)/(hi-lo)*float64(h-3*margin))
		return x, y
	}
	members := make([]string, 0, len(lines))
	for m := range lines {
		members = append(members, m)
	}
	slices.Sort(members)
	for i, m := range members {
		c := colours[m]
		for j := 1; j < len(lines[m]); j++ {
			x0, y0 := px(lines[m][j-1])
			x1, y1 := px(lines[m][j])
			// Step lines: a gauge holds its value until the next scrape.
			// Each member is offset by a pixel so that equal lines stay visible.
			line(img, x0, y0-i, x1, y0-i, c)
			line(img, x1, y0-i, x1, y1-i, c)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	for x := min(x0, x1); x <= max(x0, x1); x++ {
		for y := min(y0, y1); y <= max(y0, y1); y++ {
			img.Set(x, y, c)
			img.Set(x, y+1, c)
		}
	}
}
