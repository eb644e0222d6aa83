package mcas

import (
	"context"
	"encoding/json"
	"fmt"

	"siem-recovery/recovery"
)

// Count returns how many of the window's activities match the filter: the
// total of one plain answer that asks for a single activity (plain answers
// carry the total; scan answers count their page only). It retries as
// Fetch does and shares its rate limit. An answer without a usable total is
// recovery.ErrNoTotal. Count implements recovery.Counter.
func (s *Source) Count(ctx context.Context) (activities int64, requests int, err error) {
	return s.count(ctx, s.scope)
}

// count is Count over scope.
func (s *Source) count(ctx context.Context, scope recovery.Scope) (activities int64, requests int, err error) {
	c, err := s.singleActivity(scope)
	if err != nil {
		return 0, 0, err
	}
	ans, requests, err := s.post(ctx, c)
	if err != nil {
		return 0, requests, err
	}
	if ans.Total == nil || *ans.Total < 0 {
		return 0, requests, fmt.Errorf("%s: %w", s.Endpoint(), recovery.ErrNoTotal)
	}
	return *ans.Total, requests, nil
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
