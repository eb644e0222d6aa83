// Package parallel runs the hot loops of a recovery (decoding a page,
// formatting a batch) on every CPU, over contiguous ranges so that results
// can be taken back in order.
package parallel

import (
	"runtime"
	"sync"
)

// Parts is how many ranges n items are worth splitting into: one per CPU,
// but none of fewer than minPer items. It is at least 1.
func Parts(n, minPer int) int {
	return max(1, min(runtime.GOMAXPROCS(0), n/max(minPer, 1)))
}

// Run splits [0, n) into parts contiguous ranges, in order, and calls
// f(part, lo, hi) for each at once: part 0 on the caller's goroutine, the
// others on their own. It returns when every call has returned.
func Run(n, parts int, f func(part, lo, hi int)) {
	if parts <= 1 || n <= 1 {
		f(0, 0, n)
		return
	}
	per := (n + parts - 1) / parts
	var wg sync.WaitGroup
	for p := 1; p < parts && p*per < n; p++ {
		lo := p * per
		wg.Go(func() { f(p, lo, min(lo+per, n)) })
	}
	f(0, 0, min(per, n))
	wg.Wait()
}
