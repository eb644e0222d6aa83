package graph_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/graph"
	"siem-recovery/recovery/graph/graphtest"
)

// TestThirtyDayRule: a window that starts more than 30 days before now is
// a usage error naming the MCAS activities API, which keeps 180 days; one
// that starts 30 days ago to the millisecond is not.
func TestThirtyDayRule(t *testing.T) {
	at := time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC)
	oldest := at.Add(-30 * 24 * time.Hour).UnixMilli()
	if err := graph.Validate(recovery.Window{Start: oldest, End: oldest + 1000}, at); err != nil {
		t.Errorf("a window starting 30 days ago: %v", err)
	}
	err := graph.Validate(recovery.Window{Start: oldest - 24*3600_000 - 1, End: oldest}, at)
	want := "the window starts at 2026-02-28T11:59:59.999Z, 31 days 0 hours before now: older than the 30 days advanced hunting keeps (its data goes back to 2026-03-01T12:00:00.000Z); " +
		"recover windows older than 30 days from the MCAS activities API (--source https://TENANT.REGION.portal.cloudappsecurity.com), which keeps activities for 180 days"
	if !errors.Is(err, recovery.ErrUsage) || !errors.Is(err, graph.ErrTooOld) || err == nil || err.Error() != want {
		t.Errorf("a 31-day-old window:\n got %v\nwant %s", err, want)
	}

	srv := graphtest.New(t, graphtest.Options{})
	_, err = graph.New(graph.Config{BaseURL: srv.URL, Authorization: bearer("t"), TLSConfig: srv.TLSConfig(),
		Window: recovery.Window{Start: oldest - 1, End: oldest + 1000}, Now: func() time.Time { return at }})
	if !errors.Is(err, graph.ErrTooOld) {
		t.Errorf("New with an old window: %v", err)
	}
	if n := srv.Stats().Requests; n != 0 {
		t.Errorf("%d requests for a window advanced hunting cannot hold", n)
	}
}

// TestByCreatedIsRefused: advanced hunting has no exact time rows were
// saved, so --by created and --settle's sweeps are usage errors.
func TestByCreatedIsRefused(t *testing.T) {
	srv := graphtest.New(t, graphtest.Options{})
	_, err := graph.New(graph.Config{BaseURL: srv.URL, Authorization: bearer("t"), Window: testWindow, By: recovery.ByCreated})
	want := "advanced hunting cannot select rows by when they were saved: ingestion_time() is approximate and does not order ingestions; use --by date with the Graph source: advanced hunting has no exact time rows were saved"
	if !errors.Is(err, recovery.ErrUsage) || err.Error() != want {
		t.Errorf("--by created:\n got %v\nwant %s", err, want)
	}
	src, _ := newSource(t, srv, nil)
	for _, scope := range []recovery.Scope{
		{Window: testWindow, By: recovery.ByCreated},
		{Window: testWindow, SavedFrom: testWindow.End},
		{Window: testWindow, SavedBefore: testWindow.End},
	} {
		if _, err := src.Over(scope).Fetch(ctxFor(t, time.Minute), recovery.Cursor{}); !errors.Is(err, recovery.ErrUsage) {
			t.Errorf("Fetch over %s: %v, want ErrUsage", scope, err)
		}
		if _, _, err := countAll(ctxFor(t, time.Minute), src.Over(scope).(recovery.Counter)); !errors.Is(err, recovery.ErrUsage) {
			t.Errorf("Count over %s: %v, want ErrUsage", scope, err)
		}
	}
	if n := srv.Stats().Requests; n != 0 {
		t.Errorf("%d requests for scopes that cannot be read", n)
	}
}

// TestConfigErrors: what New refuses before any request.
func TestConfigErrors(t *testing.T) {
	base := graph.Config{Authorization: bearer("t"), Window: testWindow}
	for _, tc := range []struct {
		edit func(*graph.Config)
		kind error
		err  string
	}{
		{func(c *graph.Config) { c.BaseURL = "http://graph.example.com" }, recovery.ErrUsage,
			"the Graph URL http://graph.example.com would send the access token in clear text; use https:// (plain http is for a loopback test server only)"},
		{func(c *graph.Config) { c.BaseURL = "https://user:secret@graph.microsoft.com" }, recovery.ErrUsage,
			`the Graph URL https://xxxxx@graph.microsoft.com has a user, query or fragment`},
		{func(c *graph.Config) { c.BaseURL = "https://graph.microsoft.com/?token=secret" }, recovery.ErrUsage,
			`the Graph URL https://graph.microsoft.com/?xxxxx has a user, query or fragment`},
		{func(c *graph.Config) { c.BaseURL = "ftp://graph.microsoft.com" }, recovery.ErrUsage, `the Graph URL ftp://graph.microsoft.com: scheme "ftp" is not https`},
		{func(c *graph.Config) { c.PageSize = 100_001 }, recovery.ErrUsage, "a page of 100001 rows: advanced hunting returns 1 to 100000 rows a query; give a page size from 1 to 100000"},
		{func(c *graph.Config) { c.Window = recovery.Window{Start: testWindow.End, End: testWindow.Start} }, recovery.ErrUsage, "the window ends"},
		{func(c *graph.Config) { c.RateLimit = -1 }, recovery.ErrUsage, "a rate limit of -1"},
		{func(c *graph.Config) { c.Authorization = nil }, recovery.ErrInternal, "the Graph source was built without a way to authorize its requests"},
	} {
		cfg := base
		tc.edit(&cfg)
		_, err := graph.New(cfg)
		if !errors.Is(err, tc.kind) || !strings.HasPrefix(err.Error(), tc.err) {
			t.Errorf("got %v\nwant %v: %s…", err, tc.kind, tc.err)
		}
	}
	for raw, want := range map[string]string{
		"":                                    "https://graph.microsoft.com/v1.0/security/runHuntingQuery",
		"https://graph.microsoft.us/":         "https://graph.microsoft.us/v1.0/security/runHuntingQuery",
		"https://dod-graph.microsoft.us/v1.0": "https://dod-graph.microsoft.us/v1.0/security/runHuntingQuery",
		"https://graph.microsoft.com/v1.0/security/runHuntingQuery": "https://graph.microsoft.com/v1.0/security/runHuntingQuery",
		"http://127.0.0.1:8080": "http://127.0.0.1:8080/v1.0/security/runHuntingQuery",
	} {
		u, err := graph.ParseBaseURL(raw)
		if err != nil || u.String() != want {
			t.Errorf("ParseBaseURL(%q) = %v, %v; want %s", raw, u, err, want)
		}
	}
}

// TestScopesShareOneSource: lanes read their slices of the window through
// Over, each exactly once, and together the window; counts of a slice
// count it alone.
func TestScopesShareOneSource(t *testing.T) {
	all, want := rowsFor(3_000, 200, 1_400)
	srv := graphtest.New(t, graphtest.Options{Rows: all})
	src, _ := newSource(t, srv, func(c *graph.Config) { c.PageSize = 500 })
	mid := testWindow.Start + (testWindow.End-testWindow.Start)/2
	var got []string
	var counted int64
	for _, w := range []recovery.Window{{Start: testWindow.Start, End: mid}, {Start: mid, End: testWindow.End}} {
		lane := recovery.Over(src, recovery.Scope{Window: w})
		d, err := drain(ctxFor(t, time.Minute), t, lane, recovery.Cursor{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		n, _, err := countAll(ctxFor(t, time.Minute), lane.(recovery.Counter))
		if err != nil || n != int64(len(d.acts)) {
			t.Errorf("lane %s: counted %d (%v), read %d", w, n, err, len(d.acts))
		}
		counted += n
		got = append(got, d.ids()...)
	}
	assertInOrder(t, got, want)
	if total, requests, err := countAll(ctxFor(t, time.Minute), src); err != nil || total != counted || total != 3000 || requests != 1 {
		t.Errorf("Count of the window: %d in %d requests (%v); want 3000 in 1", total, requests, err)
	}
}

// TestCountCutInTwo: a count the API finds too heavy is the sum of the
// counts of each half of its span.
func TestCountCutInTwo(t *testing.T) {
	all, want := rowsFor(3_000, 0, 0)
	srv := graphtest.New(t, graphtest.Options{Rows: all, MaxScanRows: 1_000})
	src, _ := newSource(t, srv, nil)
	n, requests, err := countAll(ctxFor(t, time.Minute), src)
	if err != nil || n != int64(len(want)) {
		t.Fatalf("Count: %d (%v), want %d", n, err, len(want))
	}
	// The window, its halves, and their halves (750 rows each).
	if st := srv.Stats(); requests != 7 || st.Requests != 7 || st.Heavy != 3 {
		t.Errorf("%d requests counted, stats %+v; want 7 of which 3 too heavy", requests, st)
	}
	if q := srv.Requests()[0].Query; !strings.HasSuffix(q, "\n| count") || !strings.HasPrefix(q, "CloudAppEvents\n| where Timestamp >= datetime(") {
		t.Errorf("count query:\n%s", q)
	}
}
