package recovery

import (
	"cmp"
	"context"
	"slices"

	"golang.org/x/sync/errgroup"
)

// Tally is what counting the activities from a time to the window's end
// tells: how many there are, when the first of them happened (0: none, or
// the source does not say), and the API requests that took.
type Tally struct {
	Activities int64
	First      int64
	Requests   int
}

// CountFunc counts the recovery's activities in w, a part of its window
// (one request for the MCAS source, whose count answer also carries the
// first activity).
type CountFunc func(ctx context.Context, w Window) (Tally, error)

// Tallier is a Source that can count a part of its window in one request
// (the MCAS API): its window can be balanced across scan lanes.
type Tallier interface {
	Tally(ctx context.Context, w Window) (Tally, error)
}

// BalanceRounds is the most rounds of counts Slices makes: a round costs
// an answer's time before the lanes can start, whatever it counts.
const BalanceRounds = 3

// Slices cuts w, which holds total activities, into n slices of about
// equal counts, one for each scan lane, so that one busy hour does not
// leave one lane working alone while the others are done.
//
// Each cut starts at its equal share of the time, which is right when the
// activities are spread evenly: the first round counts there, n-1 counts
// side by side. A cut not yet known to within tolerance activities of its
// share is placed better in a later round, which counts where
// interpolating in the counts found so far puts it, and at evenly spaced
// points around it (a busy spell is found in a round or two, where
// interpolation alone would creep towards it). A count runs from its
// time to the window's end, and the first activity it finds tells for
// free that none lie in between. At most maxCounts counts are made (never
// fewer than n-1), in at most BalanceRounds rounds; a cut the counts do
// not settle is placed by interpolation. Fewer than n slices come back
// when one millisecond holds more than a share. The slices are in time
// order and cover w.
func Slices(ctx context.Context, w Window, n int, total, tolerance int64, maxCounts int, count CountFunc) (cuts []Window, requests int, err error) {
	if n <= 1 || total <= 0 || w.End-w.Start < int64(n) {
		return []Window{w}, 0, nil
	}
	known := prefixCounts{{w.Start, 0}, {w.End, total}}
	left := max(maxCounts, n-1)
	for round := 0; round < BalanceRounds && left > 0; round++ {
		ask := known.probes(n, total, tolerance, round)
		if len(ask) == 0 {
			break
		}
		ask = ask[:min(len(ask), left)]
		left -= len(ask)
		found, req, err := countFrom(ctx, w, total, ask, count)
		requests += req
		if err != nil {
			return nil, requests, err
		}
		known = known.with(found)
	}
	start := w.Start
	for i := 1; i < n; i++ {
		at := known.cut(total * int64(i) / int64(n))
		if at > start && at < w.End {
			cuts = append(cuts, Window{Start: start, End: at})
			start = at
		}
	}
	return append(cuts, Window{Start: start, End: w.End}), requests, nil
}

// countFrom counts the activities from each time in at to w's end, side
// by side (each request waits for the rate limit, not for the others'
// answers), and returns the counts before each time, and before the first
// activity after it.
func countFrom(ctx context.Context, w Window, total int64, at []int64, count CountFunc) (prefixCounts, int, error) {
	g, ctx := errgroup.WithContext(ctx)
	tallies := make([]Tally, len(at))
	for i, t := range at {
		g.Go(func() (err error) {
			tallies[i], err = count(ctx, Window{Start: t, End: w.End})
			return err
		})
	}
	err := g.Wait()
	var (
		found    prefixCounts
		requests int
	)
	for i, t := range tallies {
		requests += t.Requests
		before := total - t.Activities
		found = append(found, prefixCount{at[i], before})
		if t.First > at[i] && t.First < w.End {
			found = append(found, prefixCount{t.First, before})
		}
	}
	return found, requests, err
}

// prefixCount is how many activities lie before a time: in [start, at).
type prefixCount struct {
	at     int64
	before int64
}

// prefixCounts are the counts known, in time order, from the window's
// start (0) to its end (the total).
type prefixCounts []prefixCount

func (c prefixCounts) with(more prefixCounts) prefixCounts {
	all := append(slices.Clone(c), more...)
	slices.SortFunc(all, func(a, b prefixCount) int { return cmp.Compare(a.at, b.at) })
	return slices.CompactFunc(all, func(a, b prefixCount) bool { return a.at == b.at })
}

// bracket returns the two known counts around share: the last below it
// and the first at or above it.
func (c prefixCounts) bracket(share int64) (lo, up prefixCount) {
	hi := 1
	for hi < len(c)-1 && c[hi].before < share {
		hi++
	}
	return c[hi-1], c[hi]
}

// cut is where the slice holding the first share activities should end,
// as well as the counts known tell: between the two known counts around
// share, in proportion.
func (c prefixCounts) cut(share int64) int64 {
	lo, up := c.bracket(share)
	if up.before == share {
		return up.at
	}
	return interpolate(lo, up, share)
}

// probes are the times worth counting in round to place the n-1 cuts of
// total activities. A cut is settled when the counts known around it are
// within tolerance of each other (or one millisecond apart: a cut cannot
// go inside a millisecond). The first round counts where each cut would
// be if the activities were spread evenly; later ones cut the time
// between the counts around each unsettled cut into probeParts equal
// parts, so that a busy spell there is found in a round or two (guessing
// by interpolation alone creeps towards it).
func (c prefixCounts) probes(n int, total, tolerance int64, round int) []int64 {
	var at []int64
	for i := 1; i < n; i++ {
		share := total * int64(i) / int64(n)
		lo, up := c.bracket(share)
		if up.before == share || up.before-lo.before <= tolerance || up.at-lo.at <= 1 {
			continue
		}
		if round == 0 {
			at = append(at, interpolate(lo, up, share))
			continue
		}
		for k := int64(1); k < probeParts; k++ {
			t := min(max(lo.at+(up.at-lo.at)*k/probeParts, lo.at+1), up.at-1)
			if !slices.Contains(at, t) {
				at = append(at, t)
			}
		}
	}
	return at
}

// probeParts is how many parts the later rounds cut the time around an
// unsettled cut into.
const probeParts = 4

// interpolate is the time between lo and up where share would fall if the
// activities between them were spread evenly.
func interpolate(lo, up prefixCount, share int64) int64 {
	if up.before == lo.before {
		return lo.at + (up.at-lo.at)/2
	}
	return lo.at + int64(float64(up.at-lo.at)*float64(share-lo.before)/float64(up.before-lo.before))
}
