package recovery

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"

	"golang.org/x/sync/errgroup"
)

// MaxLanes is the most scan lanes a pass is read in (--parallel): enough
// to keep the MCAS tenant's whole quota (30 requests a minute) busy with
// answers of up to 15 s, few enough that the last page of each lane,
// rarely full, costs little.
const MaxLanes = 8

// Tally is what counting the activities of a part of the window tells: how
// many there are, when the first of them happened (0: none, or the source
// does not say), and the API requests that took. AtLeast tells that
// Activities is only a lower bound: the API's total is an estimate, and
// says so (moreThanTotal) when the part holds more than it counted.
type Tally struct {
	Activities int64
	First      int64
	Requests   int
	AtLeast    bool
}

// CountFunc counts the recovery's activities in w, a part of its window
// (one request for the MCAS source, whose count answer also carries the
// first activity).
type CountFunc func(ctx context.Context, w Window) (Tally, error)

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
// share is placed better in a later round, which counts at evenly spaced
// points between the two counts around it (a busy spell is found in a
// round or two, where interpolation alone would creep towards it). A count
// runs from its time to the window's end, and the first activity it finds
// tells for free that none lie in between. At most maxCounts counts are
// made (never fewer than n-1), in at most BalanceRounds rounds; each cut
// is then placed by interpolating between the counts around it. Fewer than n slices come back
// when one millisecond holds more than a share. The slices are in time
// order and cover w.
func Slices(ctx context.Context, w Window, n int, total, tolerance int64, maxCounts int, count CountFunc) (cuts []Slice, requests int, err error) {
	if n <= 1 || total <= 0 || w.End-w.Start < int64(n) {
		return []Slice{{w, max(total, 0)}}, 0, nil
	}
	known, requests, err := balance(ctx, w, n, total, tolerance, maxCounts, count)
	if err != nil {
		return nil, requests, err
	}
	return known.slices(w, n, total, 0), requests, nil
}

// balance makes Slices' counts: the prefix counts of w (which holds total
// activities) that place the cuts of n slices, and the requests they took.
func balance(ctx context.Context, w Window, n int, total, tolerance int64, maxCounts int, count CountFunc) (prefixCounts, int, error) {
	known := prefixCounts{{w.Start, 0}, {w.End, total}}
	left, requests := max(maxCounts, n-1), 0
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
	return known, requests, nil
}

// slices cuts w, which holds total activities by the counts c, into n
// slices, the first of which has read read of them already: each slice
// is left with an equal share of the rest (the first, its share and what
// it read). Fewer come back where a millisecond holds more than a share.
func (c prefixCounts) slices(w Window, n int, total, read int64) (cuts []Slice) {
	start, before := w.Start, int64(0)
	for i := 1; i < n; i++ {
		share := read + (total-read)*int64(i)/int64(n)
		if at := c.cut(share); at > start && at < w.End {
			cuts = append(cuts, Slice{Window{start, at}, share - before})
			start, before = at, share
		}
	}
	return append(cuts, Slice{Window{start, w.End}, total - before})
}

// Slice is a part of a window, cut for a scan lane, and how many
// activities it holds by the counts that cut it: an estimate, where the
// cut lies between two counts.
type Slice struct {
	Window
	Activities int64
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

// lane is lane i of the pass: a scan lane's, or its own (i == own).
func (p *Pass) lane(i int) *Lane {
	if i == own {
		return &p.Lane
	}
	return &p.Lanes[i].Lane
}

// lanes are the pass's lanes: its scan lanes, or its own.
func (p *Pass) lanes() []*Lane {
	if len(p.Lanes) == 0 {
		return []*Lane{&p.Lane}
	}
	all := make([]*Lane, len(p.Lanes))
	for i := range p.Lanes {
		all[i] = &p.Lanes[i].Lane
	}
	return all
}

// laneScope is what lane i of the pass reads: its slice of the pass's
// scope, or all of it.
func (p *Pass) laneScope(i int) Scope {
	if i == own {
		return p.Scope
	}
	return p.Scope.Within(p.Lanes[i].Window)
}

// lanesProgress is how much of the pass's window its scan lanes have
// behind them, by time, and the time reached by the slowest lane not
// done: the pass's progress and where it stands.
func (p *Pass) lanesProgress() (progress float64, reached int64) {
	span := float64(p.Scope.Window.End - p.Scope.Window.Start)
	for _, l := range p.Lanes {
		progress += l.Progress * float64(l.Window.End-l.Window.Start) / span
		if l.State == StateCompleted {
			continue
		}
		at := max(l.Reached, l.Window.Start)
		if reached == 0 || at < reached {
			reached = at
		}
	}
	return min(progress, 1), reached
}

// untouched reports whether no run has moved the pass's own lane from the
// start of its scope: nothing delivered, skipped or left in flight.
func (p *Pass) untouched() bool {
	return p.Cursor.IsZero() && p.Sent+p.Skipped+p.InFlight.Activities == 0
}

// lanesDone reports whether every scan lane of the pass is done (true for
// a pass read in one lane: its end is its lane's).
func (p *Pass) lanesDone() bool {
	for _, l := range p.Lanes {
		if l.State != StateCompleted {
			return false
		}
	}
	return true
}

// Unconfirmed is how many activities the pass's lanes handed the sink and
// the sink did not confirm: what a run that dies now sends again.
func (p Pass) Unconfirmed() int64 {
	var n int64
	for _, l := range p.lanes() {
		n += l.InFlight.Activities
	}
	return n
}

// LanePosition says where lane i of the pass stands (own: the pass).
func (p Pass) LanePosition(i int) string {
	if i == own {
		return p.Position()
	}
	l := p.Lanes[i]
	if l.State == StateCompleted {
		return fmt.Sprintf("the end of lane %d", i+1)
	}
	return fmt.Sprintf("%s in lane %d", l.position("slice"), i+1)
}

// withOwnLanes is a copy of st whose scan lanes are its own: a copy that
// lanes may read while the next update changes the stored state's.
func (st State) withOwnLanes() State {
	own := func(p *Pass) { p.Lanes = slices.Clone(p.Lanes) }
	own(&st.Pass)
	st.TopUps = slices.Clone(st.TopUps)
	for i := range st.TopUps {
		own(&st.TopUps[i])
	}
	if st.Sweep != nil {
		sweep := *st.Sweep
		own(&sweep)
		st.Sweep = &sweep
	}
	return st
}

// Percent is the share of the scan lane done, floored to a tenth: of the
// activities its slice held by the counts that planned it, else of its
// slice's time; 100 only once the lane is done.
func (l ScanLane) Percent() float64 {
	if l.State == StateCompleted {
		return 100
	}
	done := l.Progress
	if l.Planned > 0 {
		done = float64(l.Sent+l.Skipped) / float64(l.Planned)
	}
	return math.Floor(min(done, 0.999)*1000) / 10
}

// laneStates gives every scan lane of the pass not done the state state:
// a run begins or ends them all together.
func (p *Pass) laneStates(state string) {
	for i := range p.Lanes {
		if p.Lanes[i].State != StateCompleted {
			p.Lanes[i].State = state
		}
	}
}

// adviseLanes says, once a pass in auto lanes has run, when the API's
// answers (pages, by now) ask for more lanes than the pass began with: the
// lanes were sized from the first answers (counts, which the API may
// answer faster than pages), and a pass keeps its lanes to its end.
func (r *Replayer) adviseLanes(rn *run, k passKind) {
	sizer, ok := r.Source.(LaneSizer)
	if !ok || r.Lanes != 0 || k == sweepPass {
		return
	}
	st := rn.state()
	have, want := max(len(st.pass(k).Lanes), 1), sizer.Lanes()
	if want > have {
		rn.log.Info(fmt.Sprintf("the API's answers now call for %d scan lanes to reach the rate limit, and this pass runs in %d: "+
			"it keeps them to its end; give --parallel %d to a recovery that begins", want, have, want), "lanes", have, "lanes_wanted", want)
	}
}
