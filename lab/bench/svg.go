package bench

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"strconv"
)

// A Chart is a line or scatter chart rendered to SVG by hand: the suite
// needs a handful of charts, not a plotting library.
type Chart struct {
	Title  string
	XLabel string
	YLabel string
	XLog   bool // logarithmic axes: every value must be > 0
	YLog   bool
	// YMin/YMax, if YMax > YMin, fix the y range instead of fitting it.
	YMin, YMax float64
	Series     []Series
	// Marks are labelled vertical lines (e.g. "fault" at x = 0).
	Marks []Mark
	Notes []string // lines under the chart
}

// Series is one named set of points.
type Series struct {
	Name   string
	Color  string // any SVG colour
	Points []Point
	Line   bool // join the points
	Dots   bool // draw each point
	// Top points are drawn as crosses along the top edge (values that are
	// off the chart, e.g. records never echoed), only their x counts.
	Top []float64
}

// Point is one (x, y) value.
type Point struct{ X, Y float64 }

// Mark is a labelled vertical line.
type Mark struct {
	X     float64
	Label string
}

// Colours of the two systems, the same on every chart.
const (
	colorHagate     = "#1f77b4"
	colorHagateHeld = "#17becf"
	colorKAD        = "#d62728"
)

const (
	svgW, svgH             = 860, 440
	padL, padR, padT, padB = 80, 30, 60, 70
	plotW, plotH           = svgW - padL - padR, svgH - padT - padB
)

// axis maps data values to pixels.
type axis struct {
	lo, hi float64
	log    bool
	px0    float64 // pixel of lo
	px1    float64 // pixel of hi
}

func (a axis) pos(v float64) float64 {
	lo, hi := a.lo, a.hi
	if a.log {
		v, lo, hi = math.Log10(max(v, a.lo)), math.Log10(lo), math.Log10(hi)
	}
	if hi == lo {
		return (a.px0 + a.px1) / 2
	}
	return a.px0 + (v-lo)/(hi-lo)*(a.px1-a.px0)
}

// ticks returns "nice" tick values between lo and hi.
func (a axis) ticks() []float64 {
	var t []float64
	if a.log {
		for e := math.Floor(math.Log10(a.lo)); e <= math.Ceil(math.Log10(a.hi)) && len(t) < 20; e++ {
			v := math.Pow(10, e)
			if v >= a.lo*(1-1e-9) && v <= a.hi*(1+1e-9) {
				t = append(t, v)
			}
		}
		return t
	}
	span := a.hi - a.lo
	if span <= 0 {
		return []float64{a.lo}
	}
	step := math.Pow(10, math.Floor(math.Log10(span/5)))
	for _, m := range []float64{1, 2, 5, 10} {
		if span/(step*m) <= 8 {
			step *= m
			break
		}
	}
	for k := math.Ceil(a.lo / step); k*step <= a.hi+step*1e-9 && len(t) < 20; k++ {
		v := k * step
		if v == 0 {
			v = 0 // not -0
		}
		t = append(t, v)
	}
	return t
}

// fitRange returns a range covering vals with a margin; log ranges snap
// to decades.
func fitRange(vals []float64, log bool) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) || (log && v <= 0) {
			continue
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	if math.IsInf(lo, 1) {
		if log {
			return 1, 10
		}
		return 0, 1
	}
	if log {
		return math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)+1e-9))
	}
	if lo == hi {
		return lo - 1, hi + 1
	}
	if lo > 0 && lo < (hi-lo)/2 {
		lo = 0
	}
	return lo, hi + (hi-lo)*0.05
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// drawable leaves out points that cannot be placed: NaN or infinite, or
// not positive on a log axis.
func (c Chart) drawable(pts []Point) []Point {
	var out []Point
	for _, p := range pts {
		if finite(p.X) && finite(p.Y) && !(c.XLog && p.X <= 0) && !(c.YLog && p.Y <= 0) {
			out = append(out, p)
		}
	}
	return out
}

func fmtTick(v float64) string {
	if v != 0 && (math.Abs(v) >= 1e6 || math.Abs(v) < 1e-3) {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	if math.Abs(v) >= 1000 && v == math.Trunc(v) {
		if math.Mod(v, 1000) == 0 {
			return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
		}
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// SVG renders the chart as a standalone SVG document.
func (c Chart) SVG() []byte {
	var xs, ys []float64
	for _, s := range c.Series {
		for _, p := range s.Points {
			xs, ys = append(xs, p.X), append(ys, p.Y)
		}
		xs = append(xs, s.Top...)
	}
	for _, m := range c.Marks {
		xs = append(xs, m.X)
	}
	xlo, xhi := fitRange(xs, c.XLog)
	ylo, yhi := fitRange(ys, c.YLog)
	if c.YMax > c.YMin {
		ylo, yhi = c.YMin, c.YMax
	}
	ax := axis{lo: xlo, hi: xhi, log: c.XLog, px0: padL, px1: padL + plotW}
	ay := axis{lo: ylo, hi: yhi, log: c.YLog, px0: padT + plotH, px1: padT}

	var b bytes.Buffer
	h := html.EscapeString
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgW, svgH+16*len(c.Notes), svgW, svgH+16*len(c.Notes))
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", padL, h(c.Title))
	// Grid and ticks.
	for _, t := range ax.ticks() {
		x := ax.pos(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e5e5e5"/>`+"\n", x, padT, x, padT+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, padT+plotH+18, h(fmtTick(t)))
	}
	for _, t := range ay.ticks() {
		y := ay.pos(t)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e5e5e5"/>`+"\n", padL, y, padL+plotW, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", padL-6, y, h(fmtTick(t)))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", padL, padT, plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", padL+plotW/2, padT+plotH+40, h(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(20 %d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", padT+plotH/2, h(c.YLabel))
	for _, m := range c.Marks {
		if !finite(m.X) || (c.XLog && m.X <= 0) {
			continue
		}
		x := ax.pos(m.X)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#555" stroke-dasharray="4 3"/>`+"\n", x, padT, x, padT+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#555">%s</text>`+"\n", x+4, padT+12, h(m.Label))
	}
	// Data, clipped to the plot area.
	fmt.Fprintf(&b, `<clipPath id="plot"><rect x="%d" y="%d" width="%d" height="%d"/></clipPath>`+"\n", padL, padT-6, plotW, plotH+6)
	fmt.Fprintf(&b, `<g clip-path="url(#plot)">`+"\n")
	for _, s := range c.Series {
		s.Points = c.drawable(s.Points)
		if s.Line && len(s.Points) > 1 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="`, h(s.Color))
			for i, p := range s.Points {
				if i > 0 {
					b.WriteByte(' ')
				}
				fmt.Fprintf(&b, "%.1f,%.1f", ax.pos(p.X), ay.pos(p.Y))
			}
			b.WriteString(`"/>` + "\n")
		}
		if s.Dots {
			for _, p := range s.Points {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`+"\n", ax.pos(p.X), ay.pos(p.Y), h(s.Color))
			}
		}
		for _, x := range s.Top {
			if !finite(x) || (c.XLog && x <= 0) {
				continue
			}
			px := ax.pos(x)
			fmt.Fprintf(&b, `<path d="M%.1f %d l6 6 m0 -6 l-6 6" stroke="%s"/>`+"\n", px-3, padT-3, h(s.Color))
		}
	}
	b.WriteString("</g>\n")
	// Legend.
	// Top right, on a white box: names run up to about 60 characters.
	const legendW = 430
	lx := padL + plotW - legendW - 6
	if len(c.Series) > 0 {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="white" fill-opacity="0.85" stroke="#ccc"/>`+"\n",
			lx, padT+6, legendW, 18*len(c.Series)+6)
	}
	for i, s := range c.Series {
		y := padT + 18 + 18*i
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="4" fill="%s"/>`, lx+6, y-6, h(s.Color))
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", lx+26, y, h(s.Name))
	}
	for i, n := range c.Notes {
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#444">%s</text>`+"\n", padL, svgH+16*i, h(n))
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}
