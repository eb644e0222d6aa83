package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Replayer moves one window's activities from a Source to a Sink. The
// checkpoint advances only after the sink has accepted everything before the
// new position, so a crash at any point loses nothing and re-sends at most
// the batch that was in flight.
type Replayer struct {
	Source     Source
	Sink       Sink
	Checkpoint Checkpoint
	// Exclude, when set, holds the ids the SIEM already has: those are
	// counted as skipped and not sent. On a completed window it asks for a
	// top-up pass that sends the rest (State.Plan); ExcludeFile names its
	// file for status.
	Exclude     *IDSet
	ExcludeFile string
	Logger      *slog.Logger
	// Redactor hides the secrets of the run (the source adds them) in the
	// last error the checkpoint records; nil escapes it only.
	Redactor *Redactor
	// Progress, when set, is told after every delivered page.
	Progress func(State)
	// Stop, once closed, asks for a planned stop (--max-duration, a
	// signal): no page is fetched or sent after it, and the batch in flight
	// is given Grace to be confirmed, so that the next run sends nothing of
	// it again. Nil never stops. The ctx given to Run cuts everything at
	// once (a second signal).
	Stop <-chan struct{}
	// Grace bounds how long a planned stop waits for the batch in flight;
	// zero cuts it at once.
	Grace time.Duration
	// Sweeps, when set, gives the window's pass a horizon and has sweeps
	// read what the source saved from it on; nil for a source that gains
	// no activities once read (an export).
	Sweeps *Sweeps
	// Now is the clock of the checkpoint's times, the horizons and the
	// settling deadline; nil is time.Now.
	Now func() time.Time
	// SinkName is the sink as the checkpoint records it (State.Sinks):
	// its scheme, host and port, or its file; "" records nothing.
	SinkName string
	// NoCount leaves the pass's count out: a feed's cycle (follow) reads a
	// minute of what MCAS saved, where a count would double the requests
	// of an idle feed, and its percent is the time reached.
	NoCount bool
	// Lanes is how many scan lanes a pass that begins reads its scope in
	// (--parallel), when the Source can (a LaneSizer); 0 lets the source
	// size them from its answer time. A pass that has begun keeps the
	// lanes it began with.
	Lanes int
}

func (r *Replayer) now() time.Time {
	if r.Now == nil {
		return time.Now().UTC()
	}
	return r.Now().UTC()
}

// Sweeps configure the late-arrival sweeps of a run over a source that
// keeps saving activities after a pass read them (the MCAS API): the pass
// reads what was saved before its horizon and sweeps read the rest
// (docs/time-semantics.md).
type Sweeps struct {
	// For is --settle when the run's command line gives it, nil when it
	// does not: the checkpoint's stays (0 for a new recovery: the final
	// sweep follows the pass at once).
	For *time.Duration
	// Margin is --settle-margin: what was saved less than Margin before a
	// pass or sweep began is left to the next.
	Margin time.Duration
}

// Result sums up a run.
type Result struct {
	State            State
	AlreadyCompleted bool  // nothing to do: the window (and any pass asked for) was completed before this run
	TopUp            bool  // this run worked on a top-up pass over the completed window
	Sweeps           int   // sweeps for activities saved late this run completed
	Sent             int64 // delivered by this run
	Skipped          int64 // excluded by this run
	Resent           int64 // sent again by this run (a dead run's batch, reconnects): the SIEM may hold them twice
}

// passKind names the pass a run works on.
type passKind int

const (
	mainPass  passKind = iota // the window's own
	topUpPass                 // the latest top-up
	sweepPass                 // the current sweep for activities saved late
)

// Current is the pass a run works on now, or worked on last: the current
// top-up or sweep when there is one, else the window's own pass.
func (st *State) Current() *Pass {
	if t := st.TopUp(); t != nil {
		return t
	}
	if st.Sweep != nil && st.Sweep.State != StateCompleted {
		return st.Sweep
	}
	return &st.Pass
}

// pass is the pass of kind k.
func (st *State) pass(k passKind) *Pass {
	switch k {
	case topUpPass:
		return &st.TopUps[len(st.TopUps)-1]
	case sweepPass:
		return st.Sweep
	}
	return &st.Pass
}

// run is what one Run carries from pass to pass.
type run struct {
	// mu guards st and res, which the lanes of a pass share: st is only
	// replaced whole (update), so a copy taken under mu stays as it was.
	mu    sync.Mutex
	st    State // as last stored
	save  context.Context
	send  context.Context // cut by a planned stop after Grace
	fetch context.Context // cut by a planned stop at once
	log   *slog.Logger
	res   Result
	began bool // a pass has begun in this run: Runs is counted
	// excluded is the fingerprint of Exclude, hashed once a run.
	excluded string
	// sink is held by the lane whose batch the sink has: one at a time.
	sink sync.Mutex
	// gate, when not nil, holds the other lanes of the pass back until the
	// lane with the batch a dead run left in flight has resumed it.
	gate *resumeGate
	cp   Checkpoint
	// early is the final sweep's first page, asked for while the pass's
	// last lane read its last pages (sweepEarly); nil when none was.
	early *earlySweep
	// requests are the API requests made and not recorded yet: each is
	// counted as the source sends it (NoteRequest), or once its page or
	// count returns, and the next checkpoint write records it (take), so
	// that a run killed loses the count of the requests it made after its
	// last write only.
	requests atomic.Int64
}

// take returns the requests made and not recorded, which the caller
// records in the state it writes.
func (rn *run) take() int64 { return rn.requests.Swap(0) }

// call returns ctx for one request of the source's (a Fetch or a Count)
// and the function to call with the requests it reports once it returns:
// each request the source notes as it sends it (NoteRequest) is counted
// at once, and calls note (when not nil); the others when it returns.
func (rn *run) call(ctx context.Context, note func()) (context.Context, func(reported int)) {
	var noted atomic.Int64
	ctx = withRequestNote(ctx, func() {
		noted.Add(1)
		rn.requests.Add(1)
		if note != nil {
			note()
		}
	})
	return ctx, func(reported int) { rn.requests.Add(int64(reported) - noted.Load()) }
}

// state is the state as last stored.
func (rn *run) state() State {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return rn.st
}

// position is where lane stands, for messages.
func (rn *run) position(lane *laneRun) string {
	i, _ := lane.at()
	st := rn.state()
	return st.pass(lane.k).LanePosition(i)
}

// update changes the stored state with fn and keeps the result: one
// change at a time, whichever lane makes it.
func (rn *run) update(fn func(*State) error) error {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return rn.cp.Update(rn.save, func(s *State) error {
		if err := fn(s); err != nil {
			return err
		}
		s.APIRequests += rn.take()
		rn.st = s.withOwnLanes()
		return nil
	})
}

// Run recovers the window from where the checkpoint stands to its end, then
// marks the checkpoint completed; on a completed window with Exclude set it
// runs (or resumes) a top-up pass instead (State.Plan). With Sweeps set the
// pass reads up to its horizon, and the sweeps that follow it (at once, or
// once a run until the --settle deadline) read what was saved after.
// A planned stop (Stop) ends it after the batch in flight, a cancelled ctx
// at once; the progress made is kept and the error wraps ErrStopped.
func (r *Replayer) Run(ctx context.Context) (Result, error) {
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := r.Checkpoint.Load(ctx)
	if err != nil {
		return Result{}, err
	}
	excluded := r.Exclude.Fingerprint()
	plan := st.Plan(excluded)
	if plan == PlanNothing {
		return Result{State: st, AlreadyCompleted: true}, nil
	}
	// Writes must survive the cancellation that stops the run.
	rn := &run{st: st, save: context.WithoutCancel(ctx), log: log, cp: r.Checkpoint, excluded: excluded}
	var release func()
	rn.send, rn.fetch, release = r.stopContexts(ctx)
	defer func() {
		release()
		rn.dropEarlySweep()
		if rn.requests.Load() != 0 {
			// Requests a fetch cut short made after the run's last write.
			_ = rn.update(func(*State) error { return nil })
		}
	}()
	if plan == PlanRecover {
		if err := r.settleOptions(rn); err != nil {
			return rn.res, err
		}
	}
	switch {
	case plan == PlanTopUp:
		rn.res.TopUp = true
		err = r.runPass(ctx, rn, topUpPass)
	case st.State == StateSettling || st.State == StateWaiting:
		err = r.settle(ctx, rn, false)
	default:
		// The run that completes the pass sweeps only when the final
		// sweep is due: the pass has just read up to its horizon.
		if err = r.runPass(ctx, rn, mainPass); err == nil && rn.st.State == StateSettling {
			err = r.settle(ctx, rn, true)
		}
	}
	rn.res.State = rn.st
	return rn.res, err
}

// runPass runs the pass of kind k from where it stands to its end: in
// its scan lanes side by side when it has them, else in its own lane,
// which starts at once while the pass is counted and its lanes planned
// beside it (planPass) when that is still to do.
func (r *Replayer) runPass(ctx context.Context, rn *run, k passKind) error {
	if err := r.beginPass(rn, k); err != nil {
		return err
	}
	p := rn.st.pass(k)
	// sent_before is the recovery's: a sweep or a top-up has its own
	// counter beside it.
	attrs := []any{"window", rn.st.Window.String(), "source", rn.st.Source, "position", p.Position(), "sent_before", rn.st.Sent}
	if n := len(p.Lanes); n > 0 {
		attrs = append(attrs, "lanes", n)
	}
	switch k {
	case sweepPass:
		rn.log.Info("sweeping for activities saved late", append(attrs, "late_sent_before", rn.st.Settle.LateSent, "saved", p.Scope.String())...)
	case topUpPass:
		rn.log.Info("recovering", append(attrs, "top_up_sent_before", p.Sent)...)
	default:
		rn.log.Info("recovering", attrs...)
	}
	err := r.runLanes(ctx, rn, k)
	r.adviseLanes(rn, k)
	var early *laneEnd
	if errors.As(err, &early) {
		return r.fail(ctx, rn, k, early.cause)
	}
	return err
}

// runLanes runs the lanes of pass k that are not done side by side (the
// pass's own lane when it has no scan lanes), with the planner beside
// them when the pass is still to be counted or cut into lanes, and
// returns once all have ended: the first lane that fails or stops ends the
// others (they stop fetching; a batch already with the sink is let
// finish), and its end is the pass's. The lane that delivers the last
// page of the pass completes it.
func (r *Replayer) runLanes(ctx context.Context, rn *run, k passKind) error {
	fetch, abort := context.WithCancel(rn.fetch)
	defer abort()
	// The planner ends once no lane runs: there is nothing left to plan.
	planning, idle := context.WithCancel(fetch)
	defer idle()
	g := &laneGroup{r: r, rn: rn, ctx: ctx, fetch: fetch, abort: abort, idle: idle}
	p := rn.st.pass(k)
	if have := max(len(p.Lanes), 1); (len(p.Lanes) > 0 || p.LanesPlanned) && r.Lanes > 0 && r.Lanes != have {
		rn.log.Warn(fmt.Sprintf("--parallel %d is not applied: this pass began in %d lane(s) and goes on in them, each from where it stands", r.Lanes, have),
			"lanes", have)
	}
	var lanes []*laneRun
	if len(p.Lanes) == 0 {
		lanes = append(lanes, newLaneRun(k, own, p.Scope))
	}
	for i, l := range p.Lanes {
		if l.State != StateCompleted {
			lanes = append(lanes, newLaneRun(k, i, p.laneScope(i)))
		}
	}
	rn.gate = nil
	for _, l := range lanes {
		if p.lane(l.i).InFlight.Activities > 0 {
			// The sink may end in what that batch left (a torn line): it
			// is resumed before any other lane writes, or the planner cuts
			// the pass.
			rn.gate = &resumeGate{resuming: l, done: make(chan struct{})}
		}
	}
	plan := r.plansBeside(rn.st, k)
	if k == mainPass {
		g.tail = func() { r.sweepEarly(rn) }
	}
	for _, l := range lanes {
		g.start(l)
	}
	if plan && len(lanes) > 0 {
		g.wg.Go(func() { g.planned(r.planPass(planning, rn, k, lanes[0], g)) })
	}
	err := g.wait()
	if err == nil && rn.requests.Load() != 0 {
		// Made after the pass's last write (a page read ahead, a count
		// cut short by its end): recorded all the same.
		if err := rn.update(func(*State) error { return nil }); err != nil {
			return fmt.Errorf("record the API requests: %w", err)
		}
	}
	return err
}

// resumeGate holds lanes back until one lane, the one with the batch a
// dead run left in flight, has delivered it: the sink may end in what that
// batch left of itself (a torn line), which only its resume can tell and
// mend. A nil gate holds nobody back.
type resumeGate struct {
	resuming *laneRun
	done     chan struct{}
	once     sync.Once
}

// lane is the lane the gate waits for (nil for a nil gate).
func (g *resumeGate) lane() *laneRun {
	if g == nil {
		return nil
	}
	return g.resuming
}

// open lets the other lanes go.
func (g *resumeGate) open() {
	if g != nil {
		g.once.Do(func() { close(g.done) })
	}
}

// wait returns once the gate is open, or fetch ended.
func (g *resumeGate) wait(fetch context.Context) {
	if g == nil {
		return
	}
	select {
	case <-g.done:
	case <-fetch.Done():
	}
}

// own is the lane of a pass that reads its scope in one lane.
const own = -1

// laneEnd is how a lane ended before its end: its cause (nil for a
// planned stop). The pass records it (fail).
type laneEnd struct {
	cause error
}

func (e *laneEnd) Error() string {
	if e.cause == nil {
		return "stopped"
	}
	return e.cause.Error()
}

func (e *laneEnd) Unwrap() error { return e.cause }

// runLane runs lane from where it stands to its end: fetch, deliver,
// advance, page after page. It fetches within fetch, which ends at a
// planned stop or when another lane ended the pass.
func (r *Replayer) runLane(ctx, fetch context.Context, rn *run, lane *laneRun) error {
	i, scope := lane.at()
	st := rn.state()
	p := st.pass(lane.k)
	var next <-chan fetched
	defer func() {
		if next != nil {
			<-next // never leave a fetch running behind the caller
		}
	}()
	by := p.Scope.By
	var spare Prepared // what the last Send's batch was prepared in, free again
	src, read := Over(r.Source, scope), scope
	fetchAt := func(cur Cursor, note func()) {
		if _, now := lane.at(); now != read {
			// The lane's slice was cut short (planning.apply): the source pages
			// through it from the cursor it gave for the wider scope, and
			// ends where the slice does.
			src, read = Over(r.Source, now), now
		}
		ctx, counted := rn.call(fetch, note)
		next, spare = r.prefetch(ctx, counted, src, read, by, cur, spare), nil
	}
	// A batch a dead run left in flight is the page at the lane's cursor:
	// the first page this lane fetches.
	left := p.lane(i).InFlight
	if next = rn.takeEarlySweep(lane.k, scope, p.lane(i).Cursor); next == nil {
		// Its first request tells the planner, which waits for it: a
		// start spends its first request on a page, not on a count.
		fetchAt(p.lane(i).Cursor, lane.markAsked)
	}
	for {
		f := <-next
		next = nil
		lane.markAnswered()
		page, err := f.page, f.err
		if err != nil {
			if fetch.Err() != nil && ctx.Err() == nil && !r.stopAsked() {
				err = nil // another lane ended the pass: this one only stops
			}
			if err != nil {
				err = fmt.Errorf("fetch the page at %s: %w", rn.position(lane), err)
			}
			return &laneEnd{err}
		}
		if r.stopAsked() || fetch.Err() != nil { // a page read before the stop is not sent after it
			return &laneEnd{nil}
		}
		// In one lane the next page is fetched while the sink takes the
		// current one, so decoding and delivery overlap; at most one page
		// is read ahead. Scan lanes overlap each other's fetches instead,
		// and hold one page each: memory grows with the lanes, not twice
		// as fast. The first lane of a pass becomes a scan lane when the
		// plan comes (planning.apply).
		if i, _ = lane.at(); i == own && !page.Last {
			fetchAt(page.Next, nil)
		}
		d, err := r.deliver(ctx, fetch, rn, lane, f, left)
		if err != nil {
			return err
		}
		left = InFlight{}
		if d.prepared != nil {
			spare = d.prepared
		}
		if r.Progress != nil {
			rn.mu.Lock()
			r.Progress(rn.st)
			rn.mu.Unlock()
		}
		rn.log.Debug("page delivered", "activities", len(d.sent), "skipped", d.skipped, "lane", d.lane+1, "position", rn.position(lane))
		if d.done {
			r.logDone(rn, lane.k)
		}
		if d.last {
			return nil
		}
		if next == nil {
			fetchAt(d.next, nil)
		}
	}
}

// delivered is what deliver did with a page: the lane it was delivered
// as (own, or a scan lane), what of it the sink took and what was left
// out, the cursor after it, whether it was the lane's last (its slice
// ends in it) and the pass's (done), and the memory its batch was
// prepared in, free again.
type delivered struct {
	lane     int
	sent     []Activity
	skipped  int64
	next     Cursor
	last     bool
	done     bool
	prepared Prepared
}

// deliver hands f's batch, lane's page, to the sink, which every lane
// shares, and advances the lane past it: one lane at a time, so that at
// most one batch is ever in flight (recorded while the sink has it) and a
// kill -9 re-sends at most what the
// sink lacks of that one. left is the batch a dead run left in flight in
// this lane, if f is its first page (flight.deliver). A lane that has to
// stop (fetch ended) while it waits for the sink sends nothing. A page
// that reaches past the end of the lane's slice (read before the plan cut
// the slice short) is its last, and what lies past the end is another
// lane's: it is left out.
func (r *Replayer) deliver(ctx, fetch context.Context, rn *run, lane *laneRun, f fetched, left InFlight) (d delivered, err error) {
	if lane == rn.gate.lane() {
		defer rn.gate.open()
	} else {
		rn.gate.wait(fetch)
	}
	rn.sink.Lock()
	defer rn.sink.Unlock()
	// The lane's place and slice only change while the sink is held
	// (planning.apply): they stay as read here until the page is recorded.
	k := lane.k
	i, scope := lane.at()
	if i != own {
		f = f.within(scope)
	}
	page, batch, skipped := f.page, f.batch, f.skipped
	d = delivered{lane: i, sent: batch, skipped: skipped, next: page.Next, last: page.Last}
	if r.stopAsked() || fetch.Err() != nil {
		return d, &laneEnd{nil}
	}
	var sent, resent int64
	if len(batch) > 0 {
		fl := flight{r: r, save: rn.save, lane: func(s *State) *Lane { return s.pass(k).lane(i) },
			batch: batch, prepared: f.prepared, requests: rn.take}
		delivered, again, err := fl.deliver(ctx, rn.send, left, rn.position(lane), rn.log)
		if errors.Is(err, errRecord) {
			return d, err
		}
		if err != nil {
			return d, &laneEnd{fmt.Errorf("send %d activities at %s: %w", len(fl.sent), rn.position(lane), err)}
		}
		sent, resent, d.prepared = int64(delivered), int64(again), fl.prepared
	}
	rn.mu.Lock()
	rn.res.Sent += sent
	rn.res.Resent += resent
	rn.res.Skipped += skipped
	rn.mu.Unlock()
	now := r.now()
	err = rn.update(func(s *State) error {
		p := s.pass(k)
		// The sink failed since the pass's last delivery (the run recorded
		// it while it waited, below the run's start otherwise): the rate
		// and the time left are reckoned from now on, not over the wait.
		waited := s.LastErrorAt.After(p.RunStartedAt) && s.LastErrorAt.After(p.LastSuccessAt)
		l := p.lane(i)
		l.Cursor = page.Next
		l.Progress = page.Progress
		l.Reached = max(l.Reached, f.reached)
		l.InFlight = InFlight{}
		p.Sent += int64(len(batch))
		p.Skipped += skipped
		p.Resent += resent
		p.LastSuccessAt = now
		if len(batch) > 0 {
			s.noteSink(r.SinkName)
		}
		if k == sweepPass {
			// What a sweep sends, the recovery sent.
			s.Sent += int64(len(batch))
			s.Skipped += skipped
			s.Resent += resent
			s.Settle.LateSent += int64(len(batch))
		}
		if i != own {
			sl := &p.Lanes[i]
			sl.Sent += int64(len(batch))
			sl.Skipped += skipped
			if page.Last {
				sl.State, sl.Progress = StateCompleted, 1
			}
			p.Progress, p.Reached = p.lanesProgress()
		}
		if d.done = page.Last && p.lanesDone(); d.done {
			r.complete(s, k, now)
		} else if waited {
			p.markRunStart(s, now)
		}
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("advance checkpoint past %s: %w", rn.position(lane), err)
	}
	return d, nil
}

// complete marks pass k of s done at now, and what follows from it: the
// window's pass is followed by the settling phase when it has a horizon,
// the final sweep completes the recovery.
func (r *Replayer) complete(s *State, k passKind, now time.Time) {
	p := s.pass(k)
	p.State, p.Progress, p.CompletedAt = StateCompleted, 1, now
	switch {
	case k == mainPass && s.Settle != nil:
		p.State = StateSettling
		s.Settle.Deadline = now.Add(s.Settle.For)
	case k == sweepPass:
		s.Settle.Sweeps++
		if s.Settle.Final {
			s.State, s.CompletedAt = StateCompleted, now
		} else {
			s.Settle.Horizon = p.Scope.SavedBefore
		}
	}
}

// logDone says that pass k of the run completed, and what is next.
func (r *Replayer) logDone(rn *run, k passKind) {
	st := rn.state()
	p := st.pass(k)
	switch {
	case k == topUpPass:
		rn.log.Info("top-up completed: the window is complete again", "sent", p.Sent, "skipped", p.Skipped, "sent_again", p.Resent, "api_requests", st.APIRequests)
	case k == sweepPass:
		rn.mu.Lock()
		rn.res.Sweeps++
		rn.mu.Unlock()
		rn.log.Info("sweep done", "saved", p.Scope.String(), "sent", p.Sent, "skipped", p.Skipped, "late_sent", st.Settle.LateSent, "sweeps", st.Settle.Sweeps)
	case st.State == StateSettling:
		rn.log.Info("window's pass done; what MCAS saved while it ran and after is read by sweeps", "sent", p.Sent, "skipped", p.Skipped,
			"sent_again", p.Resent, "api_requests", st.APIRequests, "settle_until", st.Settle.Deadline.Format(time.RFC3339))
	}
	if st.State == StateCompleted {
		rn.log.Info("window recovered: checkpoint completed and disabled", "sent", st.Sent, "skipped", st.Skipped, "sent_again", st.Resent, "api_requests", st.APIRequests)
	}
}

// settleOptions applies this run's --settle and --settle-margin to a
// recovery that settles: a --settle given moves the deadline with it.
func (r *Replayer) settleOptions(rn *run) error {
	if r.Sweeps == nil || rn.st.Settle == nil {
		return nil
	}
	return rn.update(func(s *State) error {
		s.Settle.Margin = r.Sweeps.Margin
		if d := r.Sweeps.For; d != nil {
			if !s.Settle.Deadline.IsZero() { // set once the pass is done
				s.Settle.Deadline = s.Settle.Deadline.Add(*d - s.Settle.For)
			}
			s.Settle.For = *d
		}
		return nil
	})
}

// settle makes the sweeps a run owes the settling phase: it finishes the
// sweep an earlier run left, then, before the deadline or the window's
// end (Settle.CompletesFrom), makes one sweep a run (unless it read
// already: swept); after both, the final sweep, which completes the
// recovery. A sweep whose range can hold nothing is not made. A run that
// ends before the window is over ends on a *WindowOpen.
func (r *Replayer) settle(ctx context.Context, rn *run, swept bool) error {
	for rn.st.State != StateCompleted {
		if sw := rn.st.Sweep; sw != nil && sw.State != StateCompleted {
			if err := r.runPass(ctx, rn, sweepPass); err != nil {
				return err
			}
			swept = true
			continue
		}
		now := r.now()
		scope, final, empty := rn.st.Settle.NextSweep(rn.st.Pass.Scope, now)
		if swept && !final || empty && !final {
			return r.await(rn, now)
		}
		err := rn.update(func(s *State) error {
			s.Settle.Final = final
			if empty { // a window by created that ended before the horizon
				s.State, s.CompletedAt = StateCompleted, now
			} else {
				s.Sweep = &Pass{State: StatePending, Scope: scope, StartedAt: now}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("start a sweep: %w", err)
		}
		if empty {
			rn.log.Info("window recovered: checkpoint completed and disabled (the window can hold no activity saved from now on)",
				"sent", rn.st.Sent, "late_sent", rn.st.Settle.LateSent)
		}
	}
	return nil
}

// earlySweep is the final sweep's first page, asked for early, and the
// scope it reads.
type earlySweep struct {
	scope Scope
	next  <-chan fetched
}

// sweepEarly asks for the first page of the final sweep while the pass's
// last lane reads its last pages, when the sweep that follows the pass is
// the final one: --settle 0 (the deadline is the pass's end) on a window
// that is over. The final sweep reads what MCAS saved from the pass's
// horizon on, which no lane of the pass reads: asked for now, its page
// holds what was saved up to now, a few answer times before the pass ends
// instead of just after, and once the pass is done the sweep delivers it
// (takeEarlySweep) without waiting another answer time. Anything later is
// what a later sweep would find, as ever (docs/time-semantics.md).
func (r *Replayer) sweepEarly(rn *run) {
	st := rn.state()
	if r.Sweeps == nil || st.Settle == nil || st.Settle.For != 0 || st.Sweep != nil {
		return
	}
	scope, final, empty := st.Settle.NextSweep(st.Pass.Scope, r.now())
	if !final || empty {
		return
	}
	ctx, counted := rn.call(rn.fetch, nil)
	early := &earlySweep{scope: scope, next: r.prefetch(ctx, counted, Over(r.Source, scope), scope, scope.By, Cursor{}, nil)}
	rn.mu.Lock()
	defer rn.mu.Unlock()
	rn.early = early
	rn.log.Debug("asked for the final sweep's first page while the last lane reads", "saved", scope.String())
}

// takeEarlySweep is the page sweepEarly asked for, when the lane about to
// fetch at cur is the final sweep's first, of that scope; else nil.
func (rn *run) takeEarlySweep(k passKind, scope Scope, cur Cursor) <-chan fetched {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	e := rn.early
	if k != sweepPass || e == nil || e.scope != scope || !cur.IsZero() {
		return nil
	}
	rn.early = nil
	return e.next
}

// dropEarlySweep waits for the page sweepEarly asked for, when no sweep
// took it (the run ended first): no fetch outlives the run. Its requests
// are counted; the run's last write has been made.
func (rn *run) dropEarlySweep() {
	rn.mu.Lock()
	e := rn.early
	rn.early = nil
	rn.mu.Unlock()
	if e != nil {
		<-e.next
	}
}

// await ends a run that has read all it may before the final sweep: the
// recovery is waiting while the window is not over, else settling (until
// the deadline). A window not over is a *WindowOpen.
func (r *Replayer) await(rn *run, now time.Time) error {
	st := rn.st
	open := !st.Settle.Ended(st.Window, now)
	state := StateSettling
	if open {
		state = StateWaiting
	}
	if st.State != state {
		if err := rn.update(func(s *State) error {
			s.State = state
			return nil
		}); err != nil {
			return fmt.Errorf("record the recovery %s: %w", state, err)
		}
	}
	if !open {
		return nil
	}
	st = rn.st
	return &WindowOpen{Window: st.Window, By: st.By, ReadBefore: st.Settle.Horizon, EndsAt: st.Settle.EndsAt(st.Window),
		Deadline: st.Settle.Deadline, Margin: st.Settle.Margin, Sent: st.Sent}
}

// stopContexts returns the contexts a planned stop ends in two steps:
// fetch at the stop, so that no page is read after it; send Grace later,
// so that the batch in flight can be confirmed. Both end with ctx. release
// ends them and the goroutine that watches Stop.
func (r *Replayer) stopContexts(ctx context.Context) (send, fetch context.Context, release func()) {
	send, cutSend := context.WithCancel(ctx)
	fetch, cutFetch := context.WithCancel(send)
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-r.Stop:
		case <-done:
			return
		}
		cutFetch()
		grace := time.NewTimer(r.Grace)
		defer grace.Stop()
		select {
		case <-grace.C:
			cutSend()
		case <-done:
		}
	}()
	return send, fetch, func() {
		close(done)
		<-exited
		cutFetch()
		cutSend()
	}
}

// stopAsked reports whether a planned stop was asked.
func (r *Replayer) stopAsked() bool {
	select {
	case <-r.Stop:
		return true
	default:
		return false
	}
}

// beginPass marks the start of pass k in this run (the window's own, a
// top-up or a sweep, begun or resumed): the window's pass gets its scope
// and its horizon when it starts. Nothing waits here for a count: the
// pass is counted beside its first lane (planPass). A batch the last run
// left unconfirmed stays recorded until this run has sent what the sink
// lacks of it.
func (r *Replayer) beginPass(rn *run, k passKind) error {
	var horizon *Settle
	if k == mainPass {
		p := &rn.st.Pass
		if p.Scope.Window == (Window{}) {
			p.Scope = Scope{Window: rn.st.Window, By: rn.st.By}
		}
		if r.Sweeps != nil && rn.st.Settle == nil && p.untouched() {
			// What is saved from the horizon on is left to the sweeps.
			h := Horizon(r.now(), r.Sweeps.Margin)
			p.Scope.SavedBefore = h
			horizon = &Settle{Margin: r.Sweeps.Margin, Horizon: h}
			if d := r.Sweeps.For; d != nil {
				horizon.For = *d
			}
		}
	}
	_, sizer := r.Source.(LaneSizer)
	return rn.update(func(s *State) error {
		if !rn.began {
			rn.began = true
			s.Runs++
		}
		if k == mainPass {
			s.Pass.Scope = rn.st.Pass.Scope
			if horizon != nil {
				s.Settle = horizon
			}
		}
		r.begin(s, k, rn.excluded, rn.log)
		if p := s.pass(k); sizer && k != sweepPass && len(p.Lanes) == 0 && !p.LanesPlanned && r.Lanes == 1 {
			p.LanesPlanned = true // --parallel 1: the pass's own lane is its plan
		}
		return nil
	})
}

// begin marks the start of a run on pass k.
func (r *Replayer) begin(s *State, k passKind, excluded string, log *slog.Logger) {
	p := &s.Pass
	switch {
	case k == topUpPass:
		var resumed bool
		if p, resumed = s.topUpFor(excluded, r.ExcludeFile, r.now()); !resumed {
			log.Info("the window was completed; sweeping it again to send what the SIEM lacks (top-up)",
				"ids_file", r.ExcludeFile, "ids", r.Exclude.Len())
		}
	case k == sweepPass:
		p = s.Sweep
	case p.untouched():
		p.Excluded, p.IDsFile = excluded, r.ExcludeFile
	case p.Excluded != excluded:
		// Runs of one pass left out different ids: no single file says
		// what it skipped, so none will be taken for done.
		p.Excluded, p.IDsFile = "", ""
	}
	p.State = StateRunning
	p.laneStates(StateRunning)
	p.markRunStart(s, r.now())
}

// markRunStart marks where the rate of pass p (of s) is reckoned from: the
// start of a run, or the end of a wait for the sink.
func (p *Pass) markRunStart(s *State, now time.Time) {
	p.RunStartedAt = now
	p.RunStartedDone, _ = s.Done(*p)
	p.RunStartedSent = p.Sent
	p.RunStartedSkipped = p.Skipped
}

// noteSink records that the recovery delivered to sink (the latest last).
func (st *State) noteSink(sink string) {
	if sink == "" || len(st.Sinks) > 0 && st.Sinks[len(st.Sinks)-1] == sink {
		return
	}
	st.Sinks = append(slices.DeleteFunc(st.Sinks, func(s string) bool { return s == sink }), sink)
}

// fetched is the outcome of one Fetch: the page, and the batch to send
// from it once the activities the SIEM holds are left out.
type fetched struct {
	page     Page
	batch    []Activity
	prepared Prepared // what the sink prepared of batch, if it is a Preparer
	skipped  int64
	// skippedAt are the times (on the pass's field) of the activities
	// left out: within counts those of a shorter slice.
	skippedAt []int64
	reached   int64 // the latest activity time of the page (on the pass's field), sent or not
	by        TimeField
	scope     Scope // what the page was read for
	err       error
}

// within is f as the page of a lane whose slice is scope: a page read for
// a wider scope (the first lane's, before the plan cut its slice short)
// can reach past the slice's end. What lies past it is another lane's,
// and left out; the listing is in ascending time, so such a page is the
// lane's last. A page read for a wider scope that stays within the slice
// is measured against the slice.
func (f fetched) within(scope Scope) fetched {
	end := scope.Window.End
	if f.reached < end {
		if f.scope != scope && !f.page.Last {
			f.page.Progress = scope.Window.Fraction(f.reached)
		}
		return f
	}
	kept := make([]Activity, 0, len(f.batch))
	f.reached = 0
	for _, a := range f.batch {
		if t := f.by.Of(a); t < end {
			kept = append(kept, a)
			f.reached = max(f.reached, t)
		}
	}
	if len(kept) != len(f.batch) {
		f.batch, f.prepared = kept, nil // prepared for the whole batch
	}
	f.skipped = 0
	for _, t := range f.skippedAt {
		if t < end {
			f.skipped++
			f.reached = max(f.reached, t)
		}
	}
	f.page.Last, f.page.Progress = true, 1
	return f
}

// prefetch fetches the page at cur from src, which reads scope, in the
// background, tells counted the requests it took, drops what Exclude
// names, and has the sink prepare the batch if it can, in reuse's memory.
func (r *Replayer) prefetch(ctx context.Context, counted func(int), src Source, scope Scope, by TimeField, cur Cursor, reuse Prepared) <-chan fetched {
	ch := make(chan fetched, 1)
	go func() {
		page, err := src.Fetch(ctx, cur)
		counted(page.Requests)
		f := fetched{page: page, batch: page.Activities, by: by, scope: scope, err: err}
		for _, a := range page.Activities {
			f.reached = max(f.reached, by.Of(a))
		}
		if err == nil && r.Exclude != nil {
			kept := f.batch[:0]
			for _, a := range f.batch {
				if r.Exclude.Contains(a.ID) {
					f.skipped++
					f.skippedAt = append(f.skippedAt, by.Of(a))
					continue
				}
				kept = append(kept, a)
			}
			f.batch = kept
		}
		if p, ok := r.Sink.(Preparer); ok && err == nil && len(f.batch) > 0 {
			f.prepared = p.Prepare(reuse, f.batch)
		}
		ch <- f
	}()
	return ch
}

// fail records why the run ended on pass k: stopped (a planned stop, or
// ctx cancelled; cause may then be nil) or failed. A batch the sink did not
// confirm stays in flight: the next run sends it again and counts it as
// possibly duplicated.
func (r *Replayer) fail(ctx context.Context, rn *run, k passKind, cause error) error {
	stopped := r.stopAsked() || ctx.Err() != nil
	var p Pass
	err := rn.update(func(s *State) error {
		if k == topUpPass && s.TopUp() == nil {
			k = mainPass // the top-up never began
		}
		cur := s.pass(k)
		if stopped {
			cur.State = StateStopped
		} else {
			cur.State = StateFailed
			s.LastError = r.Redactor.Redacted(cause.Error())
			s.LastErrorAt = r.now()
		}
		cur.laneStates(cur.State)
		p = *cur
		return nil
	})
	if err != nil {
		return errors.Join(cause, fmt.Errorf("record the failure in the checkpoint: %w", err))
	}
	if !stopped {
		return cause
	}
	for _, f := range p.lanes() {
		if f.InFlight.Activities == 0 {
			continue
		}
		what := "stopped before the sink confirmed the batch in flight; the next run sends it again"
		if f.InFlight.Mark != nil || f.InFlight.Window > 0 {
			what = "stopped before the sink confirmed the batch in flight; the next run sends what the sink lacks of it"
		}
		rn.log.Warn(what, "activities", f.InFlight.Activities)
	}
	done := rn.st.ProgressOf(p, r.now(), false)
	what := map[passKind]string{mainPass: "of the window done", topUpPass: "of the top-up done", sweepPass: "of the sweep for activities saved late done"}[k]
	return Problemf(ErrStopped, "re-run the same command to resume",
		"stopped at %s with %.1f%% %s (%d sent in all); progress is saved", p.Position(), done.Percent, what, p.Sent)
}

// Count returns how many activities the window w (src's own) holds at
// src, and the API requests that took: one when src is a Counter (whose
// count may be only a lower bound: Tally.AtLeast), else a Scan of the
// whole window (told to progress after each page, when set), which is
// exact. It sends nothing and records nothing (--dry-run, verify, check).
func Count(ctx context.Context, src Source, w Window, progress func(Page)) (Tally, error) {
	var requests int
	if c, ok := src.(Counter); ok {
		t, err := c.Count(ctx, w)
		if !errors.Is(err, ErrNoTotal) {
			return t, err
		}
		requests = t.Requests
	}
	n, more, err := Scan(ctx, src, nil, progress)
	return Tally{Activities: n, Requests: requests + int(more)}, err
}

// Scan pages through src from the start of the window, telling each every
// activity and progress every page, and returns how many activities it
// yielded and how many API requests that took. It sends nothing and
// records nothing (verify --received, which needs the ids).
func Scan(ctx context.Context, src Source, each func(Activity), progress func(Page)) (activities, requests int64, err error) {
	var cur Cursor
	for {
		page, err := src.Fetch(ctx, cur)
		requests += int64(page.Requests)
		if err != nil {
			return activities, requests, fmt.Errorf("fetch the page after %d activities: %w", activities, err)
		}
		activities += int64(len(page.Activities))
		if each != nil {
			for _, a := range page.Activities {
				each(a)
			}
		}
		if progress != nil {
			progress(page)
		}
		if page.Last {
			return activities, requests, nil
		}
		cur = page.Next
	}
}
