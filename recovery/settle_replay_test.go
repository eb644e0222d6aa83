package recovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// tenant is a source that keeps saving activities, as MCAS does: a test
// adds some between runs, and each is listed from its indexed time on (its
// created time, unless the test delays it). It reads any scope (Scoped),
// sorted on the scope's field, in pages of n, the cursor an index.
type tenant struct {
	acts    []Activity
	indexed map[string]int64 // id → when it is listed, if later than created
	n       int
	now     func() time.Time
	fetches int
	scopes  []Scope // the scope of every fetch
}

func (t *tenant) save(acts ...Activity) { t.acts = append(t.acts, acts...) }

func (t *tenant) Fetch(ctx context.Context, cur Cursor) (Page, error) {
	return t.Over(Scope{}).Fetch(ctx, cur)
}

func (t *tenant) Over(scope Scope) Source { return &tenantScope{t, scope} }

type tenantScope struct {
	t     *tenant
	scope Scope
}

func (v *tenantScope) Fetch(ctx context.Context, cur Cursor) (Page, error) {
	t := v.t
	t.fetches++
	t.scopes = append(t.scopes, v.scope)
	now := t.now().UnixMilli()
	var listed []Activity
	for _, a := range t.acts {
		if max(a.Created, t.indexed[a.ID]) <= now && v.scope.Contains(a) {
			listed = append(listed, a)
		}
	}
	by := v.scope.By
	slices.SortFunc(listed, func(a, b Activity) int { return cmp.Or(cmp.Compare(by.Of(a), by.Of(b)), strings.Compare(a.ID, b.ID)) })
	p := pageAt(listed, cur, t.n)
	p.Progress = 1
	return p, nil
}

// clock is a test's time, moved by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time           { return c.t }
func (c *clock) advance(d time.Duration)  { c.t = c.t.Add(d) }
func (c *clock) ms(d time.Duration) int64 { return c.t.Add(d).UnixMilli() }
func settleFor(d time.Duration) *Sweeps   { return &Sweeps{For: &d, Margin: 10 * time.Minute} }
func noSettle() *Sweeps                   { return &Sweeps{Margin: 10 * time.Minute} }
func activitiesAt(prefix string, ts, created []int64) []Activity {
	out := make([]Activity, len(ts))
	for i := range ts {
		out[i] = Activity{ID: fmt.Sprintf("%s%02d", prefix, i), Timestamp: ts[i], Created: created[i]}
	}
	return out
}

// settleWindow is the recovery window of these tests: the day before the
// clock's start.
var settleStart = time.Date(2024, 5, 15, 12, 0, 0, 0, time.UTC)
var settleWindow = Window{Start: settleStart.Add(-24 * time.Hour).UnixMilli(), End: settleStart.Add(-23 * time.Hour).UnixMilli()}

// inWindow makes n activities of the window saved at created (ms).
func inWindow(prefix string, n int, created int64) []Activity {
	ts, cr := make([]int64, n), make([]int64, n)
	for i := range n {
		ts[i], cr[i] = settleWindow.Start+int64(i)*60_000, created
	}
	return activitiesAt(prefix, ts, cr)
}

func newSettling(sweeps *Sweeps, by TimeField) (*Replayer, *tenant, *recordingSink, *memCheckpoint, *clock) {
	c := &clock{t: settleStart}
	src := &tenant{n: 4, now: c.now}
	sink := &recordingSink{}
	cp := &memCheckpoint{st: State{Window: settleWindow, By: by, Pass: Pass{State: StatePending, Scope: Scope{Window: settleWindow, By: by}}}}
	return &Replayer{Source: src, Sink: sink, Checkpoint: cp, Sweeps: sweeps, Now: c.now}, src, sink, cp, c
}

func runOK(t *testing.T, r *Replayer) Result {
	t.Helper()
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// assertSentOnce checks that the sink got exactly want, each once.
func assertSentOnce(t *testing.T, sink *recordingSink, want ...[]Activity) {
	t.Helper()
	got := slices.Sorted(slices.Values(sink.ids))
	all := slices.Sorted(slices.Values(ids(slices.Concat(want...))))
	if !slices.Equal(got, all) {
		t.Fatalf("sent %v\nwant %v", got, all)
	}
}

// TestSettleSweepsLateArrivalsOnce follows a recovery with --settle 1h:
// the pass leaves what was saved from its horizon on to the sweeps, each
// run before the deadline sweeps once, an activity reaches the sink once
// whichever run finds it, a run with nothing new sends nothing, and the
// first run after the deadline makes the final sweep and completes; the
// next makes no request.
func TestSettleSweepsLateArrivalsOnce(t *testing.T) {
	r, src, sink, cp, c := newSettling(settleFor(time.Hour), ByDate)
	early := inWindow("early", 10, settleWindow.End+1000) // saved long before the run
	duringPass := inWindow("during", 3, c.ms(-5*time.Minute))
	src.save(early...)
	src.save(duringPass...)

	res := runOK(t, r)
	st := cp.st
	h0 := c.ms(-10 * time.Minute)
	if st.State != StateSettling || st.Scope.SavedBefore != h0 || st.Settle.Horizon != h0 || !st.Settle.Deadline.Equal(c.t.Add(time.Hour)) ||
		res.Sweeps != 0 || st.Sent != 10 {
		t.Fatalf("after the pass: %+v %+v, result %+v", st.Pass, st.Settle, res)
	}
	assertSentOnce(t, sink, early)

	// 15 minutes on: saved while the pass ran (before), while the first
	// sweep runs but within the margin (left to the next), and one listed
	// only long after it was saved.
	c.advance(15 * time.Minute)
	withinMargin := inWindow("margin", 2, c.ms(-5*time.Minute))
	slow := inWindow("slow", 1, c.ms(-14*time.Minute))
	src.save(withinMargin...)
	src.save(slow...)
	src.indexed = map[string]int64{slow[0].ID: c.ms(time.Minute)}
	runOK(t, r)
	assertSentOnce(t, sink, early, duringPass)
	if st := cp.st; st.State != StateSettling || st.Settle.Sweeps != 1 || st.Settle.LateSent != 3 || st.Settle.Horizon != c.ms(-10*time.Minute) ||
		st.Sweep.State != StateCompleted || st.Sent != 13 {
		t.Fatalf("after sweep 1: %+v, sweep %+v", st.Settle, st.Sweep)
	}
	// The slow one was saved before the first sweep's horizon but listed
	// only 15 minutes after it was saved, past the 10-minute margin: no
	// sweep reads it. That is the limit the margin sets.

	c.advance(15 * time.Minute)
	runOK(t, r)
	assertSentOnce(t, sink, early, duringPass, withinMargin)

	// Nothing new: the sweep asks once and sends nothing.
	c.advance(15 * time.Minute)
	fetches := src.fetches
	runOK(t, r)
	assertSentOnce(t, sink, early, duringPass, withinMargin)
	if src.fetches != fetches+1 || cp.st.Settle.Sweeps != 3 || cp.st.State != StateSettling {
		t.Fatalf("a sweep with nothing new: %d fetches, %+v", src.fetches-fetches, cp.st.Settle)
	}

	// Past the deadline: the final sweep reads all that is left, with no
	// upper bound, and completes the recovery.
	c.advance(time.Hour)
	veryLate := inWindow("verylate", 5, c.ms(-time.Minute))
	src.save(veryLate...)
	res = runOK(t, r)
	assertSentOnce(t, sink, early, duringPass, withinMargin, veryLate)
	st = cp.st
	if st.State != StateCompleted || !st.Settle.Final || st.Settle.Sweeps != 4 || st.Settle.LateSent != 10 || st.Sent != 20 || res.Sweeps != 1 ||
		st.Sweep.Scope.SavedBefore != 0 || !st.CompletedAt.Equal(c.t) {
		t.Fatalf("after the deadline: %+v %+v, result %+v", st.Settle, st.Sweep, res)
	}
	fetches = src.fetches
	if res := runOK(t, r); !res.AlreadyCompleted || src.fetches != fetches {
		t.Fatalf("a run after completion: %+v, %d fetches", res, src.fetches-fetches)
	}
	// Every request of a sweep carried its range; the pass its horizon.
	for i, s := range src.scopes {
		if s.SavedBefore == 0 && s.SavedFrom == 0 || s.Window != settleWindow {
			t.Errorf("fetch %d had scope %s", i, s)
		}
	}
}

// TestWithoutSettleTheFinalSweepFollowsThePass: with no --settle the run
// sends what was saved while it ran too, and completes.
func TestWithoutSettleTheFinalSweepFollowsThePass(t *testing.T) {
	r, src, sink, cp, c := newSettling(noSettle(), ByDate)
	early := inWindow("early", 6, settleWindow.End+1000)
	justSaved := inWindow("just", 2, c.ms(-time.Minute))
	src.save(early...)
	src.save(justSaved...)
	res := runOK(t, r)
	assertSentOnce(t, sink, early, justSaved)
	st := cp.st
	if st.State != StateCompleted || st.Settle.Sweeps != 1 || !st.Settle.Final || st.Settle.LateSent != 2 || res.Sweeps != 1 || st.Sent != 8 {
		t.Fatalf("%+v %+v", st.Settle, res)
	}
}

// TestSettleByCreated: a window by created that ended before the horizon
// can gain nothing: no sweep asks the source anything, before the
// deadline or after it.
func TestSettleByCreated(t *testing.T) {
	r, src, sink, cp, c := newSettling(settleFor(time.Hour), ByCreated)
	// Saved in the window; one happened a day before it.
	saved := activitiesAt("s", []int64{settleWindow.Start - 86_400_000, settleWindow.Start + 5}, []int64{settleWindow.Start + 10, settleWindow.End - 1})
	notSaved := activitiesAt("n", []int64{settleWindow.Start + 5}, []int64{settleWindow.End})
	src.save(saved...)
	src.save(notSaved...)
	runOK(t, r)
	assertSentOnce(t, sink, saved)
	if cp.st.State != StateSettling || cp.st.Scope.SavedBefore != c.ms(-10*time.Minute) {
		t.Fatalf("%+v", cp.st.Pass)
	}
	fetches := src.fetches
	c.advance(30 * time.Minute)
	runOK(t, r)
	c.advance(time.Hour)
	runOK(t, r)
	if src.fetches != fetches || cp.st.State != StateCompleted || cp.st.Settle.Sweeps != 0 {
		t.Fatalf("%d fetches after the pass; state %s %+v", src.fetches-fetches, cp.st.State, cp.st.Settle)
	}
	assertSentOnce(t, sink, saved)
}

// TestSweepResumesAfterAFailure: a sink failure in the middle of a sweep
// leaves the sweep failed with its batch in flight; the next run finishes
// that very sweep (same range), sending that batch again and nothing else
// twice, before anything else.
func TestSweepResumesAfterAFailure(t *testing.T) {
	r, src, sink, cp, c := newSettling(settleFor(time.Hour), ByDate)
	src.save(inWindow("early", 3, settleWindow.End+1000)...)
	runOK(t, r)
	c.advance(15 * time.Minute)
	late := inWindow("late", 10, c.ms(-12*time.Minute))
	src.save(late...)
	sink.ids, sink.failNext = nil, 0
	// The second page of the sweep fails half way.
	sink.onSend = atSend(2, func() { sink.failNext = 1 })
	if _, err := r.Run(context.Background()); err == nil {
		t.Fatal("the sweep did not fail")
	}
	st := cp.st
	if st.State != StateSettling || st.Sweep.State != StateFailed || st.Sweep.InFlight.Activities != 4 || st.Sweep.Sent != 4 || st.Settle.Sweeps != 0 {
		t.Fatalf("after the failure: %+v, sweep %+v", st.Settle, st.Sweep)
	}
	failed := st.Sweep.Scope
	sink.onSend = nil
	c.advance(time.Minute)
	res := runOK(t, r)
	st = cp.st
	if st.Sweep.Scope != failed || st.Sweep.State != StateCompleted || st.Settle.Sweeps != 1 || st.Sweep.Resent != 4 || st.Resent != 4 ||
		st.Settle.LateSent != 10 || res.Resent != 4 {
		t.Fatalf("after the resumed sweep: %+v, sweep %+v", st.Settle, st.Sweep)
	}
	// Half of the failed batch reached the sink before it failed and is
	// sent again; the rest of the window's late arrivals once.
	counts := map[string]int{}
	for _, id := range sink.ids {
		counts[id]++
	}
	for _, a := range late {
		if counts[a.ID] < 1 || counts[a.ID] > 2 {
			t.Errorf("%s sent %d times", a.ID, counts[a.ID])
		}
	}
}

// TestSweepStopsAndResumes: a planned stop in the middle of a sweep is
// exit 75 naming the sweep; the next run resumes it.
func TestSweepStopsAndResumes(t *testing.T) {
	r, src, sink, cp, c := newSettling(settleFor(time.Hour), ByDate)
	src.save(inWindow("early", 3, settleWindow.End+1000)...)
	runOK(t, r)
	c.advance(15 * time.Minute)
	late := inWindow("late", 10, c.ms(-12*time.Minute))
	src.save(late...)
	stop := make(chan struct{})
	r.Stop = stop
	sink.onSend = func() { close(stop); sink.onSend = nil }
	_, err := r.Run(context.Background())
	if !errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), "of the sweep for activities saved late done (4 sent in all)") {
		t.Fatalf("stop: %v", err)
	}
	if cp.st.Sweep.State != StateStopped || cp.st.State != StateSettling || cp.st.Current() != cp.st.Sweep {
		t.Fatalf("after the stop: %+v", cp.st.Sweep)
	}
	r.Stop = nil
	runOK(t, r)
	assertSentOnce(t, sink, inWindow("early", 3, 0), late)
	if cp.st.Settle.Sweeps != 1 || cp.st.Settle.LateSent != 10 {
		t.Fatalf("%+v", cp.st.Settle)
	}
}

// TestSettleChangedOnALaterRun: --settle given again moves the deadline
// with it; omitted, the checkpoint's stays.
func TestSettleChangedOnALaterRun(t *testing.T) {
	r, src, _, cp, c := newSettling(settleFor(24*time.Hour), ByDate)
	src.save(inWindow("early", 3, settleWindow.End+1000)...)
	runOK(t, r)
	done := c.t
	c.advance(15 * time.Minute)
	r.Sweeps = noSettle()
	runOK(t, r)
	if st := cp.st; st.State != StateSettling || st.Settle.For != 24*time.Hour || !st.Settle.Deadline.Equal(done.Add(24*time.Hour)) {
		t.Fatalf("without --settle: %+v", st.Settle)
	}
	c.advance(15 * time.Minute)
	r.Sweeps = settleFor(0)
	runOK(t, r)
	if st := cp.st; st.State != StateCompleted || !st.Settle.Deadline.Equal(done) || st.Settle.Sweeps != 2 {
		t.Fatalf("with --settle 0s: %s %+v", st.State, st.Settle)
	}
}

// TestPassWithoutHorizonHasNoSweep: a pass a version before --settle began
// (no horizon: it may have sent anything saved until now) completes as it
// did then.
func TestPassWithoutHorizonHasNoSweep(t *testing.T) {
	r, src, sink, cp, _ := newSettling(settleFor(time.Hour), ByDate)
	acts := inWindow("a", 9, settleWindow.End+1000)
	src.save(acts...)
	cp.st.Cursor, cp.st.Sent, cp.st.State = at(4), 4, StateStopped
	runOK(t, r)
	assertSentOnce(t, sink, acts[4:])
	if cp.st.State != StateCompleted || cp.st.Settle != nil || cp.st.Sweep != nil {
		t.Fatalf("%s %+v", cp.st.State, cp.st.Settle)
	}
}

// TestWindowNotEndedWaitsForItsEnd: a window whose end lies after the
// present (by date and by created alike) is not complete when the pass
// reaches the present. The run ends on a WindowOpen (a stop: errors.Is
// ErrStopped) with the checkpoint waiting; each later run before the
// window's end plus the margin sweeps what MCAS saved since the last and
// waits again; the first run from then makes the final sweep and
// completes. Every activity is sent once, including those that happen
// (or are saved) after the first run.
func TestWindowNotEndedWaitsForItsEnd(t *testing.T) {
	for _, by := range []TimeField{ByDate, ByCreated} {
		t.Run(by.String(), func(t *testing.T) {
			c := &clock{t: settleStart}
			// Two hours, of which the first has passed.
			w := Window{Start: c.ms(-time.Hour), End: c.ms(time.Hour)}
			src := &tenant{n: 4, now: c.now}
			sink := &recordingSink{}
			cp := &memCheckpoint{st: State{Window: w, By: by, Pass: Pass{State: StatePending, Scope: Scope{Window: w, By: by}}}}
			r := &Replayer{Source: src, Sink: sink, Checkpoint: cp, Sweeps: noSettle(), Now: c.now}
			// at makes activities that happen and are saved at t (ms).
			at := func(prefix string, ts ...int64) []Activity { return activitiesAt(prefix, ts, ts) }
			past := at("past", c.ms(-50*time.Minute), c.ms(-20*time.Minute))
			src.save(past...)

			_, err := r.Run(context.Background())
			var open *WindowOpen
			if !errors.As(err, &open) || !errors.Is(err, ErrStopped) {
				t.Fatalf("run on an open window: %v", err)
			}
			endsAt := time.UnixMilli(w.End).UTC().Add(10 * time.Minute)
			if st := cp.st; st.State != StateWaiting || st.StoredVersion() != 4 || !open.EndsAt.Equal(endsAt) || open.ReadBefore != c.ms(-10*time.Minute) ||
				open.Sent != 2 || !st.Settle.CompletesFrom(w).Equal(endsAt) {
				t.Fatalf("after the pass: %+v %+v %+v", st.Pass, st.Settle, open)
			}
			assertSentOnce(t, sink, past)
			if pr := cp.st.ProgressOf(cp.st.Pass, c.now(), false); pr.Percent != 41.6 || pr.ByCount {
				t.Fatalf("a waiting window is %.1f%% done, want the time up to the horizon: 41.6%%", pr.Percent)
			}

			// Half an hour on: what happened since is swept; still open.
			c.advance(30 * time.Minute)
			soon := at("soon", c.ms(-25*time.Minute), c.ms(-15*time.Minute))
			src.save(soon...)
			if _, err := r.Run(context.Background()); !errors.As(err, &open) {
				t.Fatalf("second run: %v", err)
			}
			assertSentOnce(t, sink, past, soon)
			if st := cp.st; st.State != StateWaiting || st.Settle.Sweeps != 1 || st.Settle.Horizon != c.ms(-10*time.Minute) {
				t.Fatalf("after a sweep: %s %+v", st.State, st.Settle)
			}

			// The window's end passed, but not the margin: still waiting.
			c.advance(35 * time.Minute)
			late := at("late", c.ms(-40*time.Minute), c.ms(-6*time.Minute)) // the last saved 1 minute before the end
			src.save(late...)
			if _, err := r.Run(context.Background()); !errors.As(err, &open) {
				t.Fatalf("run within the margin after the end: %v", err)
			}
			// From the end plus the margin, the rest, and completed.
			c.t = endsAt
			res, err := r.Run(context.Background())
			if err != nil || cp.st.State != StateCompleted || !cp.st.Settle.Final || res.AlreadyCompleted {
				t.Fatalf("run at the window's end plus the margin: %v, %s %+v", err, cp.st.State, cp.st.Settle)
			}
			assertSentOnce(t, sink, past, soon, late)
			if cp.st.StoredVersion() != 2 {
				t.Fatalf("a completed recovery is stored as version %d", cp.st.StoredVersion())
			}
		})
	}
}

// TestRateLeavesTheSinkWaitOut: the rate and the time left of a pass are
// reckoned from the start of the run, and again from the end of a wait
// for the sink (the run records the sink's failure as it waits): the
// first page after the SIEM came back does not count the wait, which made
// the time left 28 minutes for a run of seconds.
func TestRateLeavesTheSinkWaitOut(t *testing.T) {
	r, src, sink, cp, _ := newSettling(noSettle(), ByDate)
	// The clock moves while the sink has the batch, beside the page read
	// ahead: it is shared under a lock.
	var mu sync.Mutex
	c := &clock{t: settleStart}
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return c.now()
	}
	advance := func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		c.advance(d)
	}
	r.Now, src.now = now, now
	src.save(inWindow("a", 12, settleWindow.End+1000)...)
	start := now()
	sink.onSend = atSend(2, func() {
		// As the command's sink failure callback does, then the wait.
		advance(time.Second)
		cp.Update(context.Background(), func(s *State) error {
			s.LastError, s.LastErrorAt = Redacted{text: "cannot connect"}, now()
			return nil
		})
		advance(30 * time.Minute)
	})
	var marks []time.Time
	var sent []int64
	r.Progress = func(st State) {
		marks, sent = append(marks, st.Current().RunStartedAt), append(sent, st.Current().RunStartedSent)
	}
	runOK(t, r)
	back := start.Add(30*time.Minute + time.Second)
	if len(marks) < 3 || !marks[0].Equal(start) || !marks[1].Equal(back) || sent[1] != 8 || !marks[2].Equal(back) {
		t.Fatalf("the rate's marks after each page: %v (sent %v); want %v, then %v from the page after the wait", marks, sent, start, back)
	}
}
