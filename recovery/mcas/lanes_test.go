package mcas_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas"
	"siem-recovery/recovery/mcas/mcastest"
)

func TestLanesFromAnswerTimeAndRate(t *testing.T) {
	for _, tc := range []struct {
		answer    time.Duration
		perMinute float64
		want      int
	}{
		{200 * time.Millisecond, 20, 1}, // fast answers: the rate limit spaces requests 3 s apart
		{2 * time.Second, 20, 1},        // 0.67 requests per answer time
		{2 * time.Second, 30, 2},        // 1 per answer time, and the time between answer and request
		{5 * time.Second, 30, 3},        // 2.5
		{5 * time.Second, 20, 2},        // 1.67
		{time.Second, 600, 8},           // 10: capped
		{0, 30, 1},                      // nothing measured yet
	} {
		if got := mcas.Lanes(tc.answer, tc.perMinute); got != tc.want {
			t.Errorf("Lanes(%v, %v a minute) = %d, want %d", tc.answer, tc.perMinute, got, tc.want)
		}
	}
}

// fetchLanes reads each of cuts through its own slice of src, side by
// side, and returns the ids each lane delivered and the first error.
func fetchLanes(t *testing.T, src *mcas.Source, cuts []recovery.Window) ([][]string, error) {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	ids := make([][]string, len(cuts))
	errs := make([]error, len(cuts))
	var wg sync.WaitGroup
	for i, w := range cuts {
		wg.Go(func() {
			d, err := drain(ctx, t, src.Over(recovery.Scope{Window: w}), recovery.Cursor{}, 0)
			ids[i], errs[i] = d.ids, err
		})
	}
	wg.Wait()
	return ids, errors.Join(errs...)
}

func TestLanesDeliverEachActivityOnceSideBySide(t *testing.T) {
	// 30,000 activities, 12,000 of them in one hour of the day and 300 in
	// one millisecond of that hour, across page boundaries.
	const hour = 3600 * 1000
	busy := recovery.Window{Start: testWindow.Start + 9*hour, End: testWindow.Start + 10*hour}
	spread, ids := generate(18000, 0, 0)
	bunched := mcastest.Generate(mcastest.GenerateOptions{Window: busy, Count: 12000, Burst: 300, BurstIndex: 4700, First: 18000})
	srv := mcastest.New(t, mcastest.Options{Activities: append(spread, bunched...), AnswerTime: 50 * time.Millisecond})
	want := append(ids, mcastest.IDs(bunched)...)
	src, _ := newSource(t, srv, func(c *mcas.Config) { c.PageSize = 1000 })

	const lanes = 4
	total, _, err := countAll(ctxFor(t, 10*time.Second), src)
	if err != nil || total != 30000 {
		t.Fatalf("Count: %d, %v", total, err)
	}
	cuts, balancing, err := recovery.Slices(ctxFor(t, 30*time.Second), testWindow, lanes, total, 1000, 5*(lanes-1), src.Count)
	if err != nil {
		t.Fatalf("Slices: %v", err)
	}
	if len(cuts) != lanes || balancing > 5*(lanes-1) {
		t.Fatalf("%d slices after %d counts: %v", len(cuts), balancing, cuts)
	}
	before := srv.Stats().Requests
	windows := make([]recovery.Window, len(cuts))
	for i, c := range cuts {
		windows[i] = c.Window
	}
	got, err := fetchLanes(t, src, windows)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for i, lane := range got {
		// Balanced: each lane has its quarter, to a page at either end.
		if n := len(lane); n < 7500-2000 || n > 7500+2000 {
			t.Errorf("lane %d %v delivered %d activities, want 7500 ± 2000", i, windows[i], n)
		}
		all = append(all, lane...)
	}
	assertExactlyOnce(t, all, want)
	// The lanes were read side by side, and none cost more than its
	// pages: a page of 1,000 is a little short where it ends inside a
	// millisecond (the burst), and each lane's last page is not full.
	st := srv.Stats()
	if st.MaxInFlight < 2 {
		t.Errorf("at most %d request in flight: the lanes did not overlap", st.MaxInFlight)
	}
	if pages := st.Requests - before; pages > 30+lanes+1 {
		t.Errorf("%d page requests for 30,000 activities in pages of 1,000 in %d lanes", pages, lanes)
	}
}

func TestLanesShareOneRateLimit(t *testing.T) {
	// The tenant allows 10 requests a second; the recovery's rate limit is
	// 5 a second. Three lanes each with a limit of their own would make
	// 15 a second and be throttled; sharing the Budget, they never are.
	acts, want := generate(9000, 0, 0)
	cuts := []recovery.Window{
		{Start: testWindow.Start, End: testWindow.Start + 8*3600*1000},
		{Start: testWindow.Start + 8*3600*1000, End: testWindow.Start + 16*3600*1000},
		{Start: testWindow.Start + 16*3600*1000, End: testWindow.End},
	}
	t.Run("slices of one source", func(t *testing.T) {
		srv := mcastest.New(t, mcastest.Options{Activities: acts, RequestsPerMinute: 10, BudgetPeriod: time.Second})
		src, _ := newSource(t, srv, func(c *mcas.Config) { c.RateLimit, c.PageSize = 300, 500 })
		got, err := fetchLanes(t, src, cuts)
		if err != nil {
			t.Fatal(err)
		}
		assertExactlyOnce(t, append(append(got[0], got[1]...), got[2]...), want)
		if st := srv.Stats(); st.Throttled != 0 || st.Requests < 18 {
			t.Errorf("%d of %d requests throttled, want none", st.Throttled, st.Requests)
		}
	})
}

func TestLanesShareOneCountOfCriticalErrors(t *testing.T) {
	// Four failed requests in a row end the run, whichever lanes made
	// them: two lanes with a count each would see two apiece and go on.
	acts, _ := generate(2000, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts, AnswerTime: 20 * time.Millisecond})
	srv.FailNext(4, mcastest.Fault{Status: 503})
	src, _ := newSource(t, srv, func(c *mcas.Config) { c.MaxCriticalErrors = 4 })
	half := testWindow.Start + (testWindow.End-testWindow.Start)/2
	_, err := fetchLanes(t, src, []recovery.Window{{Start: testWindow.Start, End: half}, {Start: half, End: testWindow.End}})
	if !errors.Is(err, recovery.ErrTooManyCriticalErrors) {
		t.Fatalf("error %v, want too many critical errors", err)
	}
	if st := srv.Stats(); st.Requests != 4 && st.Requests != 5 {
		t.Errorf("%d requests: want the 4 that failed (and the other lane's one in flight)", st.Requests)
	}
}

func TestBudgetMeasuresTheAnswerTime(t *testing.T) {
	acts, _ := generate(100, 0, 0)
	const answer = 200 * time.Millisecond
	srv := mcastest.New(t, mcastest.Options{Activities: acts, AnswerTime: answer})
	src, _ := newSource(t, srv, nil)
	if got := src.Budget().AnswerTime(); got != 0 {
		t.Errorf("AnswerTime before any request: %v, want 0", got)
	}
	// A throttled request is not an answer: it says nothing of the time
	// a page takes.
	srv.FailNext(1, mcastest.Fault{Status: 429, RetryAfter: "0"})
	if _, _, err := countAll(ctxFor(t, 10*time.Second), src); err != nil {
		t.Fatal(err)
	}
	if got := src.Budget().AnswerTime(); got < answer {
		t.Errorf("AnswerTime %v, want at least the emulator's %v", got, answer)
	}
	if got := src.Budget().PerMinute(); got != 600000 {
		t.Errorf("PerMinute %v, want the configured 600000", got)
	}
}

// TestNarrowedLaneEndsAtItsSlice: a lane that read the start of the whole
// window, then had its slice cut short (the first lane of a pass, when the
// plan comes; or resumed from a checkpoint that recorded the plan), goes
// on from the cursor it was given for the whole window and ends at its
// slice's end: no page past the one that reaches it, nothing of the next
// slice listed, no warning. The lane after it reads the rest: each
// activity once, in scan mode (continuations made for the whole window,
// through a burst of one millisecond) and in plain paging (whose filters
// are made for the slice at each page).
func TestNarrowedLaneEndsAtItsSlice(t *testing.T) {
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: testWindow, Count: 6000, Burst: 700, BurstIndex: 1200})
	ids := mcastest.IDs(acts)
	// The cut: the time of activity 2600 (after the burst, which the
	// first pages read), so the slice holds activities 0 to 2599.
	first, err := recovery.ParseActivity(acts[2600])
	if err != nil {
		t.Fatal(err)
	}
	cut := first.Timestamp
	for _, tc := range []struct {
		name   string
		paging mcas.Paging
		size   int
		wide   int // pages read for the whole window
		pages  int // pages in the slice after them: the last reaches the cut
	}{
		// Scan pages of 499 (the emulator drops the final millisecond's
		// records, as the API does): the third ends before the burst
		// (activities 998 to 1199), the fourth is the burst's first 500,
		// the fifth its last 200 and 299 more, the sixth (2199 to 2697)
		// reaches the cut and is the slice's last.
		{"scan", mcas.PagingScan, 500, 3, 3},
		// Plain pages of 100 with filters made for the slice: 2,100 left
		// after 500, in 21 pages, the last answered "hasNext": false.
		{"plain", mcas.PagingPlain, 100, 5, 21},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := mcastest.New(t, mcastest.Options{Activities: acts})
			src, logs := newSource(t, srv, func(c *mcas.Config) { c.Paging, c.PageSize = tc.paging, tc.size })
			ctx := ctxFor(t, time.Minute)
			wide, err := drain(ctx, t, src.Over(recovery.Scope{Window: testWindow}), recovery.Cursor{}, tc.wide)
			if err != nil || len(wide.pages) != tc.wide || wide.pages[tc.wide-1].Last {
				t.Fatalf("the whole window's first %d pages: %v", tc.wide, err)
			}
			before := srv.Stats().Requests
			slice := recovery.Window{Start: testWindow.Start, End: cut}
			narrow, err := drain(ctx, t, src.Over(recovery.Scope{Window: slice}), wide.next, 0)
			if err != nil {
				t.Fatal(err)
			}
			made := srv.Stats().Requests - before
			if made != tc.pages || narrow.requests != made || len(narrow.pages) != tc.pages {
				t.Errorf("the slice's rest took %d requests (%d counted) in %d pages; want %d", made, narrow.requests, len(narrow.pages), tc.pages)
			}
			assertExactlyOnce(t, append(wide.ids, narrow.ids...), ids[:2600])
			if strings.Contains(logs.String(), "outside the window") {
				t.Errorf("a slice cut short is no fault of the API's:\n%s", logs.String())
			}
			rest, err := drain(ctx, t, src.Over(recovery.Scope{Window: recovery.Window{Start: cut, End: testWindow.End}}), recovery.Cursor{}, 0)
			if err != nil {
				t.Fatal(err)
			}
			assertExactlyOnce(t, slices.Concat(wide.ids, narrow.ids, rest.ids), ids)
		})
	}

	// A plain cursor at or past the end of a slice cut short needs no
	// request: nothing of the slice is left.
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	src, _ := newSource(t, srv, func(c *mcas.Config) { c.Paging, c.PageSize = mcas.PagingPlain, 100 })
	d, err := drain(ctxFor(t, time.Minute), t, src.Over(recovery.Scope{Window: testWindow}), recovery.Cursor{}, 30)
	if err != nil {
		t.Fatal(err)
	}
	before := srv.Stats().Requests
	page, err := src.Over(recovery.Scope{Window: recovery.Window{Start: testWindow.Start, End: cut}}).Fetch(ctxFor(t, time.Minute), d.next)
	if err != nil || !page.Last || len(page.Activities) != 0 || page.Requests != 0 || srv.Stats().Requests != before {
		t.Errorf("a cursor past the slice: %+v, %v, %d requests made", page, err, srv.Stats().Requests-before)
	}
}
