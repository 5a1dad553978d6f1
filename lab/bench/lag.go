package bench

import (
	"context"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Lag per change: a hagate subordinate records, for every batch of changes
// it installs, the time from the primary seeing the batch's oldest change
// to the end of its kernel install (hagate_sync_lag_seconds, a histogram).
// The churn scenario reads the histogram before and after a step and takes
// the quantiles of the difference: the lag of that step's changes, not the
// time a poll of the table took to see the counts meet. conntrackd's
// statistics have no such timing; for it the lag stays the time until its
// external cache holds the primary's count (polled every 20 ms).

// lagHistogram is a snapshot of hagate_sync_lag_seconds: cumulative
// counts per upper bound, increasing bounds.
type lagHistogram struct {
	le  []float64
	cum []float64
}

// lagMetric is the histogram's name in the metrics.
const lagMetric = "hagate_sync_lag_seconds_bucket"

// perChangeLag is a System whose subordinate measures its lag per change.
type perChangeLag interface {
	lagHistogram(gw string) (lagHistogram, error)
}

func (h *hg) lagHistogram(gw string) (lagHistogram, error) {
	s, err := h.c.Scrape(context.Background(), gw)
	if err != nil {
		return lagHistogram{}, err
	}
	return parseLagHistogram(s), nil
}

// parseLagHistogram picks the buckets of hagate_sync_lag_seconds out of
// scraped samples (keys name{le="bound"}).
func parseLagHistogram(s map[string]float64) lagHistogram {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range s {
		rest, ok := strings.CutPrefix(k, lagMetric+`{le="`)
		if !ok {
			continue
		}
		bound, _, _ := strings.Cut(rest, `"`)
		le, err := strconv.ParseFloat(bound, 64) // "+Inf" parses as infinity
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v})
	}
	slices.SortFunc(bs, func(a, b bucket) int {
		switch {
		case a.le < b.le:
			return -1
		case a.le > b.le:
			return 1
		}
		return 0
	})
	var h lagHistogram
	for _, b := range bs {
		h.le, h.cum = append(h.le, b.le), append(h.cum, b.n)
	}
	return h
}

// quantile returns the upper bound of the bucket holding quantile q of the
// batches counted between before and h (-1: none counted, or beyond the
// last finite bound).
func (h lagHistogram) quantile(before lagHistogram, q float64) time.Duration {
	if len(h.le) == 0 || len(before.cum) != len(h.cum) && len(before.cum) != 0 {
		return -1
	}
	diff := func(i int) float64 {
		if len(before.cum) == 0 {
			return h.cum[i]
		}
		return h.cum[i] - before.cum[i]
	}
	total := diff(len(h.cum) - 1)
	if total <= 0 {
		return -1
	}
	want := math.Ceil(q * total)
	for i := range h.le {
		if diff(i) >= want {
			if math.IsInf(h.le[i], 1) {
				return -1
			}
			return time.Duration(h.le[i] * float64(time.Second))
		}
	}
	return -1
}
