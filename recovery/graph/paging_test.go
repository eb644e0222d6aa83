package graph_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/graph"
	"siem-recovery/recovery/graph/graphtest"
)

// TestThirtyThousandRowsExactlyOnce pages through 30,000 rows, 200 of
// them in one millisecond across a page boundary (half of those in one
// tick): each row comes once, in the order of (Timestamp, ReportId), and
// none from outside the window.
func TestThirtyThousandRowsExactlyOnce(t *testing.T) {
	all, want := rowsFor(30_000, 200, 4_950)
	srv := graphtest.New(t, graphtest.Options{Rows: all})
	src, _ := newSource(t, srv, func(c *graph.Config) { c.PageSize = 1000 })
	d := drainAll(t, src, want)
	// 30 full pages, and the query that finds nothing after the last.
	if d.pages != 31 || d.requests != 31 || srv.Stats().Requests != 31 {
		t.Errorf("%d pages, %d requests (server: %d); want 31 of each", d.pages, d.requests, srv.Stats().Requests)
	}
	for _, a := range d.acts {
		if !testWindow.Contains(a.Timestamp) {
			t.Fatalf("row %s at %s is outside the window %s", a.ID, recovery.FormatMillis(a.Timestamp), testWindow)
		}
	}
	// The burst: 200 rows in one millisecond, 100 of them in one tick.
	burst := map[int64]int{}
	for _, a := range d.acts {
		burst[a.Timestamp]++
	}
	if most := slices.Max(mapValues(burst)); most != 200 {
		t.Errorf("the most rows in one millisecond is %d, want the burst's 200", most)
	}
}

func mapValues(m map[int64]int) []int {
	out := make([]int, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestManyRowsInOneTick pages through 200 rows of one millisecond, 100 of
// them in one tick, 16 at a time: the cursor is the tick and the
// ReportId, never the millisecond alone.
func TestManyRowsInOneTick(t *testing.T) {
	all, want := rowsFor(210, 200, 5)
	srv := graphtest.New(t, graphtest.Options{Rows: all})
	src, _ := newSource(t, srv, func(c *graph.Config) { c.PageSize = 16 })
	d := drainAll(t, src, want)
	if d.pages != 14 {
		t.Errorf("%d pages, want 14 (13 full and 2 rows)", d.pages)
	}
}

// TestResumeFromMidWindowCursor stops after three pages, inside the burst's
// millisecond, and resumes from the cursor (through JSON, as the
// checkpoint keeps it) with a new Source: the rest of the window comes,
// nothing twice.
func TestResumeFromMidWindowCursor(t *testing.T) {
	all, want := rowsFor(5_000, 200, 2_950)
	srv := graphtest.New(t, graphtest.Options{Rows: all})
	first, _ := newSource(t, srv, func(c *graph.Config) { c.PageSize = 1000 })
	d, err := drain(ctxFor(t, time.Minute), t, first, recovery.Cursor{}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if d.last || len(d.acts) != 3000 {
		t.Fatalf("%d rows in three pages (last %v), want 3000", len(d.acts), d.last)
	}
	if !strings.HasPrefix(d.next.String(), "after ") || !strings.Contains(d.next.String(), "ReportId "+want[2999]) {
		t.Errorf("cursor text %q does not name the last row's time and ReportId %s", d.next, want[2999])
	}
	second, _ := newSource(t, srv, func(c *graph.Config) { c.PageSize = 700 })
	rest, err := drain(ctxFor(t, time.Minute), t, second, d.next, 0)
	if err != nil {
		t.Fatal(err)
	}
	assertInOrder(t, append(d.ids(), rest.ids()...), want)
}

// TestCursorOfAnotherSource refuses a checkpoint's position this source
// did not make: exit 6, not a guess.
func TestCursorOfAnotherSource(t *testing.T) {
	srv := graphtest.New(t, graphtest.Options{})
	src, _ := newSource(t, srv, nil)
	for _, token := range []string{`{"next_filters":{"date":{"gte":1}}}`, `{"at":"yesterday"}`, `{"at":"2024-05-01T10:00:00Z"}`, `[1,2]`} {
		_, err := src.Fetch(ctxFor(t, time.Minute), recovery.Cursor{Token: json.RawMessage(token)})
		if !errors.Is(err, recovery.ErrCheckpointUnavailable) {
			t.Errorf("cursor %s: %v, want ErrCheckpointUnavailable", token, err)
		}
	}
	if n := srv.Stats().Requests; n != 0 {
		t.Errorf("%d requests for cursors that cannot be resumed", n)
	}
}

// TestLateRows adds rows between two runs, as advanced hunting ingests
// them late: those after the cursor come on the resumed run, once; those
// behind it are not read again (docs/graph-source.md: a pass by Timestamp
// does not see rows ingested behind it).
func TestLateRows(t *testing.T) {
	all, want := rowsFor(3_000, 0, 0)
	srv := graphtest.New(t, graphtest.Options{Rows: all})
	src, _ := newSource(t, srv, func(c *graph.Config) { c.PageSize = 1000 })
	d, err := drain(ctxFor(t, time.Minute), t, src, recovery.Cursor{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	late := graphtest.Generate(graphtest.GenerateOptions{Window: testWindow, Count: 40, First: 500_000})
	srv.Add(late...)
	rest, err := drain(ctxFor(t, time.Minute), t, src, d.next, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := append(d.ids(), rest.ids()...)
	// Expected: the first run's rows, then every row after its cursor,
	// late ones included, in order. The times compare as text: the
	// records hold them in Kusto's fixed-width form.
	lastRead := d.acts[len(d.acts)-1]
	lastAt := timestampOf(t, lastRead)
	rows := slices.Concat(graphtest.Generate(graphtest.GenerateOptions{Window: testWindow, Count: 3_000}), late)
	graphtest.Sort(rows)
	expect := append([]string(nil), want[:2000]...)
	behind := 0
	for _, r := range rows {
		switch at := r.Timestamp.String(); {
		case at > lastAt || at == lastAt && r.ReportID > lastRead.ID:
			expect = append(expect, r.ReportID)
		case isLate(r, late):
			behind++
		}
	}
	if behind == 0 || behind == len(late) {
		t.Fatalf("%d of the %d late rows lie behind the cursor: the test needs some on each side", behind, len(late))
	}
	assertInOrder(t, got, expect)
}

func isLate(r graphtest.Row, late []graphtest.Row) bool {
	return slices.ContainsFunc(late, func(l graphtest.Row) bool { return l.ReportID == r.ReportID })
}

// timestampOf is the Timestamp a record of the source holds.
func timestampOf(t *testing.T, a recovery.Activity) string {
	t.Helper()
	var rec struct {
		Properties struct{ Timestamp string }
	}
	if err := json.Unmarshal(a.Raw, &rec); err != nil {
		t.Fatal(err)
	}
	return rec.Properties.Timestamp
}

// TestQueryText pins the KQL the source writes for a first page, a page
// after a row, a span cut short, and a count.
func TestQueryText(t *testing.T) {
	all, _ := rowsFor(30, 0, 0)
	srv := graphtest.New(t, graphtest.Options{Rows: all, MaxScanRows: 20})
	where, err := graph.ParseWhere("where ActionType != \"Send\" // not | mail")
	if err != nil {
		t.Fatal(err)
	}
	src, _ := newSource(t, srv, func(c *graph.Config) { c.PageSize = 8; c.Where = where })
	var want []string
	for _, r := range all {
		if testWindow.Contains(r.Timestamp.Millis()) && r.ActionType != "Send" {
			want = append(want, r.ReportID)
		}
	}
	drainAll(t, src, want)
	reqs := srv.Requests()
	start := graph.TicksOfMillis(testWindow.Start).String()
	end := graph.TicksOfMillis(testWindow.End).String()
	first := fmt.Sprintf("CloudAppEvents\n| where Timestamp >= datetime(%s) and Timestamp < datetime(%s)\n| where (\nActionType != \"Send\" // not | mail\n)\n| top 8 by Timestamp asc, ReportId asc", start, end)
	if reqs[0].Query != first {
		t.Errorf("first query:\n%s\nwant\n%s", reqs[0].Query, first)
	}
	span := time.UnixMilli(testWindow.Start).UTC().Add(-time.Second).Format(time.RFC3339) + "/" + time.UnixMilli(testWindow.End).UTC().Add(2*time.Second).Format(time.RFC3339)
	if reqs[0].Timespan != span {
		t.Errorf("Timespan %q, want %q", reqs[0].Timespan, span)
	}
	// The window's 30 rows are more than the 20 a query may scan: the
	// second query asks for the first half of the window.
	mid := (graph.TicksOfMillis(testWindow.Start) + graph.TicksOfMillis(testWindow.End)) / 2
	second := strings.Replace(first, "< datetime("+end+")", "< datetime("+mid.String()+")", 1)
	if reqs[1].Query != second {
		t.Errorf("second query:\n%s\nwant\n%s", reqs[1].Query, second)
	}
	var after string
	for _, r := range reqs {
		if strings.Contains(r.Query, "strcmp") {
			after = r.Query
			break
		}
	}
	if !strings.Contains(after, "\n| where Timestamp > datetime(") || !strings.Contains(after, " or (Timestamp == datetime(") ||
		!strings.Contains(after, " and strcmp(ReportId, \"") || !strings.HasSuffix(after, "\") > 0)\n| top 8 by Timestamp asc, ReportId asc") {
		t.Errorf("no query after a row of the form the source writes; one was:\n%s", after)
	}
}
