package recovery

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	got := Buckets(Window{Start: 0, End: 2*3600_000 + 5}, time.Hour)
	want := []Window{{0, 3600_000}, {3600_000, 7200_000}, {7200_000, 7200_005}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Buckets = %v, want %v", got, want)
	}
}

// The SIEM's export is read as the SIEM holds it: CEF lines behind a
// syslog header (placed by rt=, an alert's by start=), JSON lines (by
// timestamp, or created with --by created), bare ids (held, but placed
// nowhere); an id seen twice counts once.
func TestReadReceived(t *testing.T) {
	buckets := Buckets(Window{Start: 1000, End: 4000}, time.Second)
	export := strings.Join([]string{
		"<134>1 2024-05-14T08:00:01.500Z h siem-recovery - - - CEF:0|MCAS|SIEM_Agent|1|EVENT_CATEGORY_LOGIN|Log on|0|externalId=a1 rt=1500 start=1500 end=1500 msg=x",
		"2024-05-14T08:00:01.600Z CEF:0|MCAS|SIEM_Agent|1|ALERT_SYSTEM|t|3|externalId=al1 start=2600 end=2600 msg=y",
		`{"_id":"j1","timestamp":3100,"created":1200}`,
		`{"_id":"j1","timestamp":3100}`,
		"# a comment",
		"bare-id",
		`{"_id":"late","timestamp":9000}`,
		"",
	}, "\n")
	for _, tt := range []struct {
		by   TimeField
		want string
	}{{ByDate, "[1 1 1] outside 1 unplaced 1"}, {ByCreated, "[2 1 0] outside 1 unplaced 1"}} {
		rec, err := ReadReceived(strings.NewReader(export), buckets, tt.by)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%v outside %d unplaced %d", rec.Counts, rec.Outside, rec.Unplaced); got != tt.want {
			t.Errorf("by %s: %s, want %s", tt.by, got, tt.want)
		}
		for _, id := range []string{"a1", "al1", "j1", "bare-id", "late"} {
			if !rec.IDs.Contains(id) {
				t.Errorf("by %s: %s not held", tt.by, id)
			}
		}
		if rec.IDs.Len() != 5 {
			t.Errorf("by %s: %d ids, want 5", tt.by, rec.IDs.Len())
		}
	}
	if _, err := ReadReceived(strings.NewReader("ok\nnot an id | at all\n"), buckets, ByDate); err == nil || !strings.Contains(err.Error(), "line 2 ") {
		t.Errorf("a foreign line: %v", err)
	}
}

func TestGapsMergesAdjacentBuckets(t *testing.T) {
	b := func(start, end int64, src, siem, missing int64, atLeast bool) BucketCount {
		return BucketCount{Window: Window{start, end}, Source: src, SIEM: siem, Missing: missing, AtLeast: atLeast, Listed: missing > 0}
	}
	gaps := Gaps([]BucketCount{
		b(0, 10, 5, 5, 0, false), b(10, 20, 7, 3, 4, false), b(20, 30, 10, 0, 10, true),
		b(30, 40, 2, 2, 0, false), b(40, 50, 3, 1, 2, false),
	})
	want := []Gap{{Window{10, 30}, 17, true, 3, 14}, {Window{40, 50}, 3, false, 1, 2}}
	if !slices.Equal(gaps, want) {
		t.Errorf("Gaps = %+v, want %+v", gaps, want)
	}
}

// gapTenant is a source that counts a part of its scope in one request,
// with totals that stop at cap (a lower bound past it, as the API's
// moreThanTotal), and reads any scope; it records what it was asked.
type gapTenant struct {
	mu      sync.Mutex
	acts    []Activity // in time order
	cap     int64      // 0: counts are exact
	counts  int
	listed  []Window // the scopes it read, in order
	noTotal bool
}

func (g *gapTenant) Fetch(ctx context.Context, cur Cursor) (Page, error) {
	return g.Over(Scope{Window: Window{Start: 0, End: 1 << 40}}).Fetch(ctx, cur)
}
func (g *gapTenant) Over(scope Scope) Source { return &gapScope{g, scope} }
func (g *gapTenant) Count(ctx context.Context, w Window) (Tally, error) {
	return g.Over(Scope{Window: w}).(*gapScope).Count(ctx, w)
}

type gapScope struct {
	g     *gapTenant
	scope Scope
}

func (v *gapScope) in() []Activity {
	var in []Activity
	for _, a := range v.g.acts {
		if v.scope.Contains(a) {
			in = append(in, a)
		}
	}
	return in
}

func (v *gapScope) Count(_ context.Context, w Window) (Tally, error) {
	v.g.mu.Lock()
	v.g.counts++
	v.g.mu.Unlock()
	if v.g.noTotal {
		return Tally{Requests: 1}, ErrNoTotal
	}
	n := int64(len((&gapScope{v.g, v.scope.Within(w)}).in()))
	if v.g.cap > 0 && n > v.g.cap {
		return Tally{Activities: v.g.cap, AtLeast: true, Requests: 1}, nil
	}
	return Tally{Activities: n, Requests: 1}, nil
}

func (v *gapScope) Fetch(_ context.Context, cur Cursor) (Page, error) {
	if cur.IsZero() {
		v.g.mu.Lock()
		v.g.listed = append(v.g.listed, v.scope.Window)
		v.g.mu.Unlock()
	}
	return pageAt(v.in(), cur, 3), nil
}

// gapSpan: 6 buckets of 100 ms, 4 activities each (ids b<bucket>-<k>).
func gapSpan() (*gapTenant, []Window) {
	g := &gapTenant{}
	buckets := Buckets(Window{Start: 1000, End: 1600}, 100*time.Millisecond)
	for i, b := range buckets {
		for k := range 4 {
			g.acts = append(g.acts, Activity{ID: fmt.Sprintf("b%d-%d", i, k), Timestamp: b.Start + int64(k)*10})
		}
	}
	return g, buckets
}

// siemLacking is the SIEM's export of g without the ids drop.
func siemLacking(t *testing.T, g *gapTenant, buckets []Window, drop ...string) *Received {
	t.Helper()
	var lines []string
	for _, a := range g.acts {
		if !slices.Contains(drop, a.ID) {
			lines = append(lines, fmt.Sprintf(`{"_id":%q,"timestamp":%d}`, a.ID, a.Timestamp))
		}
	}
	rec, err := ReadReceived(strings.NewReader(strings.Join(lines, "\n")), buckets, ByDate)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestComparerListsOnlyWhatCountsCannotSettle: a bucket is counted in one
// request; only those whose counts disagree, or whose count is a lower
// bound, are listed, and what the listing finds decides: a lower bound
// that the SIEM matches is not missing anything, and the ids the SIEM
// lacks are told in time order. Adjacent buckets that miss activities
// merge into one gap.
func TestComparerListsOnlyWhatCountsCannotSettle(t *testing.T) {
	g, buckets := gapSpan()
	g.acts = append(g.acts, Activity{ID: "b4-4", Timestamp: 1450}) // bucket 4 holds 5
	slices.SortFunc(g.acts, func(a, b Activity) int { return int(a.Timestamp - b.Timestamp) })
	g.cap = 4 // bucket 4's total says "more than 4"
	rec := siemLacking(t, g, buckets, "b1-2", "b2-0", "b2-3", "b5-1")
	var missing []string
	c := &Comparer{Source: g, Scope: Scope{Window: Window{Start: 1000, End: 1600}}, Received: rec, Missing: func(a Activity) { missing = append(missing, a.ID) }}
	cmp, err := c.Count(t.Context(), buckets)
	if err != nil {
		t.Fatal(err)
	}
	if g.counts != 6 || cmp.CountRequests != 6 || len(g.listed) != 0 {
		t.Fatalf("Count: %d counts (%d requests), %d listings; want 6, 6, 0", g.counts, cmp.CountRequests, len(g.listed))
	}
	if err := c.List(t.Context(), &cmp, BucketCount.NeedsListing); err != nil {
		t.Fatal(err)
	}
	want := []Window{buckets[1], buckets[2], buckets[4], buckets[5]}
	if !slices.Equal(g.listed, want) {
		t.Errorf("listed %v, want %v (those whose counts disagree, and the lower bound)", g.listed, want)
	}
	if got := []string{"b1-2", "b2-0", "b2-3", "b5-1"}; !slices.Equal(missing, got) {
		t.Errorf("missing %v, want %v", missing, got)
	}
	if b := cmp.Buckets[4]; !b.Listed || b.Source != 5 || b.AtLeast || b.SIEM != 5 || b.Missing != 0 {
		t.Errorf("the lower-bound bucket: %+v, want listed, exactly 5, none missing", b)
	}
	if cmp.Missing() != 4 || cmp.Listed() != 4 || cmp.ListRequests != int64(len(g.listed)*2) {
		t.Errorf("missing %d, listed %d, list requests %d", cmp.Missing(), cmp.Listed(), cmp.ListRequests)
	}
	gaps := Gaps(cmp.Buckets)
	wantGaps := []Gap{{Window: Window{1100, 1300}, Source: 8, SIEM: 5, Missing: 3}, {Window: Window{1500, 1600}, Source: 4, SIEM: 3, Missing: 1}}
	if !slices.Equal(gaps, wantGaps) {
		t.Errorf("Gaps = %+v, want %+v", gaps, wantGaps)
	}
}

// TestComparerReadsWholeWithoutCounts: a source that cannot count its
// parts (an export; an API whose answers carry no total) is read once,
// whole, which lists every bucket exactly; with nothing received to
// compare with, a comparison only counts.
func TestComparerReadsWholeWithoutCounts(t *testing.T) {
	g, buckets := gapSpan()
	g.noTotal = true
	rec := siemLacking(t, g, buckets, "b3-3")
	var missing []string
	c := &Comparer{Source: g, Scope: Scope{Window: Window{Start: 1000, End: 1600}}, Received: rec, Missing: func(a Activity) { missing = append(missing, a.ID) }}
	cmp, err := c.Count(t.Context(), buckets)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.listed) != 1 || cmp.Listed() != 6 || !slices.Equal(missing, []string{"b3-3"}) || cmp.Buckets[3].Missing != 1 || cmp.Buckets[3].Source != 4 {
		t.Fatalf("listed %v (%d buckets), missing %v, bucket 3 %+v", g.listed, cmp.Listed(), missing, cmp.Buckets[3])
	}
	if err := c.List(t.Context(), &cmp, Everything); err != nil || len(g.listed) != 1 {
		t.Fatalf("List after a whole read listed again: %v %v", g.listed, err)
	}

	// Only counts: the lower bounds are listed, nothing is missing.
	g.noTotal, g.cap, g.listed = false, 3, nil
	c = &Comparer{Source: g, Scope: Scope{Window: Window{Start: 1000, End: 1600}}}
	cmp, err = c.Count(t.Context(), buckets)
	if err == nil {
		err = c.List(t.Context(), &cmp, LowerBound)
	}
	if n, atLeast := cmp.Source(); err != nil || n != 24 || atLeast || cmp.Listed() != 6 || cmp.Missing() != 0 {
		t.Fatalf("counted %d (at least: %v), %d listed, %d missing, %v; want exactly 24", n, atLeast, cmp.Listed(), cmp.Missing(), err)
	}
}
