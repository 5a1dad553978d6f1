package bench

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/hagate/hagate/lab/echo"
)

// Summary is the median and spread of repeated measurements.
type Summary struct {
	N        int
	Median   float64
	Min, Max float64
	P25, P75 float64 // quartiles, by linear interpolation
}

// Summarize summarises values; NaN values (runs that measured nothing) are
// left out. The zero Summary (N == 0) means nothing was measured.
func Summarize(values []float64) Summary {
	v := make([]float64, 0, len(values))
	for _, x := range values {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{}
	}
	sort.Float64s(v)
	return Summary{
		N:      len(v),
		Median: quantile(v, 0.5),
		Min:    v[0],
		Max:    v[len(v)-1],
		P25:    quantile(v, 0.25),
		P75:    quantile(v, 0.75),
	}
}

// quantile of sorted values, interpolating linearly between neighbours.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 1 {
		return sorted[0]
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(sorted)-1)
	frac := pos - float64(lo)
	return sorted[lo] + frac*(sorted[hi]-sorted[lo])
}

// Ratio is a's median over b's, NaN if either is missing or b is zero.
func Ratio(a, b Summary) float64 {
	if a.N == 0 || b.N == 0 || b.Median == 0 {
		return math.NaN()
	}
	return a.Median / b.Median
}

// Gap is the largest time between two consecutive echoes a client
// received, from the first echo to the last record it sent, as the echo
// client measured it (echo.Report.MaxGap). If the last records were never
// echoed, the gap runs to the last send and Open is true: it is then a
// lower bound. It is kept in results.json.
type Gap struct {
	Length time.Duration
	AtNS   int64 // Unix ns of the last echo before the gap
	Open   bool
}

// gapOf is the largest gap of a client's report.
func gapOf(r echo.Report) Gap {
	g := Gap{Length: r.MaxGap, Open: r.GapOpen}
	if !r.GapAt.IsZero() {
		g.AtNS = r.GapAt.UnixNano()
	}
	return g
}

// formatValue renders a value in a unit with sensible precision.
func formatValue(v float64, unit string) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case unit == "s" && v < 1:
		return fmt.Sprintf("%.0f ms", v*1000)
	case unit == "s":
		return fmt.Sprintf("%.2f s", v)
	case unit == "":
		return strconv.FormatFloat(v, 'f', -1, 64) // a count
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case v >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	default:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
}

// Format renders a summary: the median, and the range when there is more
// than one run.
func (s Summary) Format(unit string) string {
	if s.N == 0 {
		return "n/a"
	}
	if s.N == 1 {
		return formatValue(s.Median, unit) + " (1 run)"
	}
	return fmt.Sprintf("%s (%s–%s, %d runs)", formatValue(s.Median, unit), formatValue(s.Min, unit), formatValue(s.Max, unit), s.N)
}
