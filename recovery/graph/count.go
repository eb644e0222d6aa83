package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"siem-recovery/recovery"
)

// Count returns how many of the rows of the window's part w match the
// predicate (recovery.Counter): one query ending in "| count", whose
// answer is exact (not an estimate). It retries as Fetch does and shares
// its rate limit; a count the API finds too heavy is made of two counts of
// half the window each.
func (s *Source) Count(ctx context.Context, w recovery.Window) (recovery.Tally, error) {
	return s.count(ctx, s.scope.Within(w))
}

// count is Count over scope.
func (s *Source) count(ctx context.Context, scope recovery.Scope) (recovery.Tally, error) {
	if err := readable(scope); err != nil {
		return recovery.Tally{}, err
	}
	if scope.Window.End <= scope.Window.Start {
		return recovery.Tally{}, nil
	}
	n, requests, err := s.countSpan(ctx, scope.Window, TicksOfMillis(scope.Window.Start), TicksOfMillis(scope.Window.End))
	return recovery.Tally{Activities: n, Requests: requests}, err
}

// countSpan counts the rows of [from, upper), halving the span as long as
// the API finds the count too heavy (the critical-error count bounds how
// often).
func (s *Source) countSpan(ctx context.Context, w recovery.Window, from, upper Ticks) (int64, int, error) {
	if from >= upper {
		return 0, 0, nil
	}
	ans, requests, err := s.post(ctx, call{query: countText(from, upper, s.where), timespan: timespan(w), limit: 1})
	var heavy *tooHeavy
	if errors.As(err, &heavy) && upper-from > 1 {
		s.log.Warn("the API found a count too heavy; counting each half of its span", "endpoint", s.Endpoint(),
			"reason", heavy.f.reason, "from", from.String(), "to", upper.String())
		mid := from + (upper-from)/2
		first, more, err := s.countSpan(ctx, w, from, mid)
		requests += more
		if err != nil {
			return 0, requests, err
		}
		second, more, err := s.countSpan(ctx, w, mid, upper)
		return first + second, requests + more, err
	}
	if err != nil {
		return 0, requests, err
	}
	n, err := countOf(ans)
	if err != nil {
		return 0, requests, fmt.Errorf("%s: %w", s.Endpoint(), err)
	}
	return n, requests, nil
}

// countOf reads the answer of a count: one row of one whole number.
func countOf(ans *answer) (int64, error) {
	if len(ans.rows) != 1 {
		return 0, fmt.Errorf("the answer to a count holds %d rows, not one: %w", len(ans.rows), recovery.ErrNoTotal)
	}
	var row map[string]json.RawMessage
	if err := json.Unmarshal(ans.rows[0], &row); err != nil || len(row) != 1 {
		return 0, fmt.Errorf("the answer to a count is not one number: %w", recovery.ErrNoTotal)
	}
	for _, v := range row {
		if n, ok := integer(v); ok && n >= 0 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("the answer to a count is not a whole number: %w", recovery.ErrNoTotal)
}

// Probe makes one cheap query (the window's first row, with the
// predicate) to check the token, the proxy, the route to the API and the
// predicate, for a doctor command. It does not retry and does not count
// toward MaxCriticalErrors; it shares the rate limit. A nil error means
// the API accepted the token and the query.
func (s *Source) Probe(ctx context.Context) error {
	w := s.scope.Window
	q := query{from: TicksOfMillis(w.Start), upper: TicksOfMillis(w.End), limit: 1}
	body, err := json.Marshal(request{Query: q.text(s.where), Timespan: timespan(w)})
	if err != nil {
		return err
	}
	if err := s.budget.wait(ctx); err != nil {
		return fmt.Errorf("probe %s: %w", s.Endpoint(), err)
	}
	header, err := s.authorization(ctx)
	if err == nil {
		_, err = s.once(ctx, header, body, call{limit: 1, page: &q})
	}
	var f *failure
	switch {
	case err == nil:
		return nil
	case errors.As(err, &f) && f.permanent != nil:
		return f.permanent
	case errors.As(err, &f):
		return fmt.Errorf("probe %s: %s: %w", s.Endpoint(), f.reason, f.cause)
	}
	return fmt.Errorf("probe %s: %w", s.Endpoint(), err)
}
