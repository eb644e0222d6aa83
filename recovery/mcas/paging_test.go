package mcas_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas"
	"siem-recovery/recovery/mcas/mcastest"
)

// requestBody is the body the source sends, as the emulator recorded it.
type requestBody struct {
	Filters       json.RawMessage `json:"filters"`
	SortField     string          `json:"sortField"`
	SortDirection string          `json:"sortDirection"`
	IsScan        bool            `json:"isScan"`
	Skip          *int            `json:"skip"`
	Limit         int             `json:"limit"`
}

func bodyOf(t *testing.T, r mcastest.Request) requestBody {
	t.Helper()
	var b requestBody
	if err := json.Unmarshal(r.Body, &b); err != nil {
		t.Fatalf("request body %s: %v", r.Body, err)
	}
	return b
}

// A scan delivers every activity of the window once, over pages that end
// inside a burst of one millisecond, each request's filters the last
// answer's nextQueryFilters. The window holds more than two pages of the
// larger size.
func TestScanDeliversEachActivityExactlyOnce(t *testing.T) {
	t.Parallel()
	const n, burst = 12000, 300
	for _, pageSize := range []int{5000, 1000} {
		t.Run(fmt.Sprintf("page=%d", pageSize), func(t *testing.T) {
			// The burst straddles the end of the first page.
			acts, want := generate(n, burst, pageSize-burst/2)
			srv := mcastest.New(t, mcastest.Options{Activities: acts})
			src, _ := newSource(t, srv, func(c *mcas.Config) { c.PageSize = pageSize })

			d := drainAll(t, src, 60*time.Second, want, nil)

			stats := srv.Stats()
			if limit := ceilDiv(n, pageSize) + 2; stats.Requests > limit {
				t.Errorf("%d activity requests, want at most ceil(%d/%d)+2 = %d", stats.Requests, n, pageSize, limit)
			}
			if d.requests != stats.Requests {
				t.Errorf("pages counted %d requests, the API received %d", d.requests, stats.Requests)
			}
			if stats.NoSlash != 0 {
				t.Errorf("%d requests without the trailing slash", stats.NoSlash)
			}

			reqs := srv.Requests()
			first := bodyOf(t, reqs[0])
			wantFilters := fmt.Sprintf(`{"date":{"gte":%d,"lte":%d}}`, testWindow.Start, testWindow.End-1)
			if string(first.Filters) != wantFilters || first.SortField != "date" || first.SortDirection != "asc" || !first.IsScan || first.Limit != pageSize {
				t.Errorf("first request %s, want filters %s, sortField date, sortDirection asc, isScan, limit %d", reqs[0].Body, wantFilters, pageSize)
			}
			for i, r := range reqs {
				if r.Auth != "Token" || r.Path != "/api/v1/activities/" {
					t.Errorf("request %d: %s with %q auth, want /api/v1/activities/ with Token", i, r.Path, r.Auth)
				}
				// Each request's filters are the previous answer's
				// nextQueryFilters, byte for byte.
				if i > 0 && i <= len(d.pages) { // more requests than pages: reported above
					got := bodyOf(t, r).Filters
					prev := mcas.Continuation(d.pages[i-1].Next)
					if !bytes.Equal(got, prev) {
						t.Errorf("request %d filters %s, want the previous nextQueryFilters %s", i, got, prev)
					}
				}
			}
		})
	}
}

// Plain paging delivers every activity of the window once: its date
// cursor moves past the 5,000 activities skip and limit can reach, and
// stays on a millisecond shared by three pages until all are delivered.
func TestPlainPagingDeliversEachActivityExactlyOnce(t *testing.T) {
	t.Parallel()
	const n, burst, pageSize = 7000, 300, 100
	// 300 activities in one millisecond cover three page boundaries.
	acts, want := generate(n, burst, 1150)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	src, _ := newSource(t, srv, func(c *mcas.Config) { c.Paging = mcas.PagingPlain })

	d := drainAll(t, src, 60*time.Second, want, nil)
	stats := srv.Stats()
	if limit := ceilDiv(n, pageSize) + 2; stats.Requests > limit {
		t.Errorf("%d activity requests, want at most %d", stats.Requests, limit)
	}
	for i, r := range srv.Requests() {
		b := bodyOf(t, r)
		if b.IsScan || b.Limit > 100 || b.Skip == nil || *b.Skip+b.Limit > 5000 || b.SortDirection != "asc" {
			t.Fatalf("request %d: %s is not plain paging within the API's limits", i, r.Body)
		}
	}
	// Inside the burst, the cursor stays at its millisecond and lists
	// every id delivered there.
	var inBurst int
	for _, p := range d.pages {
		if len(mcas.SeenIDs(p.Next)) > 1 {
			inBurst++
			if len(mcas.Continuation(p.Next)) != 0 {
				t.Errorf("a date cursor with NextFilters: %v", p.Next)
			}
		}
	}
	if inBurst != 3 {
		t.Errorf("%d pages ended inside the burst, want 3", inBurst)
	}
}

func TestPageSizeChoosesPaging(t *testing.T) {
	t.Parallel()
	acts, want := generate(1200, 0, 0)
	for _, tc := range []struct {
		pageSize int
		scan     bool
	}{{0, true}, {500, true}, {100, false}, {7, false}} {
		t.Run(fmt.Sprint(tc.pageSize), func(t *testing.T) {
			srv := mcastest.New(t, mcastest.Options{Activities: acts})
			src, _ := newSource(t, srv, func(c *mcas.Config) { c.PageSize = tc.pageSize })
			drainAll(t, src, 30*time.Second, want, nil)
			if b := bodyOf(t, srv.Requests()[0]); b.IsScan != tc.scan {
				t.Errorf("isScan %v, want %v (%s)", b.IsScan, tc.scan, srv.Requests()[0].Body)
			}
		})
	}
	for _, bad := range []int{101, 499, 5001, -1} {
		_, err := mcas.New(mcas.Config{BaseURL: "https://contoso.us2.portal.cloudappsecurity.com", Token: recovery.NewToken(mcastest.DefaultToken), Window: testWindow, PageSize: bad})
		if !errorsIs(err, recovery.ErrUsage) {
			t.Errorf("PageSize %d: error %v, want a usage error", bad, err)
		}
	}
}

func TestResumeContinuesWhereItStopped(t *testing.T) {
	t.Parallel()
	acts, want := generate(3000, 300, 950)
	for _, tc := range []struct {
		name   string
		paging mcas.Paging
		size   int
		pages  int // the first run's, well before the end
	}{{"scan", mcas.PagingScan, 500, 3}, {"plain", mcas.PagingPlain, 100, 11}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := mcastest.New(t, mcastest.Options{Activities: acts})
			edit := func(c *mcas.Config) { c.Paging, c.PageSize = tc.paging, tc.size }
			ctx := ctxFor(t, 30*time.Second)
			src, _ := newSource(t, srv, edit)
			first, err := drain(ctx, t, src, recovery.Cursor{}, tc.pages) // inside the burst in plain mode
			if err != nil {
				t.Fatalf("first run: %v", err)
			}
			// The cursor goes through the checkpoint as JSON.
			saved, err := json.Marshal(first.next)
			if err != nil {
				t.Fatal(err)
			}
			var cur recovery.Cursor
			if err := json.Unmarshal(saved, &cur); err != nil {
				t.Fatal(err)
			}
			if first.pages[len(first.pages)-1].Last || tc.paging == mcas.PagingScan && len(mcas.Continuation(cur)) == 0 || tc.paging == mcas.PagingPlain && len(mcas.SeenIDs(cur)) < 2 {
				t.Fatalf("cursor after the first run: %s", saved)
			}
			// A new run (a new Source, configured in another mode even)
			// continues in the cursor's mode.
			other, _ := newSource(t, srv, nil)
			second, err := drain(ctx, t, other, cur, 0)
			if err != nil {
				t.Fatalf("second run: %v", err)
			}
			assertExactlyOnce(t, append(first.ids, second.ids...), want)
		})
	}
}

func TestAutoPagingFallsBackWhenScanIsRefused(t *testing.T) {
	acts, want := generate(1000, 150, 50)
	srv := mcastest.New(t, mcastest.Options{Activities: acts, NoScan: true})
	src, logs := newSource(t, srv, nil)
	d := drainAll(t, src, 30*time.Second, want, nil)
	reqs := srv.Requests()
	if !bodyOf(t, reqs[0]).IsScan || reqs[0].Status != 400 || bodyOf(t, reqs[1]).IsScan {
		t.Errorf("want a refused scan request, then plain paging; got %s (%d), %s", reqs[0].Body, reqs[0].Status, reqs[1].Body)
	}
	if d.pages[0].Requests != 2 {
		t.Errorf("the first page cost %d requests, want 2 (refused scan + plain)", d.pages[0].Requests)
	}
	if !strings.Contains(logs.String(), "refused scan mode") {
		t.Errorf("no warning about the fallback in the log:\n%s", logs)
	}
	// PagingScan does not fall back: the refusal is the answer.
	strict, _ := newSource(t, srv, func(c *mcas.Config) { c.Paging = mcas.PagingScan })
	if _, err := strict.Fetch(t.Context(), recovery.Cursor{}); !errorsIs(err, recovery.ErrUsage) {
		t.Errorf("PagingScan against an API without scan: %v, want a usage error", err)
	}
}

func TestFilterIsANDedWithTheWindow(t *testing.T) {
	t.Parallel()
	acts, _ := generate(3000, 40, 700)
	filter, err := recovery.ParseFilter([]byte(`{"service":{"eq":[11161,20893]},"activity.eventType":{"neq":["EVENT_O365_LOGOUT"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, raw := range acts {
		a, _ := recovery.ParseActivity(raw)
		if ok, _ := filter.Match(raw); ok && testWindow.Contains(a.Timestamp) {
			want = append(want, a.ID)
		}
	}
	if len(want) < 500 || len(want) > 2000 {
		t.Fatalf("the filter keeps %d of 3000: a poor test", len(want))
	}
	for _, paging := range []mcas.Paging{mcas.PagingScan, mcas.PagingPlain} {
		t.Run(paging.String(), func(t *testing.T) {
			srv := mcastest.New(t, mcastest.Options{Activities: acts})
			src, _ := newSource(t, srv, func(c *mcas.Config) { c.Filter, c.Paging, c.PageSize = filter, paging, 0 })
			drainAll(t, src, 30*time.Second, want, nil)
			wantFilters := fmt.Sprintf(`{"activity.eventType":{"neq":["EVENT_O365_LOGOUT"]},"date":{"gte":%d,"lte":%d},"service":{"eq":[11161,20893]}}`, testWindow.Start, testWindow.End-1)
			if got := string(bodyOf(t, srv.Requests()[0]).Filters); got != wantFilters {
				t.Errorf("filters %s, want %s", got, wantFilters)
			}
		})
	}
}

func TestScanThroughOneMillisecondLargerThanAPage(t *testing.T) {
	// 1200 activities in one millisecond, pages of 500: the API cannot drop
	// the final millisecond and continues inside it.
	acts, want := generate(1500, 1200, 100)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	src, _ := newSource(t, srv, func(c *mcas.Config) { c.PageSize = 500 })
	drainAll(t, src, 30*time.Second, want, nil)
}

func TestPlainPagingStopsAtTheSkipLimit(t *testing.T) {
	t.Parallel()
	// More than 4,900 activities in one millisecond cannot be paged
	// through with skip+limit ≤ 5000: the source says so instead of
	// looping or skipping them.
	acts, _ := generate(5200, 5100, 10)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	src, _ := newSource(t, srv, func(c *mcas.Config) { c.Paging = mcas.PagingPlain })
	d, err := drain(ctxFor(t, 30*time.Second), t, src, recovery.Cursor{}, 0)
	if !errors.Is(err, recovery.ErrInternal) || !strings.Contains(err.Error(), "share the millisecond") {
		t.Fatalf("error %v, want one about too many activities in one millisecond", err)
	}
	if len(d.ids) != 5010 {
		t.Errorf("delivered %d before stopping, want the 10 before the burst and 5000 of it", len(d.ids))
	}
}

// When the API's order within one millisecond is not stable, "skip the ids
// already delivered" may skip one never delivered. Plain paging must then
// stop with an error that says so, and what it delivered before must hold
// no id twice: it must never go on and lose an activity silently.
func TestPlainPagingStopsWhenTiesAreUnstable(t *testing.T) {
	acts, _ := generate(2000, 300, 1150) // 300 activities in one millisecond
	srv := mcastest.New(t, mcastest.Options{Activities: acts, UnstableTies: true})
	src, _ := newSource(t, srv, func(c *mcas.Config) { c.Paging = mcas.PagingPlain })
	d, err := drain(ctxFor(t, 30*time.Second), t, src, recovery.Cursor{}, 0)
	if !errors.Is(err, recovery.ErrInternal) || !strings.Contains(err.Error(), "its order within one millisecond is not stable") {
		t.Fatalf("drained %d activities, error %v; want the unstable-order error", len(d.ids), err)
	}
	seen := map[string]bool{}
	for _, id := range d.ids {
		if seen[id] {
			t.Fatalf("id %s delivered twice before the error", id)
		}
		seen[id] = true
	}
}

// TestCappedAnswers: the API may answer with fewer activities than the
// limit asked for (Microsoft documents 100 items an answer to API-token
// requests, where scan mode takes 500–5000). Paging follows hasNext, not
// the page's length, in scan mode and in plain paging, and PageSize then
// says what the pages hold, for the estimates.
func TestCappedAnswers(t *testing.T) {
	t.Parallel()
	const n = 1050
	acts, want := generate(n, 0, 0)
	for _, tc := range []struct {
		name     string
		pageSize int
		paging   mcas.Paging
		cap      int
		pages    int // the page size PageSize reports once paged
	}{
		// A scan page ends before its last millisecond: 99 of 100.
		{"scan", 5000, mcas.PagingScan, 100, 99},
		{"plain", 100, mcas.PagingPlain, 40, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := mcastest.New(t, mcastest.Options{Activities: acts, AnswerCap: tc.cap})
			src, _ := newSource(t, srv, func(c *mcas.Config) { c.PageSize, c.Paging = tc.pageSize, tc.paging })
			if got := src.PageSize(); got != tc.pageSize {
				t.Fatalf("PageSize before any answer = %d, want the limit %d", got, tc.pageSize)
			}
			d := drainAll(t, src, time.Minute, want, nil)
			if min := ceilDiv(n, tc.cap); d.requests < min || d.requests > min+2 {
				t.Errorf("%d requests for %d activities in answers of at most %d, want about %d", d.requests, n, tc.cap, min)
			}
			if got := srv.Stats().Activities; got != n {
				t.Errorf("the API listed %d activities, want %d", got, n)
			}
			if got := src.PageSize(); got != tc.pages {
				t.Errorf("PageSize after paging = %d, want %d", got, tc.pages)
			}
		})
	}
}
