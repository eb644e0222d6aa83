package mcas_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas"
	"siem-recovery/recovery/mcas/mcastest"
	"siem-recovery/recovery/source"
)

// alertsOf makes n alerts in testWindow, burst of them sharing one
// millisecond from position at, plus alerts just outside the window that
// must never be delivered; want are the window's ids in the API's order,
// (timestamp, _id).
func alertsOf(t *testing.T, n, burst, at int) (all []json.RawMessage, want []string) {
	t.Helper()
	in := mcastest.GenerateAlerts(mcastest.GenerateOptions{Window: testWindow, Count: n, Burst: burst, BurstIndex: at})
	before := mcastest.GenerateAlerts(mcastest.GenerateOptions{Window: recovery.Window{Start: testWindow.Start - 5000, End: testWindow.Start}, Count: 3})
	after := mcastest.GenerateAlerts(mcastest.GenerateOptions{Window: recovery.Window{Start: testWindow.End, End: testWindow.End + 5000}, Count: 3})
	type key struct {
		ts int64
		id string
	}
	keys := make([]key, len(in))
	for i, raw := range in {
		a, err := recovery.DecodeAlert(raw)
		if err != nil {
			t.Fatalf("generated alert %d: %v", i, err)
		}
		keys[i] = key{a.Timestamp, a.ID}
	}
	slices.SortFunc(keys, func(a, b key) int { return cmp.Or(cmp.Compare(a.ts, b.ts), strings.Compare(a.id, b.id)) })
	for _, k := range keys {
		want = append(want, k.id)
	}
	return slices.Concat(before, in, after), want
}

// newAlertSource is newSource reading alerts.
func newAlertSource(t *testing.T, srv *mcastest.Server, edit func(*mcas.Config)) (*mcas.Source, *logBuffer) {
	t.Helper()
	return newSource(t, srv, func(c *mcas.Config) {
		c.Data = recovery.DataAlerts
		if edit != nil {
			edit(c)
		}
	})
}

// TestAlertsBurstReadOnceInOrder: 250 alerts of one millisecond, in a
// window of 400, are each read once, in the API's order, by plain pages
// of at most 100 from the alerts endpoint: every request asks for the
// window by date (lte its end less 1 ms), and a page that ends inside
// the millisecond is followed by one that starts at it (gte, never gt)
// and skips the alerts already read there.
func TestAlertsBurstReadOnceInOrder(t *testing.T) {
	t.Parallel()
	all, want := alertsOf(t, 400, 250, 80)
	srv := mcastest.New(t, mcastest.Options{Alerts: all})
	src, logs := newAlertSource(t, srv, func(c *mcas.Config) { c.PageSize = 5000 }) // a scan size, for activities: 100 for alerts

	d := drainAll(t, src, 30*time.Second, want, func() string { return logs.String() })
	if !slices.Equal(d.ids, want) {
		t.Errorf("alerts out of the API's order (timestamp, _id)")
	}
	stats := srv.Stats()
	if stats.AlertRequests != stats.Requests || stats.Alerts != len(want) || stats.Activities != 0 {
		t.Errorf("stats %+v: want only alert requests, %d alerts sent", stats, len(want))
	}
	burstAt := testWindow.Start + 80*(testWindow.End-testWindow.Start)/int64(400-250+1)
	skipped := false
	for i, r := range srv.Requests() {
		if r.Path != "/api/v1/alerts/" {
			t.Fatalf("request %d to %s, want /api/v1/alerts/", i, r.Path)
		}
		b := bodyOf(t, r)
		var f struct {
			Date map[string]int64 `json:"date"`
		}
		if err := json.Unmarshal(b.Filters, &f); err != nil {
			t.Fatal(err)
		}
		if b.IsScan || b.Limit != 100 || b.Skip == nil || b.SortField != "date" || b.SortDirection != "asc" ||
			len(f.Date) != 2 || f.Date["lte"] != testWindow.End-1 || f.Date["gte"] < testWindow.Start {
			t.Errorf("request %d: %s", i, r.Body)
		}
		if *b.Skip > 0 {
			skipped = true
			if f.Date["gte"] != burstAt {
				t.Errorf("request %d skips %d alerts from %d, want from the burst's millisecond %d", i, *b.Skip, f.Date["gte"], burstAt)
			}
		}
	}
	if !skipped {
		t.Error("no request skipped the alerts already read in the burst's millisecond")
	}
	for _, p := range d.pages {
		if len(p.Activities) > 0 {
			t.Fatal("drain kept activities")
		}
	}

	// What a page holds: alerts, decoded as such.
	page, err := src.Fetch(t.Context(), recovery.Cursor{})
	if err != nil || len(page.Activities) != 100 {
		t.Fatalf("Fetch: %d alerts, %v", len(page.Activities), err)
	}
	if a := page.Activities[0]; a.Kind != recovery.KindAlert || a.ID != want[0] || !strings.HasPrefix(a.EventTypeName, "ALERT_") || a.URL == "" {
		t.Errorf("first alert %+v", a)
	}
}

// TestAlertsResumeFromCursor: a cursor inside the burst's millisecond,
// kept as the checkpoint keeps it (JSON) and read back by another Source
// (a new run), goes on after the alerts read there: together the two runs
// read each alert once.
func TestAlertsResumeFromCursor(t *testing.T) {
	t.Parallel()
	all, want := alertsOf(t, 400, 250, 20)
	srv := mcastest.New(t, mcastest.Options{Alerts: all})
	first, _ := newAlertSource(t, srv, nil)
	d1, err := drain(ctxFor(t, 20*time.Second), t, first, recovery.Cursor{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := json.Marshal(d1.next)
	if err != nil {
		t.Fatal(err)
	}
	var token struct {
		At      int64    `json:"timestamp"`
		SeenIDs []string `json:"seen_ids"`
		Next    any      `json:"next_filters"`
	}
	var cur recovery.Cursor
	if err := json.Unmarshal(stored, &cur); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(cur.Token, &token); err != nil || token.At == 0 || len(token.SeenIDs) != 180 || token.Next != nil {
		// Two pages of 100: 20 alerts before the burst, 180 of it.
		t.Fatalf("cursor %s, %v: want the burst's millisecond and the 180 alerts read at it", cur.Token, err)
	}

	second, _ := newAlertSource(t, srv, nil)
	d2, err := drain(ctxFor(t, 20*time.Second), t, second, cur, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Concat(d1.ids, d2.ids); !slices.Equal(got, want) {
		assertExactlyOnce(t, got, want)
		t.Error("alerts out of order across the resume")
	}

	// A scan continuation is no alerts cursor: another source made it.
	scan := recovery.NewCursor(map[string]any{"next_filters": map[string]any{"date": map[string]int64{"gte": 1}}}, "")
	if _, err := second.Fetch(t.Context(), scan); !errors.Is(err, recovery.ErrCheckpointUnavailable) {
		t.Errorf("Fetch from a scan continuation: %v, want ErrCheckpointUnavailable", err)
	}
}

// TestAlertsRetry: alerts requests are retried as activities' are: a 429
// after its Retry-After, without counting as a critical error; 5xx
// answers until MaxCriticalErrors fail in a row.
func TestAlertsRetry(t *testing.T) {
	t.Parallel()
	all, want := alertsOf(t, 350, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Alerts: all})
	srv.FailNext(1, mcastest.Fault{Status: 429, RetryAfter: "1"})
	srv.FailFrom(3, 1, mcastest.Fault{Status: 503})
	srv.FailFrom(5, 1, mcastest.Fault{Status: 500})
	src, logs := newAlertSource(t, srv, func(c *mcas.Config) { c.MaxCriticalErrors = 2 })
	d := drainAll(t, src, 30*time.Second, want, func() string { return logs.String() })

	reqs := srv.Requests()
	if reqs[0].Status != 429 || reqs[2].Status != 503 || reqs[4].Status != 500 {
		t.Fatalf("answers %d, %d, %d: the faults were not injected", reqs[0].Status, reqs[2].Status, reqs[4].Status)
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap < time.Second {
		t.Errorf("retried %v after a 429 with Retry-After: 1", gap)
	}
	// 4 pages, 3 failed requests.
	if stats := srv.Stats(); d.requests != 7 || stats.Requests != 7 || stats.Throttled != 1 {
		t.Errorf("%d requests counted, stats %+v: want 7 (4 pages, 3 retried)", d.requests, stats)
	}
	for _, reason := range []string{`reason="throttled (429)"`, `reason="HTTP 503"`, `reason="HTTP 500"`, "/api/v1/alerts/"} {
		if !strings.Contains(logs.String(), reason) {
			t.Errorf("no %s in the log:\n%s", reason, logs)
		}
	}

	// MaxCriticalErrors 5xx in a row end the read.
	srv.FailNext(2, mcastest.Fault{Status: 502})
	_, err := src.Fetch(t.Context(), recovery.Cursor{})
	if !errors.Is(err, recovery.ErrTooManyCriticalErrors) || !strings.Contains(err.Error(), "/api/v1/alerts/") {
		t.Errorf("Fetch after 2 × 502: %v", err)
	}
}

// TestMalformedAlertIsAMalformedAnswer: an answer with an alert that is
// not one (its timestamp no epoch milliseconds) is malformed: retried as
// a critical error, and the same malformed answer twice ends the read,
// naming the alert.
func TestMalformedAlertIsAMalformedAnswer(t *testing.T) {
	t.Parallel()
	all, want := alertsOf(t, 50, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Alerts: all})
	bad := mcastest.Fault{Status: 200, Body: `{"data":[{"_id":"6571c0ffee0d000000000001","timestamp":"soon"}],"hasNext":false,"total":1}`}
	srv.FailNext(1, bad)
	src, logs := newAlertSource(t, srv, nil)
	drainAll(t, src, 20*time.Second, want, nil)
	if !strings.Contains(logs.String(), `reason="malformed answer"`) || !strings.Contains(logs.String(), "alert 0 of the answer") {
		t.Errorf("no malformed answer naming alert 0 in the log:\n%s", logs)
	}

	srv.FailNext(2, bad)
	_, err := src.Fetch(t.Context(), recovery.Cursor{})
	if !errors.Is(err, recovery.ErrTooManyCriticalErrors) || !strings.Contains(err.Error(), "same malformed answer") ||
		!strings.Contains(err.Error(), `alert 0 of the answer: alert 6571c0ffee0d000000000001: "timestamp" "soon" is not epoch milliseconds`) {
		t.Errorf("Fetch of the same malformed answer twice: %v", err)
	}

	// More alerts than the limit asked for: malformed too.
	srv.FailNext(2, mcastest.Fault{Overfill: 100})
	_, err = src.Fetch(t.Context(), recovery.Cursor{})
	if !errors.Is(err, recovery.ErrTooManyCriticalErrors) || !strings.Contains(err.Error(), "more alerts than the 100 asked for") {
		t.Errorf("Fetch of an overfilled answer: %v", err)
	}
}

// TestAlertsFilterReachesTheRequest: the alerts filter goes to the API
// beside the window, and only the alerts it matches are read; the
// activities filter's place is the alerts filter's for an alerts source.
func TestAlertsFilterReachesTheRequest(t *testing.T) {
	t.Parallel()
	all, _ := alertsOf(t, 400, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Alerts: all})
	filter, err := recovery.ParseFilter([]byte(`{"severity": {"eq": [2]}, "entity.service": {"eq": [11161]}}`))
	if err != nil {
		t.Fatal(err)
	}
	// Alert i has severityValue i%4 and comes from activitygen.Apps[i%7]
	// (Office 365, 11161, for i%7 == 0).
	var want []string
	for i, id := range mcastest.AlertIDs(mcastest.GenerateAlerts(mcastest.GenerateOptions{Window: testWindow, Count: 400})) {
		if i%4 == 2 && i%7 == 0 {
			want = append(want, id)
		}
	}
	src, _ := newAlertSource(t, srv, func(c *mcas.Config) { c.Filter = filter })
	d := drainAll(t, src, 20*time.Second, want, nil)
	if len(d.ids) == 0 {
		t.Fatal("the filter matched nothing: the test proves nothing")
	}
	reqs := srv.Requests()
	wantFilters := `{"date":{"gte":1714521600000,"lte":1714607999999},"entity.service":{"eq":[11161]},"severity":{"eq":[2]}}`
	if len(reqs) != 1 || string(bodyOf(t, reqs[0]).Filters) != wantFilters {
		t.Errorf("requests %d, the first's filters %s; want 1 with %s", len(reqs), bodyOf(t, reqs[0]).Filters, wantFilters)
	}

	// A filter the alerts API refuses is a usage error naming the alerts filter.
	refused, _ := recovery.ParseFilter([]byte(`{"service": {"eq": [11161]}}`))
	src, _ = newAlertSource(t, srv, func(c *mcas.Config) { c.Filter = refused })
	_, err = src.Fetch(t.Context(), recovery.Cursor{})
	var p *recovery.Error
	if !errors.Is(err, recovery.ErrUsage) || !errors.As(err, &p) || !strings.Contains(p.Remedy, "--alerts-filter") {
		t.Errorf("Fetch with a filter the alerts API refuses: %v", err)
	}
}

// TestAlertsCount: an alerts count is the total of one plain answer of
// one alert, a lower bound (AtLeast) when the answer says moreThanTotal;
// a part of the window is counted through Over, as lanes and verify do.
func TestAlertsCount(t *testing.T) {
	t.Parallel()
	all, want := alertsOf(t, 120, 0, 0)
	first, _ := recovery.DecodeAlert(mcastest.GenerateAlerts(mcastest.GenerateOptions{Window: testWindow, Count: 120})[0])
	srv := mcastest.New(t, mcastest.Options{Alerts: all})
	src, _ := newAlertSource(t, srv, nil)
	tally, err := src.Reader().(recovery.Counter).Count(t.Context(), testWindow)
	if err != nil || tally != (recovery.Tally{Activities: int64(len(want)), First: first.Timestamp, Requests: 1}) {
		t.Fatalf("Count = %+v, %v; want %d alerts from %d in 1 request", tally, err, len(want), first.Timestamp)
	}
	if b := bodyOf(t, srv.Requests()[0]); b.Limit != 1 || b.IsScan || srv.Requests()[0].Path != "/api/v1/alerts/" {
		t.Errorf("count request %s to %s, want a plain one of limit 1 to the alerts endpoint", srv.Requests()[0].Body, srv.Requests()[0].Path)
	}
	half := recovery.Window{Start: testWindow.Start, End: testWindow.Start + (testWindow.End-testWindow.Start)/2}
	part := recovery.Over(src.Reader(), recovery.Scope{Window: half}).(recovery.Counter)
	if tally, err := part.Count(t.Context(), half); err != nil || tally.Activities != 60 || tally.AtLeast {
		t.Errorf("Count of the first half = %+v, %v; want 60", tally, err)
	}

	bounded := mcastest.New(t, mcastest.Options{Alerts: all, AlertsTotalLimit: 100})
	src, _ = newAlertSource(t, bounded, nil)
	tally, err = src.Count(t.Context(), testWindow)
	if err != nil || tally.Activities != 100 || !tally.AtLeast || tally.Requests != 1 {
		t.Errorf("Count past the API's bound = %+v, %v; want at least 100 in 1 request", tally, err)
	}
	if tally, err = src.Count(t.Context(), half); err != nil || tally.Activities != 60 || tally.AtLeast {
		t.Errorf("Count of the first half under the bound = %+v, %v; want exactly 60", tally, err)
	}
	bounded.FailNext(1, mcastest.Fault{NoTotal: true})
	if _, err := src.Count(t.Context(), testWindow); !errors.Is(err, recovery.ErrNoTotal) {
		t.Errorf("Count of an answer without a total: %v, want ErrNoTotal", err)
	}
}

// TestAlertsAreReadByDate: an alert has one time, so a window by created
// is a usage error that says so, for New and for a scope read through
// Over; a range of created (a horizon, a sweep) is refused too; neither
// makes a request. An alerts source reads in one lane, and a scan-only
// page size or a data type the API does not serve is refused.
func TestAlertsAreReadByDate(t *testing.T) {
	t.Parallel()
	srv := mcastest.New(t, mcastest.Options{})
	cfg := mcas.Config{BaseURL: srv.URL, Token: recovery.NewToken(srv.Token()), Window: testWindow, Data: recovery.DataAlerts, By: recovery.ByCreated}
	_, err := mcas.New(cfg)
	if !errors.Is(err, recovery.ErrUsage) || !strings.Contains(err.Error(), "alerts are read by their date") {
		t.Errorf("New by created: %v", err)
	}
	src, _ := newAlertSource(t, srv, nil)
	byCreated := recovery.Over(src.Reader(), recovery.Scope{Window: testWindow, By: recovery.ByCreated})
	if _, err := byCreated.Fetch(t.Context(), recovery.Cursor{}); !errors.Is(err, recovery.ErrUsage) || !strings.Contains(err.Error(), "alerts are read by their date") {
		t.Errorf("Fetch by created: %v", err)
	}
	if _, err := byCreated.(recovery.Counter).Count(t.Context(), testWindow); !errors.Is(err, recovery.ErrUsage) {
		t.Errorf("Count by created: %v", err)
	}
	horizon := recovery.Over(src.Reader(), recovery.Scope{Window: testWindow, SavedBefore: testWindow.End})
	if _, err := horizon.Fetch(t.Context(), recovery.Cursor{}); !errors.Is(err, recovery.ErrInternal) {
		t.Errorf("Fetch of a range of created: %v", err)
	}
	if n := srv.Stats().Requests; n != 0 {
		t.Errorf("%d requests, want none", n)
	}
	if _, ok := src.Reader().(recovery.LaneSizer); ok {
		t.Error("an alerts source is a LaneSizer: it would be read in scan lanes")
	}
	if _, ok := src.Reader().(recovery.Scoped); !ok {
		t.Error("an alerts source cannot read another window of dates (follow's cycles, verify's parts)")
	}

	cfg.By = recovery.ByDate
	cfg.Paging = mcas.PagingScan
	if _, err := mcas.New(cfg); !errors.Is(err, recovery.ErrUsage) {
		t.Errorf("New for alerts in scan paging: %v", err)
	}
	cfg.Paging, cfg.Data = mcas.PagingAuto, recovery.DataCloudAppEvents
	if _, err := mcas.New(cfg); !errors.Is(err, recovery.ErrUsage) || !strings.Contains(err.Error(), `not "cloudappevents"`) {
		t.Errorf("New for CloudAppEvents: %v", err)
	}
}

// TestAlertsShareTheBudget: the alerts source a Source opens (OpenData)
// spends its Budget: requests of both data types side by side keep to
// one rate limit, not one each.
func TestAlertsShareTheBudget(t *testing.T) {
	t.Parallel()
	acts, wantActs := generate(400, 0, 0)
	alerts, wantAlerts := alertsOf(t, 400, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts, Alerts: alerts})
	// 600 a minute: one request every 100 ms, whichever data type.
	activities, _ := newSource(t, srv, func(c *mcas.Config) { c.RateLimit, c.PageSize = 600, 100 })
	opened, err := activities.OpenData(recovery.DataAlerts, recovery.Scope{Window: testWindow}, recovery.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if mcas.BudgetOf(opened) != activities.Budget() || mcas.BudgetOf(opened) == nil {
		t.Fatal("the alerts source has a Budget of its own")
	}
	if _, ok := opened.(recovery.LaneSizer); ok {
		t.Error("OpenData's alerts source is a LaneSizer")
	}

	ctx := ctxFor(t, 30*time.Second)
	done := make(chan drained, 1)
	go func() {
		d, _ := drain(ctx, t, opened, recovery.Cursor{}, 0)
		done <- d
	}()
	d, err := drain(ctx, t, activities, recovery.Cursor{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	assertExactlyOnce(t, d.ids, wantActs)
	assertExactlyOnce(t, (<-done).ids, wantAlerts)

	// 4 pages of each, 8 requests: at one rate limit they span 7
	// intervals, less what held the first back on its way (a dial); at
	// one each, about 3.
	reqs := srv.Requests()
	if stats := srv.Stats(); len(reqs) != 8 || stats.AlertRequests != 4 {
		t.Fatalf("%d requests, %d to alerts; want 4 pages of each", len(reqs), stats.AlertRequests)
	}
	if span := reqs[len(reqs)-1].At.Sub(reqs[0].At); span < 6*100*time.Millisecond {
		t.Errorf("8 requests within %v at 600 a minute: the two data types do not share one rate limit", span)
	}
	// And the activities a source opened from the alerts one spend it too.
	back, err := opened.(recovery.DataOpener).OpenData(recovery.DataActivities, recovery.Scope{Window: testWindow}, recovery.Filter{})
	if err != nil || mcas.BudgetOf(back) != activities.Budget() {
		t.Errorf("OpenData(activities) from the alerts source: %v, its own Budget: %v", err, mcas.BudgetOf(back) != activities.Budget())
	}
}

// settings are a kind's flags, as the command line gives them.
type settings map[string]any

func (s settings) String(name string) string { v, _ := s[name].(string); return v }
func (s settings) Int(name string) int       { v, _ := s[name].(int); return v }
func (s settings) Bool(name string) bool     { v, _ := s[name].(bool); return v }
func (s settings) Duration(name string) time.Duration {
	v, _ := s[name].(time.Duration)
	return v
}
func (s settings) IsSet(name string) bool { _, ok := s[name]; return ok }

// TestKindOpensAlerts: the MCAS API kind serves alerts, and opening it
// for alerts gives a source of the alerts endpoint without scan lanes;
// by created, a usage error.
func TestKindOpensAlerts(t *testing.T) {
	t.Parallel()
	if !slices.Contains(mcas.Kind.Data, recovery.DataAlerts) || mcas.Kind.Data[0] != recovery.DataActivities {
		t.Fatalf("Kind.Data = %v, want activities first, and alerts", mcas.Kind.Data)
	}
	all, want := alertsOf(t, 30, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Alerts: all})
	target, err := mcas.Kind.Parse(t.Context(), srv.URL, settings{})
	if err != nil {
		t.Fatal(err)
	}
	opts := source.Options{
		Data: recovery.DataAlerts, Scope: recovery.Scope{Window: testWindow}, PageSize: 5000,
		Settings: settings{"rate-limit": 60000, "max-critical-errors": 3},
		Credential: func(context.Context, bool) (source.Credential, error) {
			return source.Credential{Token: recovery.NewToken(srv.Token())}, nil
		},
	}
	src, err := mcas.Kind.Open(t.Context(), target, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := src.(recovery.LaneSizer); ok {
		t.Error("the kind's alerts source is a LaneSizer")
	}
	drainAll(t, src, 10*time.Second, want, nil)
	if p := srv.Requests()[0].Path; p != "/api/v1/alerts/" {
		t.Errorf("request to %s", p)
	}
	opts.Scope.By = recovery.ByCreated
	if _, err := mcas.Kind.Open(t.Context(), target, opts); !errors.Is(err, recovery.ErrUsage) {
		t.Errorf("Open alerts by created: %v", err)
	}
}
