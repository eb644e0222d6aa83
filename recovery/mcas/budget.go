package mcas

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Budget is what every API request of a run spends, whichever scan lane
// makes it: the tenant's request rate, and the count of consecutive failed
// requests that ends the run. A Source and every scope read through it
// share one Budget, so lanes side by side never multiply the tenant's
// quota, and a streak of failures is one streak whichever lanes saw it.
// It also measures how long the API takes to answer, which sizes the
// lanes (Lanes). Its methods are safe for concurrent use.
type Budget struct {
	limiter     *rate.Limiter
	maxCritical int

	mu       sync.Mutex
	critical int             // consecutive critical errors, across lanes and pages
	answers  []time.Duration // the latest answer times, oldest first
}

// answersKept is how many answer times AnswerTime looks at: enough that
// one slow answer does not size the lanes, few enough to follow a change.
const answersKept = 5

// newBudget returns the budget of perMinute (at least 1) requests a
// minute that gives up after maxCritical consecutive failed requests.
func newBudget(perMinute, maxCritical int) *Budget {
	return &Budget{
		// Burst 1: requests are spaced evenly, so no minute ever holds
		// more than the budget plus one.
		limiter:     rate.NewLimiter(rate.Every(time.Minute/time.Duration(perMinute)), 1),
		maxCritical: maxCritical,
	}
}

// PerMinute is the rate limit, in requests a minute.
func (b *Budget) PerMinute() float64 { return float64(b.limiter.Limit()) * 60 }

// wait takes a request from the rate limit, or returns the context's
// error if it ends first.
func (b *Budget) wait(ctx context.Context) error {
	r := b.limiter.Reserve()
	if err := sleep(ctx, r.Delay()); err != nil {
		r.Cancel()
		return fmt.Errorf("wait for the API rate limit: %w", err)
	}
	return nil
}

// answered records a request the API answered, and how long the answer
// took: the streak of failures is over.
func (b *Budget) answered(took time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.critical = 0
	if len(b.answers) == answersKept {
		b.answers = b.answers[1:]
	}
	b.answers = append(b.answers, took)
}

// failed records a critical failure and returns the streak's length, and
// whether it has reached the most allowed.
func (b *Budget) failed() (streak int, exhausted bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.critical++
	return b.critical, b.critical >= b.maxCritical
}

// AnswerTime is how long the API takes to answer, from sending a request
// to reading its answer whole: the median of the latest answers (0 before
// the first). Waiting for the rate limit is not part of it.
func (b *Budget) AnswerTime() time.Duration {
	b.mu.Lock()
	sorted := slices.Sorted(slices.Values(b.answers))
	b.mu.Unlock()
	if len(sorted) == 0 {
		return 0
	}
	return sorted[len(sorted)/2]
}
