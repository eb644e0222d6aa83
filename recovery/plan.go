package recovery

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// A pass is counted and cut into scan lanes while it is read, not before:
// its first lane starts at once, from where the pass stands, and the
// planner counts the pass and balances the lanes beside it, under the
// source's one rate limit. When the cuts are known the first lane's slice
// is cut short where the second lane's begins, and the other lanes start.
// The plan (the window's count, the slices, each lane's position) is
// recorded as soon as it is known, so that a run killed every second or so
// still makes progress, and a run that finds a plan recorded counts
// nothing.

// laneRun is one lane of a pass as a run reads it: its place in the
// state, the pass's own lane (own) or a scan lane's index, and the scope
// it reads, the pass's or its slice of it. The first lane of a pass that
// is planned as it is read starts as the pass's own lane, reading all of
// the pass, and becomes scan lane 0 when the plan is applied, its slice
// ending where lane 1's begins (planning.apply). Both change only while the run
// holds the sink, between two batches: a batch is delivered and recorded
// as one lane's.
type laneRun struct {
	k     passKind
	mu    sync.Mutex
	i     int
	scope Scope
	// asked is closed once the lane's first request is being sent (the
	// source had its turn at its rate limit: NoteRequest) or its first
	// fetch returned; answered once that fetch returned, when the source
	// has measured an answer time. The planner waits for them: a start
	// spends its first request on a page, not on a count.
	asked, answered  chan struct{}
	askOnce, ansOnce sync.Once
}

func newLaneRun(k passKind, i int, scope Scope) *laneRun {
	return &laneRun{k: k, i: i, scope: scope, asked: make(chan struct{}), answered: make(chan struct{})}
}

// at is the lane's place in its pass (own, or a scan lane's index) and
// the scope it reads.
func (l *laneRun) at() (int, Scope) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.i, l.scope
}

// become makes the lane scan lane i, reading scope.
func (l *laneRun) become(i int, scope Scope) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.i, l.scope = i, scope
}

func (l *laneRun) markAsked() { l.askOnce.Do(func() { close(l.asked) }) }

func (l *laneRun) markAnswered() {
	l.markAsked()
	l.ansOnce.Do(func() { close(l.answered) })
}

// requestNote is the context key of the function NoteRequest calls.
type requestNote struct{}

// withRequestNote returns ctx carrying note, which the source calls
// (NoteRequest) once the request made with it is on its way.
func withRequestNote(ctx context.Context, note func()) context.Context {
	return context.WithValue(ctx, requestNote{}, note)
}

// NoteRequest tells the replay loop that a request made with ctx (of a
// Fetch or a Count) is being sent. A Source that sends requests to an API
// calls it once for each, as it sends it, and counts it in the Page's or
// Tally's Requests as ever: the replay loop records it with its next
// checkpoint write, even if the run dies before the answer comes, and a
// pass's counts, which wait for its first page to be asked for, may go.
// The requests of a source that does not call it are counted when its
// page or count returns, and the counts wait for its first page. It does
// nothing for a ctx that carries no note.
func NoteRequest(ctx context.Context) {
	if note, ok := ctx.Value(requestNote{}).(func()); ok {
		note()
	}
}

// laneGroup is the lanes of a pass running in this run, and the planner
// that adds lanes to them: the first lane that fails or stops ends the
// others, and its end is the pass's.
type laneGroup struct {
	r     *Replayer
	rn    *run
	ctx   context.Context // the run's
	fetch context.Context // ends at a planned stop, or when the pass ends
	abort context.CancelFunc
	idle  context.CancelFunc // ends the planner: no lane runs
	wg    sync.WaitGroup

	// tail, when set, is called once when a lane has read its slice to
	// its end and one lane is left reading: the pass's tail.
	tail func()

	mu      sync.Mutex
	first   error
	running int
	closed  bool // every lane has ended: none is added
}

// start runs lane beside the others, unless every lane has ended.
func (g *laneGroup) start(lane *laneRun) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.running++
	g.wg.Go(func() {
		err := g.r.runLane(g.ctx, g.fetch, g.rn, lane)
		if lane == g.rn.gate.lane() {
			g.rn.gate.open()
		}
		g.mu.Lock()
		g.end(err)
		var tail func()
		switch g.running--; {
		case g.running == 0:
			g.closed = true
			g.idle()
		case g.running == 1 && err == nil && g.first == nil:
			tail, g.tail = g.tail, nil
		}
		g.mu.Unlock()
		if tail != nil {
			tail()
		}
	})
	return true
}

// end takes the end of a lane, or the planner's error; g.mu is held. The
// first is the pass's: it ends the others.
func (g *laneGroup) end(err error) {
	if g.first == nil && err != nil {
		g.first = err
		g.abort()
	}
}

// planned takes the planner's end: an error ends the pass as a lane's
// does; nil is a plan made, or cut short (the pass stopped, or its lanes
// read it all meanwhile).
func (g *laneGroup) planned(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.end(err)
}

// wait returns once every lane and the planner have ended: the pass's
// end, nil when its lanes read it all.
func (g *laneGroup) wait() error {
	g.wg.Wait()
	return g.first
}

// plansBeside tells whether a run on pass k of st has to count it or plan
// its lanes: the window's pass is counted once per checkpoint when the
// source can count; a pass that can be read in lanes is planned once.
func (r *Replayer) plansBeside(st State, k passKind) bool {
	if k == sweepPass {
		return false // sweeps read what MCAS saved late: a few pages at most
	}
	p := st.pass(k)
	if _, ok := Over(r.Source, p.Scope).(Counter); !ok {
		return false
	}
	return k == mainPass && st.Total == nil && !r.NoCount || r.lanesToPlan(st, k)
}

// lanesToPlan tells whether pass k of st is still to be cut into lanes.
func (r *Replayer) lanesToPlan(st State, k passKind) bool {
	_, ok := r.Source.(LaneSizer)
	p := st.pass(k)
	return ok && k != sweepPass && len(p.Lanes) == 0 && !p.LanesPlanned && r.Lanes != 1
}

// planPass counts pass k and plans its scan lanes beside first, its own
// lane, which reads the pass from where it stands meanwhile; it adds the
// other lanes to g. The window's pass is counted once per checkpoint (its
// Total, which the percent done counts against), recorded as soon as it is
// known. The lanes are as many as Replayer.Lanes asks for, or the
// source's measure of its answer time, but no more than one for every two
// whole pages of what is left of the pass, since each lane's last page is
// rarely full; what is left is cut into slices of about equal counts
// (Slices). A count that fails ends the pass as a lane's failure does
// (a laneEnd); a plan cut short (a planned stop, or a pass the first lane
// read to its end meanwhile) ends with nil. Its requests are counted as
// the run's others are (run.call).
func (r *Replayer) planPass(ctx context.Context, rn *run, k passKind, first *laneRun, g *laneGroup) error {
	select {
	case <-first.asked:
	case <-ctx.Done():
		return nil
	}
	pl := &planning{r: r, rn: rn, k: k}
	st := rn.state()
	counter := Over(r.Source, st.pass(k).Scope).(Counter)
	pl.count = func(ctx context.Context, w Window) (Tally, error) {
		ctx, counted := rn.call(ctx, nil)
		t, err := counter.Count(ctx, w)
		counted(t.Requests)
		return t, err
	}
	total, atLeast, err := pl.total(ctx, st)
	if err != nil || total < 0 || !r.lanesToPlan(rn.state(), k) {
		return err
	}
	n, err := pl.lanes(ctx, first, total, atLeast)
	if err != nil || n <= 1 {
		return err
	}
	st = rn.state()
	p := st.pass(k)
	// What is left of the pass is cut: the first lane has read up to
	// where it stands, and reads on from there.
	read := p.Sent + p.Skipped
	rest := Window{Start: p.Scope.Window.Start, End: p.Scope.Window.End}
	if read > 0 {
		rest.Start = max(rest.Start, p.Reached+1)
	}
	left := max(total-read, 0)
	if left <= 0 || rest.End-rest.Start < int64(n) {
		return pl.oneLane()
	}
	pageSize := int64(max(r.Source.(LaneSizer).PageSize(), 1))
	pages := (left + pageSize - 1) / pageSize
	maxCounts := max(n-1, min(5*(n-1), int(pages/8)))
	known, requests, err := balance(ctx, rest, n, left, pageSize, maxCounts, pl.count)
	switch {
	case errors.Is(err, ErrNoTotal):
		return pl.oneLane()
	case err != nil && ctx.Err() != nil:
		return nil
	case err != nil:
		return &laneEnd{fmt.Errorf("count the activities of the parts of the window to balance %d lanes: %w", n, err)}
	}
	return pl.apply(ctx, first, plan{rest: rest, lanes: n, known: known, total: total, left: left, read: read, balancing: requests}, g)
}

// planning is one plan in the making.
type planning struct {
	r     *Replayer
	rn    *run
	k     passKind
	count CountFunc // counts a part of the pass, each request counted
}

// total returns the pass's count: the window's Total (counted and
// recorded now, if no run did yet), or for a top-up to be cut into lanes,
// its own; atLeast tells that it is only a lower bound (the source stopped
// counting there). -1 tells that there is nothing to plan with: the source
// gave no total (the pass is then read in its own lane), or the plan was
// cut short. A feed's cycle (Replayer.NoCount) counts only to plan its
// lanes, and records nothing: its percent is the time reached.
func (pl *planning) total(ctx context.Context, st State) (total int64, atLeast bool, err error) {
	p := st.pass(pl.k)
	if pl.k == mainPass && st.Total != nil {
		return *st.Total, st.TotalAtLeast, nil
	}
	tally, err := pl.count(ctx, p.Scope.Window)
	switch {
	case errors.Is(err, ErrNoTotal):
		return -1, false, pl.oneLane()
	case err != nil && ctx.Err() != nil:
		return -1, false, nil
	case err != nil && pl.k == mainPass:
		return -1, false, &laneEnd{fmt.Errorf("count the window's activities: %w", err)}
	case err != nil:
		return -1, false, &laneEnd{fmt.Errorf("count the pass's activities to plan its lanes: %w", err)}
	case pl.k != mainPass || pl.r.NoCount:
		return tally.Activities, tally.AtLeast, nil
	}
	// The window's count is recorded at once: no run asks for it again.
	err = pl.rn.update(func(s *State) error {
		s.Total, s.TotalAtLeast = &tally.Activities, tally.AtLeast
		return nil
	})
	if err != nil {
		return -1, false, fmt.Errorf("record the window's count: %w", err)
	}
	return tally.Activities, tally.AtLeast, nil
}

// lanes is how many lanes the pass of total activities is read in, of
// which first has read what it delivered: Replayer.Lanes, or as many as
// the source's answer time calls for (measured by the first lane's first
// page, if nothing was yet), but no more than one for every two whole
// pages of what is left, unless total is only a lower bound (atLeast):
// the pages are then more than it tells. 1 is recorded as the plan; 0 is
// a plan cut short.
func (pl *planning) lanes(ctx context.Context, first *laneRun, total int64, atLeast bool) (int, error) {
	sizer := pl.r.Source.(LaneSizer)
	n := pl.r.Lanes
	if n == 0 {
		if n = sizer.Lanes(); n == 0 {
			select {
			case <-first.answered:
			case <-ctx.Done():
				return 0, nil
			}
			n = sizer.Lanes()
		}
	}
	st := pl.rn.state()
	p := st.pass(pl.k)
	pageSize := int64(max(sizer.PageSize(), 1))
	pages := (max(total-p.Sent-p.Skipped, 0) + pageSize - 1) / pageSize
	if !atLeast {
		n = int(min(int64(n), max(pages/2, 1)))
	}
	if n <= 1 {
		return 1, pl.oneLane()
	}
	return n, nil
}

// oneLane records that the pass is read in its own lane.
func (pl *planning) oneLane() error {
	err := pl.rn.update(func(s *State) error {
		if p := s.pass(pl.k); len(p.Lanes) == 0 && pl.r.lanesToPlan(*s, pl.k) {
			p.LanesPlanned = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record the pass's plan: %w", err)
	}
	return nil
}

// plan is what a plan is made from: the part of the pass left when its
// first lane had read read of its total activities (rest, which holds
// left of them), the lanes it is cut into, the counts that place the
// cuts, and the requests those took.
type plan struct {
	rest              Window
	lanes             int
	known             prefixCounts
	total, left, read int64
	balancing         int
}

// apply cuts the pass into lanes (plan) and starts them in g, recording
// the plan first. It holds the sink meanwhile, so that first, which has
// read on since the counts began, has no batch with it: what it has read
// since is its own, and the rest is shared out evenly from where it stands
// now (interpolating the same counts); a cut that first has read past all
// the same is dropped, its slice joining first's, so that no lane is given
// a range another has delivered any of. first becomes scan lane 0, its
// slice ending where lane 1's begins. A pass that first read to its end
// meanwhile has nothing left to plan.
func (pl *planning) apply(ctx context.Context, first *laneRun, from plan, g *laneGroup) error {
	rn, k := pl.rn, pl.k
	// A batch a dead run left in flight may reach further than where the
	// first lane stands: the first lane resumes it before anything is cut.
	rn.gate.wait(ctx)
	if ctx.Err() != nil {
		return nil
	}
	rn.sink.Lock()
	defer rn.sink.Unlock()
	st := rn.state()
	p := st.pass(k)
	if p.State == StateCompleted || p.State == StateSettling || len(p.Lanes) > 0 {
		return nil
	}
	since := min(max(p.Sent+p.Skipped-from.read, 0), from.left)
	cuts := from.known.slices(from.rest, from.lanes, from.left, since)
	for len(cuts) > 1 && p.Sent+p.Skipped > 0 && cuts[1].Start <= p.Reached {
		cuts[1].Window.Start = cuts[0].Window.Start
		cuts[1].Activities += cuts[0].Activities
		cuts = cuts[1:]
	}
	if len(cuts) == 1 {
		return pl.oneLane()
	}
	lanes := make([]ScanLane, len(cuts))
	for i, c := range cuts {
		lanes[i] = ScanLane{Window: c.Window, Planned: c.Activities, State: StateRunning}
	}
	err := rn.update(func(s *State) error {
		p := s.pass(k)
		l := &lanes[0]
		l.Window.Start = p.Scope.Window.Start
		l.Lane, l.Sent, l.Skipped = p.Lane, p.Sent, p.Skipped
		l.Planned += from.read
		l.Progress = l.Window.Fraction(p.Reached)
		p.Lanes, p.Lane, p.LanesPlanned = lanes, Lane{}, true
		p.Progress, p.Reached = p.lanesProgress()
		return nil
	})
	if err != nil {
		return fmt.Errorf("record the scan lanes: %w", err)
	}
	first.become(0, p.Scope.Within(lanes[0].Window))
	for i := 1; i < len(lanes); i++ {
		g.start(newLaneRun(k, i, p.Scope.Within(lanes[i].Window)))
	}
	attrs := []any{"lanes", len(lanes), "activities", from.total, "balancing_requests", from.balancing}
	if from.read > 0 {
		attrs = append(attrs, "first_lane_read", from.read)
	}
	if pl.r.Lanes == 0 {
		attrs = append(attrs, "sized_by", "the API's answer time and --rate-limit")
	}
	rn.log.Info("reading the window in scan lanes side by side", attrs...)
	return nil
}
