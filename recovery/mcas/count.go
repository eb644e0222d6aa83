package mcas

import (
	"context"
	"encoding/json"
	"fmt"

	"siem-recovery/recovery"
)

// Count returns how many of the activities of the window's part w match
// the filter (recovery.Counter): the total of one plain answer that asks
// for a single activity (plain answers carry the total; scan answers count
// their page only), with the time of the first activity in it, the one the
// answer lists. The API documents its total as approximate: one with
// "moreThanTotal": true is a lower bound, and the Tally says so (AtLeast).
// What lies outside the window is not counted. It retries as Fetch does
// and shares its rate limit. An answer without a usable total
// (none, or one that is not a count: readTotal) is recovery.ErrNoTotal;
// the first unusable one is logged.
func (s *Source) Count(ctx context.Context, w recovery.Window) (recovery.Tally, error) {
	return s.tally(ctx, s.scope.Within(w))
}

// tally is Tally over scope.
func (s *Source) tally(ctx context.Context, scope recovery.Scope) (recovery.Tally, error) {
	if s.rec.alerts() {
		return s.tallyAlerts(ctx, scope)
	}
	if scope.Window.End <= scope.Window.Start {
		return recovery.Tally{}, nil
	}
	c, err := s.singleActivity(scope)
	if err != nil {
		return recovery.Tally{}, err
	}
	ans, requests, err := s.post(ctx, c)
	t := recovery.Tally{Requests: requests}
	if err != nil {
		return t, err
	}
	if ans.Total == nil {
		if ans.badTotal != "" && s.badTotal.CompareAndSwap(false, true) {
			s.log.Warn("the API's total is not a count of activities; counting by other means", "endpoint", s.Endpoint(), "total", s.show(ans.badTotal))
		}
		return t, fmt.Errorf("%s: %w", s.Endpoint(), recovery.ErrNoTotal)
	}
	t.Activities, t.AtLeast = *ans.Total, ans.lowerBound()
	if len(ans.activities) > 0 && scope.Contains(ans.activities[0]) {
		t.First = scope.By.Of(ans.activities[0])
	}
	return t, nil
}

// singleActivity is a plain request for the first activity of scope:
// the cheapest request there is, for Probe and Count.
func (s *Source) singleActivity(scope recovery.Scope) (call, error) {
	filters, err := s.filters(scope, scope.Window.Start)
	if err != nil {
		return call{}, err
	}
	body, err := json.Marshal(plainRequest{Filters: filters, SortField: scope.By.String(), SortDirection: "asc", Limit: 1})
	return call{body: body, limit: 1, by: scope.By, gte: scope.Window.Start}, err
}
