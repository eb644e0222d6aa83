package mcastest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas/mcastest"
)

// alertListing is the alerts API's list answer (api-alerts-list.md).
type alertListing struct {
	Data          []json.RawMessage `json:"data"`
	HasNext       *bool             `json:"hasNext"`
	Total         *int              `json:"total"`
	Max           *int              `json:"max"`
	MoreThanTotal *bool             `json:"moreThanTotal"`
}

// postAlerts sends body to the alerts endpoint (path: with or without its
// trailing slash) and returns the status and, for a 200, the answer and
// the ids it lists.
func postAlerts(t *testing.T, srv *mcastest.Server, path, body string) (int, alertListing, []string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", token(srv))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l alertListing
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, l, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, raw := range l.Data {
		a, err := recovery.DecodeAlert(raw)
		if err != nil {
			t.Fatalf("listed alert %s: %v", raw, err)
		}
		ids = append(ids, a.ID)
	}
	return resp.StatusCode, l, ids
}

// TestAlertsListing: the alerts endpoint answers as the documented list
// answer, sorted by (timestamp, _id), in plain pages of at most 100, by
// date and the alert filters; created, scan mode and other sorts are
// refused.
func TestAlertsListing(t *testing.T) {
	t.Parallel()
	opts := mcastest.GenerateOptions{Window: window, Count: 150, Burst: 120, BurstIndex: 10}
	alerts := mcastest.GenerateAlerts(opts)
	srv := mcastest.New(t, mcastest.Options{GeneratedAlerts: opts})
	dates := fmt.Sprintf(`{"date":{"gte":%d,"lte":%d}}`, window.Start, window.End-1)

	status, first, ids := postAlerts(t, srv, "/api/v1/alerts/", body(dates, `,"skip":0,"limit":100`))
	if status != 200 || len(ids) != 100 || *first.Total != 150 || *first.Max != 150 || *first.MoreThanTotal || !*first.HasNext {
		t.Fatalf("first page: %d, %d alerts, %+v", status, len(ids), first)
	}
	_, second, more := postAlerts(t, srv, "/api/v1/alerts/", body(dates, `,"skip":100,"limit":100`))
	if *second.HasNext || len(more) != 50 {
		t.Fatalf("second page: %d alerts, hasNext %v", len(more), *second.HasNext)
	}
	got := slices.Concat(ids, more)
	want := mcastest.AlertIDs(alerts)
	burst := slices.Clone(want[10:130])
	slices.Sort(burst) // ties by _id
	if !slices.Equal(got[:10], want[:10]) || !slices.Equal(got[10:130], burst) || !slices.Equal(got[130:], want[130:]) {
		t.Errorf("alerts not in (timestamp, _id) order")
	}
	// Served from GeneratedAlerts, they are GenerateAlerts's alerts.
	if _, _, one := postAlerts(t, srv, "/api/v1/alerts/", body(dates, `,"limit":1`)); len(one) != 1 || one[0] != want[0] {
		t.Errorf("first alert %v, want %s", one, want[0])
	}

	for _, c := range []struct{ name, body string }{
		{"limit over 100", body(dates, `,"limit":101`)},
		{"skip+limit over 5000", body(dates, `,"skip":4950,"limit":100`)},
		{"scan mode", body(dates, `,"isScan":true,"limit":500`)},
		{"created", body(fmt.Sprintf(`{"created":{"gte":%d}}`, window.Start), `,"limit":10`)},
		{"an activity filter", body(`{"service":{"eq":[11161]}}`, `,"limit":10`)},
		{"a sort by severity", `{"sortField":"severity","limit":10}`},
	} {
		if status, _, _ := postAlerts(t, srv, "/api/v1/alerts/", c.body); status != 400 {
			t.Errorf("%s: %d, want 400", c.name, status)
		}
	}

	// Filters: alert i has severityValue i%4 and its policy is
	// activitygen.Policies[i%6] (none for i%6 == 5).
	filters := fmt.Sprintf(`{"date":{"gte":%d,"lte":%d},"severity":{"eq":[1,2]},"entity.policy":{"neq":["6571c0ffee0ddba11ad50001"]}}`, window.Start, window.End-1)
	_, l, ids := postAlerts(t, srv, "/api/v1/alerts/", body(filters, `,"limit":100`))
	var wantIDs []string
	for i, id := range want {
		if (i%4 == 1 || i%4 == 2) && i%6 != 0 {
			wantIDs = append(wantIDs, id)
		}
	}
	slices.Sort(ids)
	slices.Sort(wantIDs)
	if !slices.Equal(ids, wantIDs) || *l.Total != len(wantIDs) || len(wantIDs) == 0 {
		t.Errorf("filtered: %d alerts (total %d), want %d", len(ids), *l.Total, len(wantIDs))
	}

	// Without the trailing slash the body is ignored: the newest 100.
	_, _, newest := postAlerts(t, srv, "/api/v1/alerts", body(dates, `,"limit":5,"sortDirection":"asc"`))
	if len(newest) != 100 || newest[0] != got[len(got)-1] {
		t.Errorf("no slash: %d alerts, first %v", len(newest), newest[:1])
	}
	if s := srv.Stats(); s.AlertRequests != s.Requests || s.NoSlash != 1 || s.Activities != 0 || s.Alerts != 100+50+1+len(wantIDs)+100 {
		t.Errorf("stats %+v", s)
	}
}

// TestAlertsTotalLimit: past Options.AlertsTotalLimit, the total is the
// bound and moreThanTotal true.
func TestAlertsTotalLimit(t *testing.T) {
	t.Parallel()
	srv := mcastest.New(t, mcastest.Options{GeneratedAlerts: mcastest.GenerateOptions{Window: window, Count: 30}, AlertsTotalLimit: 20})
	_, l, _ := postAlerts(t, srv, "/api/v1/alerts/", body(`{}`, `,"limit":1`))
	if *l.Total != 20 || !*l.MoreThanTotal || *l.Max != 20 {
		t.Errorf("answer %+v: want total 20, moreThanTotal", l)
	}
	filters := fmt.Sprintf(`{"date":{"gte":%d,"lte":%d}}`, window.Start, window.Start+(window.End-window.Start)/2-1)
	if _, l, _ := postAlerts(t, srv, "/api/v1/alerts/", body(filters, `,"limit":1`)); *l.Total != 15 || *l.MoreThanTotal {
		t.Errorf("half the window: %+v, want total 15", l)
	}
}

// TestAlertsShareTheBudgetAndFaults: alerts requests spend the tenant's
// one budget and take the faults injected for the next requests,
// whichever endpoint they reach.
func TestAlertsShareTheBudgetAndFaults(t *testing.T) {
	t.Parallel()
	srv := mcastest.New(t, mcastest.Options{
		Activities: mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 5}), GeneratedAlerts: mcastest.GenerateOptions{Window: window, Count: 5},
		RequestsPerMinute: 2, BudgetPeriod: time.Hour,
	})
	srv.FailFrom(2, 1, mcastest.Fault{Status: 503})
	if status, _, _ := post(t, srv, "/api/v1/activities/", token(srv), body(`{}`, `,"limit":10`)); status != 200 {
		t.Fatalf("activities: %d", status)
	}
	if status, _, _ := postAlerts(t, srv, "/api/v1/alerts/", body(`{}`, `,"limit":10`)); status != 503 {
		t.Fatalf("alerts, the second request: %d, want the injected 503", status)
	}
	// The injected fault spent nothing: the budget of 2 is spent by the
	// activities request and this one.
	if status, _, _ := postAlerts(t, srv, "/api/v1/alerts/", body(`{}`, `,"limit":10`)); status != 200 {
		t.Fatalf("alerts: %d", status)
	}
	if status, h, _ := post(t, srv, "/api/v1/alerts/", token(srv), body(`{}`, `,"limit":10`)); status != 429 || h.Get("Retry-After") == "" {
		t.Errorf("alerts past the tenant's budget: %d, Retry-After %q", status, h.Get("Retry-After"))
	}
	if status, _, _ := post(t, srv, "/api/v1/alerts/", "Token wrong", body(`{}`, ``)); status != 401 {
		t.Errorf("alerts with a wrong token: %d", status)
	}
	if s := srv.Stats(); s.Requests != 5 || s.AlertRequests != 4 || s.Throttled != 1 || s.Faults != 1 {
		t.Errorf("stats %+v", s)
	}
}
