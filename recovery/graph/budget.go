package graph

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// budget is what every request of a Source spends, whichever scope (a
// lane, a count) makes it: the tenant's request rate, and the count of
// consecutive failed requests that ends the run. Its methods are safe for
// concurrent use.
type budget struct {
	limiter     *rate.Limiter
	maxCritical int

	mu       sync.Mutex
	critical int // consecutive critical errors, across scopes and pages
}

// newBudget returns the budget of perMinute (at least 1) requests a minute
// that gives up after maxCritical consecutive failed requests. Burst 1:
// requests are spaced evenly, so no minute holds more than the budget and
// one.
func newBudget(perMinute, maxCritical int) *budget {
	return &budget{
		limiter:     rate.NewLimiter(rate.Every(time.Minute/time.Duration(perMinute)), 1),
		maxCritical: maxCritical,
	}
}

// wait takes a request from the rate limit, or returns the context's error
// if it ends first.
func (b *budget) wait(ctx context.Context) error {
	r := b.limiter.Reserve()
	if err := sleep(ctx, r.Delay()); err != nil {
		r.Cancel()
		return fmt.Errorf("wait for the API rate limit: %w", err)
	}
	return nil
}

// answered records a request the API answered: the streak of failures is
// over.
func (b *budget) answered() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.critical = 0
}

// failed records a critical failure and returns the streak's length, and
// whether it has reached the most allowed.
func (b *budget) failed() (streak int, exhausted bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.critical++
	return b.critical, b.critical >= b.maxCritical
}

// perMinute is the rate limit, in requests a minute (to a thousandth: the
// limiter keeps it as a rate per second).
func (b *budget) perMinute() float64 { return math.Round(float64(b.limiter.Limit())*60*1000) / 1000 }

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
