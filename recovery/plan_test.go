package recovery

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// sentAtLeast is a state whose pass has sent at least n activities.
func sentAtLeast(n int64) func(State) bool {
	return func(st State) bool { return st.Current().Sent >= n }
}

// once returns a function that calls fn the first time only.
func once(fn func()) func() {
	var o sync.Once
	return func() { o.Do(fn) }
}

// stopAfter runs r, stopping it (a planned stop) once sink has been sent
// n activities, and fails the test unless it stops.
func stopAfter(t *testing.T, r *Replayer, sink *lockedSink, n int) {
	t.Helper()
	stop := make(chan struct{})
	stopOnce := once(func() { close(stop) })
	sink.onSend = func() {
		if len(sink.ids) >= n {
			stopOnce()
		}
	}
	r.Stop, r.Grace = stop, time.Minute
	if _, err := r.Run(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("Run: %v, want a planned stop", err)
	}
}

// runStaged runs a replayer over src and cp to the end, and checks that
// it sent each activity once; it returns the state and the logs.
func runStaged(t *testing.T, src *laneTenant, cp *laneCheckpoint) (State, string) {
	t.Helper()
	sink := &lockedSink{}
	var logs bytes.Buffer
	if _, err := laneReplayer(src, sink, cp, 0, &logs).Run(context.Background()); err != nil {
		t.Fatalf("Run: %v\n%s", err, logs.String())
	}
	assertOnce(t, sink.delivered(), src.acts)
	return cp.state(), logs.String()
}

// staged holds the first lane of a pass over src at points set by the
// test, so that the planner sees it where the test wants: the window's
// count is answered once the first page is recorded; the first lane then
// waits until the balancing counts are asked, which are answered once it
// has recorded through index reach; and it waits there for the plan.
func staged(src *laneTenant, cp *laneCheckpoint, reach int) {
	asked := make(chan struct{})
	markAsked := once(func() { close(asked) })
	src.windows = func(ctx context.Context) error { return cp.until(ctx, sentAtLeast(int64(src.n))) }
	src.parts = func(ctx context.Context) error {
		markAsked()
		return cp.until(ctx, sentAtLeast(int64(reach)))
	}
	src.wide = func(ctx context.Context, at int) error {
		switch {
		case at < src.n:
			return nil
		case at < reach:
			select {
			case <-asked:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return cp.until(ctx, planned)
	}
}

// TestPlanCutsTheFirstLaneShortWhereTheSecondBegins: the first lane reads
// on while the lanes are counted; when the plan comes, what is left is
// shared out from where it stands then, and the cut falls in the page it
// holds, fetched for the whole window. That page is its last: what lies
// past the cut is left to the second lane, which reads from the cut. Each
// activity once, and no request past the page that reached the cut.
func TestPlanCutsTheFirstLaneShortWhereTheSecondBegins(t *testing.T) {
	ts := make([]int64, 1050)
	for i := range ts {
		ts[i] = 1000 + int64(i)*10
	}
	// A window that ends with its last activity: the counts interpolate
	// exactly.
	src := newTenantAt(ts, 100, 2, ts[len(ts)-1]+10)
	cp := newLaneCheckpoint(src.window())
	// Counted from index 100 (the first page recorded): 950 left; the
	// first lane has read 900 when the plan comes, and holds the page from
	// 900 to 999. The 150 left are shared: a cut at index 975.
	staged(src, cp, 900)
	st, logs := runStaged(t, src, cp)
	cut := ts[975]
	want := []ScanLane{
		{Window: Window{Start: 1000, End: cut}, State: StateCompleted, Planned: 975, Sent: 975},
		{Window: Window{Start: cut, End: src.window().End}, State: StateCompleted, Planned: 75, Sent: 75},
	}
	if len(st.Lanes) != 2 {
		t.Fatalf("%d lanes, want 2: %+v", len(st.Lanes), st.Lanes)
	}
	for i, l := range st.Lanes {
		w := want[i]
		if l.Window != w.Window || l.State != w.State || l.Planned != w.Planned || l.Sent != w.Sent {
			t.Errorf("lane %d: %v %s, %d planned, %d sent; want %v %s, %d, %d", i+1, l.Window, l.State, l.Planned, l.Sent, w.Window, w.State, w.Planned, w.Sent)
		}
	}
	// The first lane fetched the whole window ten times (the tenth page
	// reached the cut) and never its slice; the second lane its one page.
	if got := src.fetched[src.window()]; got != 10 || src.fetched[want[0].Window] != 0 || src.fetched[want[1].Window] != 1 {
		t.Errorf("pages fetched: %v", src.fetched)
	}
	if st.APIRequests != 10+1+2 || src.counted != 2 {
		t.Errorf("%d API requests recorded, %d counts; want 11 pages and 2 counts", st.APIRequests, src.counted)
	}
	if !strings.Contains(logs, "lanes=2 activities=1050 balancing_requests=1 first_lane_read=100") {
		t.Errorf("the plan's log line:\n%s", logs)
	}
}

// TestPlanJoinsACutTheFirstLaneReadPast: the counts that cut the lanes
// are coarse: here 400 activities lie just before the first third of what
// is left, where its first count was made, and the first lane, reading
// them while the lanes were counted, is past the first cut when the plan
// comes. That cut is dropped, its slice joining the first lane's, so that
// no lane is given what another delivered; the pass is read in the two
// lanes left, each activity once.
func TestPlanJoinsACutTheFirstLaneReadPast(t *testing.T) {
	var ts []int64
	for i := range 100 { // the first page
		ts = append(ts, 1000+int64(i)*10)
	}
	for i := range 400 { // just before 11,660, a third of [1991, 31000)
		ts = append(ts, 11200+int64(i))
	}
	for i := range 500 { // after it, evenly
		ts = append(ts, 11700+int64(i)*38)
	}
	src := newTenantAt(ts, 100, 3, 31000)
	cp := newLaneCheckpoint(src.window())
	// The first lane has read 200 when the plan comes: at 11,299, past
	// where the counts put the first cut (10,838).
	staged(src, cp, 200)
	st, logs := runStaged(t, src, cp)
	const cut = 20533 // the second cut, interpolated
	if len(st.Lanes) != 2 || st.Lanes[0].Window != (Window{1000, cut}) || st.Lanes[0].Sent != 733 || st.Lanes[0].Planned != 733 ||
		st.Lanes[1].Window != (Window{cut, 31000}) || st.Lanes[1].Sent != 267 || st.Lanes[1].Planned != 267 {
		t.Fatalf("lanes %+v; want [1000, %d) with 733 and the rest", st.Lanes, cut)
	}
	if !strings.Contains(logs, "lanes=2 activities=1000") {
		t.Errorf("the plan's log line:\n%s", logs)
	}
}

// TestFirstPageDoesNotWaitForTheCount: a start asks for its first page
// first, and counts the window beside it without waiting for its answer:
// here the page is answered only once the count was asked.
func TestFirstPageDoesNotWaitForTheCount(t *testing.T) {
	src := newLaneTenant(1000, 100, 2)
	cp := newLaneCheckpoint(src.window())
	src.heldUntilPlanned(cp)
	src.hold = make(chan struct{})
	src.windows = func(context.Context) error {
		close(src.hold)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sink := &lockedSink{}
	var logs bytes.Buffer
	if _, err := laneReplayer(src, sink, cp, 0, &logs).Run(ctx); err != nil {
		t.Fatalf("Run: %v (the first page waited for the count?)\n%s", err, logs.String())
	}
	assertOnce(t, sink.delivered(), src.acts)
	if len(src.order) < 2 || !slices.Equal(src.order[:2], []string{"fetch", "count"}) {
		t.Errorf("asked for %v; want the first page, then the count", src.order[:min(len(src.order), 4)])
	}
}

// TestPlanRecordedOnceAResumedRunCountsNothing: the plan is recorded as
// soon as it is known; a run stopped after it, and resumed, asks for no
// count at all, and every request of both runs is recorded.
func TestPlanRecordedOnceAResumedRunCountsNothing(t *testing.T) {
	src := newLaneTenant(2000, 100, 4)
	cp := newLaneCheckpoint(src.window())
	src.heldUntilPlanned(cp)
	sink := &lockedSink{}
	var logs bytes.Buffer
	stopAfter(t, laneReplayer(src, sink, cp, 0, &logs), sink, 500)
	pages := func() (n int) {
		for _, k := range src.fetched {
			n += k
		}
		return n
	}
	counts := src.counted
	st := cp.state()
	if len(st.Lanes) != 4 || st.Total == nil || *st.Total != 2000 || st.APIRequests != int64(pages()+counts) || counts < 4 {
		t.Fatalf("after the stop: %d lanes, total %v, %d requests recorded for %d pages and %d counts", len(st.Lanes), st.Total, st.APIRequests, pages(), counts)
	}
	sink.onSend = nil
	if _, err := laneReplayer(src, sink, cp, 0, &logs).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertOnce(t, sink.delivered(), src.acts)
	if st := cp.state(); src.counted != counts || st.State != StateCompleted || st.APIRequests != int64(pages()+counts) {
		t.Errorf("resumed: %d counts (%d before), %s, %d requests recorded for %d pages and %d counts", src.counted, counts, st.State, st.APIRequests, pages(), src.counted)
	}
}

// TestPlanResumedFromWhereTheFirstLaneStands: a run that stopped before
// its plan was known kept the window's count and what its first lane
// delivered; the next run counts the window no more, and plans from where
// that lane stands, which it resumes at once.
func TestPlanResumedFromWhereTheFirstLaneStands(t *testing.T) {
	src := newEvenTenant(2000, 100, 4)
	cp := newLaneCheckpoint(src.window())
	src.parts = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() } // the balancing never answers
	sink := &lockedSink{}
	var logs bytes.Buffer
	stopAfter(t, laneReplayer(src, sink, cp, 0, &logs), sink, 300)
	st := cp.state()
	read := st.Sent
	if st.Total == nil || *st.Total != 2000 || len(st.Lanes) != 0 || st.LanesPlanned || read < 300 || st.Cursor.IsZero() {
		t.Fatalf("after the stop: total %v, %d lanes, %d sent", st.Total, len(st.Lanes), read)
	}
	sink.onSend = nil
	src.parts = nil
	// The first lane resumes at once, and waits after its first page for
	// the plan.
	src.wide = func(ctx context.Context, at int) error {
		if at <= int(read) {
			return nil
		}
		return cp.until(ctx, planned)
	}
	logs.Reset()
	if _, err := laneReplayer(src, sink, cp, 0, &logs).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertOnce(t, sink.delivered(), src.acts)
	st = cp.state()
	if src.windowCounts != 1 || len(st.Lanes) != 4 || st.Lanes[0].Window.Start != src.window().Start || st.Lanes[0].Sent < read {
		t.Fatalf("%d counts of the window, lanes %+v; want 1, and 4 lanes, the first from the window's start", src.windowCounts, st.Lanes)
	}
	// What was left when the plan was made is shared out evenly.
	for i, l := range st.Lanes {
		if share := l.Planned - map[bool]int64{true: read}[i == 0]; share < (2000-read)/4-100 || share > (2000-read)/4+100 {
			t.Errorf("lane %d planned %d of what was left (%d)", i+1, share, 2000-read)
		}
	}
}

// TestRequestsRecordedWhenSent: a request is counted as the source sends
// it, so the checkpoint's next write records it even while its answer is
// awaited (a run killed then has it in its count): the window's count, in
// flight, is recorded with the first page's batch.
func TestRequestsRecordedWhenSent(t *testing.T) {
	src := newLaneTenant(1000, 100, 2)
	cp := newLaneCheckpoint(src.window())
	src.heldUntilPlanned(cp)
	src.hold = make(chan struct{}) // the first page waits until the count is sent
	var atFirstBatch int64
	src.windows = func(ctx context.Context) error {
		close(src.hold)
		err := cp.until(ctx, sentAtLeast(100))
		atFirstBatch = cp.state().APIRequests
		return err
	}
	sink := &lockedSink{}
	var logs bytes.Buffer
	if _, err := laneReplayer(src, sink, cp, 0, &logs).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertOnce(t, sink.delivered(), src.acts)
	pages := 0
	for _, n := range src.fetched {
		pages += n
	}
	if st := cp.state(); atFirstBatch != 2 || st.APIRequests != int64(pages+src.counted) {
		t.Errorf("%d requests recorded with the first batch, want 2 (its page and the count in flight); %d in all for %d pages and %d counts",
			atFirstBatch, st.APIRequests, pages, src.counted)
	}
}

// TestFinalSweepAskedWhileTheLastLaneReads: with --settle 0 on a window
// that is over, the final sweep follows the pass at once; its first page
// is asked for as soon as one lane is left reading, so that the sweep
// costs no answer time after the pass. Here the last lane reads on only
// once the sweep's page was asked for: without that, the run would never
// end. What was saved after the pass's horizon is sent once, by the sweep.
func TestFinalSweepAskedWhileTheLastLaneReads(t *testing.T) {
	src := newEvenTenant(1000, 100, 2)
	cp := newLaneCheckpoint(src.window())
	src.heldUntilPlanned(cp)
	// One activity of the window saved just now: after the pass's horizon.
	late := Activity{ID: "late", Timestamp: src.window().Start + 5, Created: time.Now().UnixMilli()}
	src.acts = append([]Activity{late}, src.acts...)
	asked := make(chan struct{})
	markAsked := once(func() { close(asked) })
	src.gate = func(ctx context.Context, scope Scope) error {
		if scope.SavedFrom != 0 {
			markAsked() // the sweep's
			return nil
		}
		st := cp.state()
		if !slices.ContainsFunc(st.Lanes, func(l ScanLane) bool { return l.State == StateCompleted }) {
			return nil
		}
		select { // the last lane, alone
		case <-asked:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sink := &lockedSink{}
	var logs bytes.Buffer
	r := laneReplayer(src, sink, cp, 0, &logs)
	r.Sweeps = &Sweeps{For: new(time.Duration), Margin: time.Minute}
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v (the final sweep was not asked for while the last lane read?)\n%s", err, logs.String())
	}
	assertOnce(t, sink.delivered(), src.acts)
	st := cp.state()
	if st.State != StateCompleted || res.Sweeps != 1 || st.Settle.LateSent != 1 || st.Settle.Sweeps != 1 || len(st.Lanes) != 2 {
		t.Errorf("%s, %d sweeps (%d this run), %d late; want completed by one sweep that sent the late one", st.State, st.Settle.Sweeps, res.Sweeps, st.Settle.LateSent)
	}
}

// TestPlanOnALowerBoundKeepsItsLanes: a window whose count is only a lower
// bound (the source stopped counting at 150 of 2,000, a page and a half)
// is still read in the lanes asked for: the pages are more than the bound
// tells, so it does not cap them at one for every two pages. The bound is
// recorded as one.
func TestPlanOnALowerBoundKeepsItsLanes(t *testing.T) {
	src := newLaneTenant(2000, 100, 4)
	src.countsUpTo = 150
	cp := newLaneCheckpoint(src.window())
	src.heldUntilPlanned(cp)
	sink := &lockedSink{}
	var logs bytes.Buffer
	if _, err := laneReplayer(src, sink, cp, 0, &logs).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertOnce(t, sink.delivered(), src.acts)
	st := cp.state()
	if len(st.Lanes) != 4 || st.Total == nil || *st.Total != 150 || !st.TotalAtLeast || st.State != StateCompleted {
		t.Errorf("%d lanes, total %v (at least: %v), %s; want 4 lanes on a total of at least 150, completed", len(st.Lanes), st.Total, st.TotalAtLeast, st.State)
	}
}
