package recovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// laneTenant is a tenant whose window can be read in scan lanes: it counts
// a part of a scope in one request (Count) and says how many lanes it
// wants. Its fetches may run side by side.
type laneTenant struct {
	mu    sync.Mutex
	acts  []Activity // sorted by time
	n     int        // page size
	lanes int        // what Lanes says
	// fetched counts the pages served for each scope (a fetch cut short
	// serves none, and costs no request); inFlight and most the fetches
	// running at once.
	fetched  map[Window]int
	inFlight int
	most     int
	// hold, when set, is waited for by every fetch: the test lets them go.
	hold chan struct{}
	// tallyErr, when set, is every count's answer.
	tallyErr error
	// wide, when set, is waited for by the fetches of the whole window (the
	// first lane's, before its slice is cut short), given the index the
	// fetch starts at: tests hold the first lane at a point, whatever the
	// scheduler does (heldUntilPlanned).
	wide func(ctx context.Context, at int) error
	// gate, when set, is waited for by every fetch, given its scope.
	gate func(ctx context.Context, scope Scope) error
	// parts, when set, is waited for by the counts of a part of the window
	// (those that balance the lanes), windows by the count of the window.
	parts, windows func(ctx context.Context) error
	// counted counts the counts, windowCounts those of the whole window;
	// order is what was asked, "fetch" or "count", in order.
	counted, windowCounts int
	order                 []string
	// end, when set, is the window's end (else a second after the last
	// activity).
	end int64
	// countsUpTo, when set, is where a count stops counting: a range that holds
	// more is counted as that many, a lower bound (Tally.AtLeast), as the
	// API's moreThanTotal.
	countsUpTo int64
}

// heldUntilPlanned holds the first lane of each pass on cp after its
// first page until the pass's lanes are planned (laneCheckpoint.until),
// so that it reads no further meanwhile.
func (t *laneTenant) heldUntilPlanned(cp *laneCheckpoint) *laneTenant {
	t.wide = func(ctx context.Context, at int) error {
		if at < t.n {
			return nil
		}
		return cp.until(ctx, planned)
	}
	return t
}

func newLaneTenant(n, page, lanes int) *laneTenant {
	t := &laneTenant{n: page, lanes: lanes, fetched: map[Window]int{}}
	for i := range n {
		// Three in four activities in the first tenth of the window: equal
		// times would leave one lane most of the work.
		ts := int64(i) * 10
		if i%4 == 0 {
			ts = 3 * int64(n) * 10
		}
		t.acts = append(t.acts, Activity{ID: fmt.Sprintf("a%05d", i), Timestamp: 1000 + ts + int64(i)})
	}
	slices.SortFunc(t.acts, func(a, b Activity) int { return int(a.Timestamp - b.Timestamp) })
	return t
}

// newEvenTenant is a laneTenant whose n activities are 10 ms apart: the
// first round of counts places every cut, so a test knows where.
func newEvenTenant(n, page, lanes int) *laneTenant {
	ts := make([]int64, n)
	for i := range n {
		ts[i] = 1000 + int64(i)*10
	}
	return newTenantAt(ts, page, lanes, ts[n-1]+1000)
}

// newTenantAt is a laneTenant whose activities happened at ts (sorted),
// in a window from 1000 to end.
func newTenantAt(ts []int64, page, lanes int, end int64) *laneTenant {
	t := &laneTenant{n: page, lanes: lanes, fetched: map[Window]int{}, end: end}
	for i, at := range ts {
		t.acts = append(t.acts, Activity{ID: fmt.Sprintf("e%05d", i), Timestamp: at})
	}
	return t
}

func (t *laneTenant) window() Window {
	if t.end != 0 {
		return Window{Start: 1000, End: t.end}
	}
	return Window{Start: 1000, End: t.acts[len(t.acts)-1].Timestamp + 1000}
}

func (t *laneTenant) Fetch(ctx context.Context, cur Cursor) (Page, error) {
	return t.Over(Scope{Window: t.window()}).Fetch(ctx, cur)
}
func (t *laneTenant) Over(scope Scope) Source { return &laneScope{t, scope} }
func (t *laneTenant) Lanes() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lanes
}
func (t *laneTenant) PageSize() int { return t.n }
func (t *laneTenant) Count(ctx context.Context, w Window) (Tally, error) {
	return t.Over(Scope{Window: t.window()}).(*laneScope).Count(ctx, w)
}

type laneScope struct {
	t     *laneTenant
	scope Scope
}

func (v *laneScope) in() []Activity {
	var in []Activity
	for _, a := range v.t.acts {
		if v.scope.Contains(a) {
			in = append(in, a)
		}
	}
	return in
}

func (v *laneScope) Count(ctx context.Context, w Window) (Tally, error) {
	NoteRequest(ctx)
	v.t.mu.Lock()
	v.t.counted++
	v.t.order = append(v.t.order, "count")
	wait := v.t.parts
	if w == v.scope.Window {
		v.t.windowCounts++
		wait = v.t.windows
	}
	v.t.mu.Unlock()
	if wait != nil {
		if err := wait(ctx); err != nil {
			return Tally{Requests: 1}, err
		}
	}
	if v.t.tallyErr != nil {
		return Tally{Requests: 1}, v.t.tallyErr
	}
	in := (&laneScope{v.t, v.scope.Within(w)}).in()
	tally := Tally{Activities: int64(len(in)), Requests: 1}
	if most := v.t.countsUpTo; most > 0 && tally.Activities > most {
		tally.Activities, tally.AtLeast = most, true
	}
	if len(in) > 0 {
		tally.First = in[0].Timestamp
	}
	return tally, nil
}

func (v *laneScope) Fetch(ctx context.Context, cur Cursor) (Page, error) {
	t := v.t
	t.mu.Lock()
	t.order = append(t.order, "fetch")
	t.inFlight++
	t.most = max(t.most, t.inFlight)
	hold := t.hold
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.inFlight--
		t.mu.Unlock()
	}()
	if t.wide != nil && v.scope.Window == t.window() {
		if err := t.wide(ctx, offset(cur)); err != nil {
			return Page{}, err
		}
	}
	if t.gate != nil {
		if err := t.gate(ctx, v.scope); err != nil {
			return Page{}, err
		}
	}
	// The request is sent, as the API source's is once it has its turn at
	// the rate limit: the planner's counts may go, and it is counted.
	NoteRequest(ctx)
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return Page{Requests: 1}, ctx.Err()
		}
	}
	t.mu.Lock()
	t.fetched[v.scope.Window]++
	t.mu.Unlock()
	return pageAt(v.in(), cur, t.n), nil
}

// lockedSink is a recordingSink safe to read while lanes send.
type lockedSink struct {
	mu sync.Mutex
	recordingSink
}

func (s *lockedSink) Send(ctx context.Context, b Batch) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recordingSink.Send(ctx, b)
}

func (s *lockedSink) delivered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

func laneReplayer(src Source, sink Sink, cp Checkpoint, lanes int, logs *bytes.Buffer) *Replayer {
	return &Replayer{Source: src, Sink: sink, Checkpoint: cp, Lanes: lanes, Logger: slog.New(slog.NewTextHandler(logs, nil))}
}

func newLaneCheckpoint(w Window) *laneCheckpoint {
	return &laneCheckpoint{memCheckpoint: memCheckpoint{st: State{Window: w, Pass: Pass{State: StatePending, Scope: Scope{Window: w}}}},
		changed: make(chan struct{})}
}

// laneCheckpoint is a memCheckpoint that tells when what it stores
// changes: tests wait for a state (until) without polling.
type laneCheckpoint struct {
	memCheckpoint
	cmu     sync.Mutex
	changed chan struct{} // closed at the next Update, then replaced
}

func (c *laneCheckpoint) Update(ctx context.Context, fn func(*State) error) error {
	err := c.memCheckpoint.Update(ctx, fn)
	c.cmu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.cmu.Unlock()
	return err
}

// state is the state stored.
func (c *laneCheckpoint) state() State {
	st, _ := c.Load(context.Background())
	return st
}

// until returns once the state stored satisfies ok, or ctx ends.
func (c *laneCheckpoint) until(ctx context.Context, ok func(State) bool) error {
	for {
		c.cmu.Lock()
		changed := c.changed
		c.cmu.Unlock()
		if ok(c.state()) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// planned tells that the current pass of st has its lanes planned.
func planned(st State) bool {
	p := st.Current()
	return p.LanesPlanned || len(p.Lanes) > 0
}

// assertOnce fails unless got holds every activity of acts exactly once.
func assertOnce(t *testing.T, got []string, acts []Activity) {
	t.Helper()
	want := ids(acts)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %d activities (%d distinct), want each of %d once", len(got), len(slices.Compact(slices.Clone(got))), len(want))
	}
}

func TestLanesReplayEachActivityOnce(t *testing.T) {
	src := newLaneTenant(4000, 100, 4)
	sink := &lockedSink{}
	cp := newLaneCheckpoint(src.window())
	src.heldUntilPlanned(cp)
	var logs bytes.Buffer
	res, err := laneReplayer(src, sink, cp, 0, &logs).Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, logs.String())
	}
	assertOnce(t, sink.delivered(), src.acts)
	st := cp.st
	if st.State != StateCompleted || res.Sent != 4000 || st.Sent != 4000 || len(st.Lanes) != 4 || !st.LanesPlanned {
		t.Fatalf("state %s, %d sent (%d this run), %d lanes; want completed, 4000, 4 lanes", st.State, st.Sent, res.Sent, len(st.Lanes))
	}
	// The first lane read a page (at most two) before the plan: what was
	// left was balanced by counts, a quarter each to a page, and the first
	// lane's slice holds what it had read besides.
	for i, l := range st.Lanes {
		share := l.Planned
		if i == 0 {
			share -= 100
			if l.Sent < 1000 || l.Sent > 1200 {
				t.Errorf("lane 1 sent %d; want its share and the page it read first", l.Sent)
			}
		}
		if l.State != StateCompleted || share < 900 || share > 1100 || l.Sent < l.Planned-100 || l.Sent > l.Planned+100 {
			t.Errorf("lane %d: %+v; want completed with about 975 planned of what was left, and sent as planned", i+1, l)
		}
		if i > 0 && src.fetched[l.Window] == 0 {
			t.Errorf("lane %d %v was never fetched", i+1, l.Window)
		}
	}
	// The first lane began on the whole window, and went on in its slice.
	if src.fetched[src.window()] < 2 || src.fetched[st.Lanes[0].Window] == 0 || st.Lanes[0].Window.Start != src.window().Start {
		t.Errorf("the first lane fetched the window %d times, its slice %v %d times", src.fetched[src.window()], st.Lanes[0].Window, src.fetched[st.Lanes[0].Window])
	}
	if src.most < 2 {
		t.Errorf("at most %d fetch at once: the lanes did not run side by side", src.most)
	}
	// The requests: one per page, the window's count and the three that
	// balanced the lanes (one round: the first lane's page is no busy
	// spell for the counts to find).
	pages := 0
	for _, n := range src.fetched {
		pages += n
	}
	if st.APIRequests != int64(pages+src.counted) || src.counted < 4 || src.counted > 1+3*3 {
		t.Errorf("%d API requests recorded for %d pages and %d counts", st.APIRequests, pages, src.counted)
	}
	if !strings.Contains(logs.String(), "reading the window in scan lanes side by side\" lanes=4 activities=4000") {
		t.Errorf("the plan is not logged:\n%s", logs.String())
	}
}

func TestLanesStopAndResumeEveryLane(t *testing.T) {
	src := newLaneTenant(2000, 100, 3)
	sink := &lockedSink{}
	cp := newLaneCheckpoint(src.window())
	src.heldUntilPlanned(cp)
	var logs bytes.Buffer
	stop := make(chan struct{})
	// Stop once a few pages are delivered: every lane stops where it is.
	sink.onSend = func() {
		if len(sink.ids) == 500 {
			close(stop)
		}
	}
	r := laneReplayer(src, sink, cp, 0, &logs)
	r.Stop, r.Grace = stop, time.Minute
	_, err := r.Run(context.Background())
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("Run: %v, want a planned stop\n%s", err, logs.String())
	}
	st := cp.st
	if st.State != StateStopped || len(st.Lanes) != 3 || st.Unconfirmed() != 0 || st.Sent != int64(len(sink.delivered())) {
		t.Fatalf("after the stop: %s, %d lanes, %d unconfirmed, %d sent of %d delivered", st.State, len(st.Lanes), st.Unconfirmed(), st.Sent, len(sink.delivered()))
	}
	if !strings.Contains(err.Error(), "the slowest of 3 lanes") {
		t.Errorf("stop message %q does not say where the lanes stand", err)
	}

	// The next run goes on in the same lanes, each from where it stood,
	// and sends nothing twice.
	logs.Reset()
	sink.onSend = nil
	if _, err := laneReplayer(src, sink, cp, 0, &logs).Run(context.Background()); err != nil {
		t.Fatalf("resume: %v\n%s", err, logs.String())
	}
	assertOnce(t, sink.delivered(), src.acts)
	if cp.st.State != StateCompleted || cp.st.Resent != 0 || len(cp.st.Lanes) != 3 {
		t.Errorf("after the resume: %s, %d sent again, %d lanes", cp.st.State, cp.st.Resent, len(cp.st.Lanes))
	}
}

func TestLanesResumedWithAnotherNumberGoOn(t *testing.T) {
	src := newLaneTenant(1200, 100, 0)
	sink := &lockedSink{}
	cp := newLaneCheckpoint(src.window())
	src.heldUntilPlanned(cp)
	var logs bytes.Buffer
	stop := make(chan struct{})
	sink.onSend = func() {
		if len(sink.ids) == 300 {
			close(stop)
		}
	}
	r := laneReplayer(src, sink, cp, 3, &logs)
	r.Stop = stop
	if _, err := r.Run(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("Run: %v", err)
	}
	logs.Reset()
	sink.onSend = nil
	if _, err := laneReplayer(src, sink, cp, 5, &logs).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertOnce(t, sink.delivered(), src.acts)
	if len(cp.st.Lanes) != 3 || !strings.Contains(logs.String(), "--parallel 5 is not applied: this pass began in 3 lane(s)") {
		t.Errorf("%d lanes; want the 3 it began with, and a word on --parallel 5:\n%s", len(cp.st.Lanes), logs.String())
	}
}

func TestLanesSinkFailureEndsEveryLane(t *testing.T) {
	src := newLaneTenant(2000, 100, 4)
	sink := &lockedSink{}
	sink.failNext = 0
	cp := newLaneCheckpoint(src.window())
	src.heldUntilPlanned(cp)
	var logs bytes.Buffer
	sink.onSend = atSend(6, func() { sink.failNext = 1 })
	_, err := laneReplayer(src, sink, cp, 0, &logs).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "receiver gone") || errors.Is(err, ErrStopped) {
		t.Fatalf("Run: %v, want the sink's failure", err)
	}
	if st := cp.st; st.State != StateFailed || st.Unconfirmed() != 100 || !strings.Contains(st.LastError.String(), "receiver gone") {
		t.Fatalf("after the failure: %s, %d unconfirmed, last error %q", st.State, st.Unconfirmed(), st.LastError)
	}
	// The next run sends the batch in flight again (half of it reached
	// the receiver), and nothing else twice.
	sink.onSend = nil
	logs.Reset()
	res, err := laneReplayer(src, sink, cp, 0, &logs).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := sink.delivered()
	if res.Resent != 100 || len(got) != 2000+50 {
		t.Errorf("%d sent again, %d delivered; want the failed batch of 100 again, 2050 in all", res.Resent, len(got))
	}
	assertOnce(t, slices.Compact(func() []string { slices.Sort(got); return got }()), src.acts)
}

func TestSourceWithoutLanesReadsInOne(t *testing.T) {
	acts := activities(500)
	src := &sliceSource{acts: acts, n: 50, failAt: -1}
	sink := &lockedSink{}
	w := Window{Start: 0, End: 100000}
	cp := newLaneCheckpoint(w)
	var logs bytes.Buffer
	if _, err := laneReplayer(src, sink, cp, 4, &logs).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(cp.st.Lanes) != 0 || len(sink.delivered()) != 500 {
		t.Errorf("%d lanes, %d delivered; want one lane and 500", len(cp.st.Lanes), len(sink.delivered()))
	}
}

func TestLanesLeaveOutExcludedIdsAndTopUpInLanes(t *testing.T) {
	src := newLaneTenant(2000, 100, 4)
	cp := newLaneCheckpoint(src.window())
	src.heldUntilPlanned(cp)
	var logs bytes.Buffer
	// The SIEM holds the even activities: the recovery sends the odd ones.
	var even, odd []Activity
	for i, a := range src.acts {
		if i%2 == 0 {
			even = append(even, a)
		} else {
			odd = append(odd, a)
		}
	}
	sink := &lockedSink{}
	r := laneReplayer(src, sink, cp, 0, &logs)
	r.Exclude = idSet(t, ids(even)...)
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertOnce(t, sink.delivered(), odd)
	if cp.st.Skipped != 1000 || cp.st.Sent != 1000 || len(cp.st.Lanes) != 4 {
		t.Fatalf("%d skipped, %d sent, %d lanes", cp.st.Skipped, cp.st.Sent, len(cp.st.Lanes))
	}
	// verify then finds the SIEM lacks nothing but the first 10 odd ones
	// (lost there): a top-up with the SIEM's ids sends exactly those, in
	// lanes of its own.
	held := append(slices.Clone(even), odd[10:]...)
	top := &lockedSink{}
	r = laneReplayer(src, top, cp, 0, &logs)
	r.Exclude = idSet(t, ids(held)...)
	res, err := r.Run(context.Background())
	if err != nil || !res.TopUp {
		t.Fatalf("top-up: %v, %+v", err, res)
	}
	assertOnce(t, top.delivered(), odd[:10])
	if tu := cp.st.TopUps[0]; tu.State != StateCompleted || len(tu.Lanes) != 4 || tu.Sent != 10 || tu.Skipped != 1990 {
		t.Errorf("top-up: %s, %d lanes, %d sent, %d skipped", tu.State, len(tu.Lanes), tu.Sent, tu.Skipped)
	}
}

// TestLanesPlanFailsOnACountError: a count the source cannot answer ends
// the pass (the window's count, made beside the first lane), which
// records the failure with every request made: the count's, and the first
// lane's page, read at once without waiting for the count.
func TestLanesPlanFailsOnACountError(t *testing.T) {
	src := newLaneTenant(2000, 100, 4)
	src.tallyErr = Problemf(ErrTooManyCriticalErrors, "run again later", "10 consecutive API requests failed")
	cp := newLaneCheckpoint(src.window())
	src.heldUntilPlanned(cp)
	sink := &lockedSink{}
	var logs bytes.Buffer
	_, err := laneReplayer(src, sink, cp, 0, &logs).Run(context.Background())
	if !errors.Is(err, ErrTooManyCriticalErrors) || !strings.Contains(err.Error(), "count the window's activities") {
		t.Fatalf("Run: %v", err)
	}
	st := cp.st
	if st.State != StateFailed || st.APIRequests != 2 || len(st.Lanes) != 0 || st.LanesPlanned || !strings.Contains(st.LastError.String(), "10 consecutive") {
		t.Errorf("state %s, %d API requests, %d lanes, last error %q; want failed, the first page's request and the count's, no lanes", st.State, st.APIRequests, len(st.Lanes), st.LastError)
	}
	// The first page may have reached the sink before the count failed:
	// what did is recorded, the rest is not sent.
	if got := sink.delivered(); int64(len(got)) != st.Sent || len(got) > 100 || st.Unconfirmed() != 0 {
		t.Errorf("%d delivered, %d recorded as sent, %d unconfirmed", len(got), st.Sent, st.Unconfirmed())
	}
}

// TestLanesAdviseWhenAnswersSlowDown: a pass keeps the lanes it began
// with; when the API's answers later call for more, the run says so.
func TestLanesAdviseWhenAnswersSlowDown(t *testing.T) {
	src := newLaneTenant(2000, 100, 2)
	cp := newLaneCheckpoint(src.window())
	src.heldUntilPlanned(cp)
	sink := &lockedSink{}
	sink.onSend = func() {
		if len(cp.state().Lanes) > 0 { // once the plan is recorded
			src.mu.Lock()
			src.lanes = 5
			src.mu.Unlock()
		}
	}
	var logs bytes.Buffer
	if _, err := laneReplayer(src, sink, cp, 0, &logs).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertOnce(t, sink.delivered(), src.acts)
	if len(cp.st.Lanes) != 2 || !strings.Contains(logs.String(), "call for 5 scan lanes to reach the rate limit, and this pass runs in 2") {
		t.Errorf("%d lanes; want 2 and the advice:\n%s", len(cp.st.Lanes), logs.String())
	}
}
