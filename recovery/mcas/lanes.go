package mcas

import (
	"math"
	"sync"
	"time"

	"siem-recovery/recovery"
)

// MaxLanes is the most scan lanes a run uses (recovery.MaxLanes).
const MaxLanes = recovery.MaxLanes

// Lanes is how many scan lanes keep the rate limit busy when the API takes
// answer to answer a page: a lane sends its next request only once the
// previous answer is read, so one lane makes at most one request per
// answer time, and the rate limit allows perMinute × answer (in minutes)
// requests in that time. A quarter of a request more covers the time a
// lane spends between an answer and its next request. The result is from
// 1 (answers faster than the rate limit spaces requests) to MaxLanes.
func Lanes(answer time.Duration, perMinute float64) int {
	n := math.Ceil(answer.Minutes()*perMinute + 0.25)
	return int(min(max(n, 1), MaxLanes))
}

// boundaries remembers, for the latest scan continuations, the ids of the
// final millisecond of the page that gave each: the records the API might
// list again right after that boundary. One per lane is enough (a lane
// asks for the continuation its previous page gave), and the oldest are
// forgotten: a lane that finished or stopped asks for none again.
type boundaries struct {
	mu      sync.Mutex
	entries []boundary // oldest first
}

type boundary struct {
	next string          // the continuation, compacted
	ids  map[string]bool // listed at the page's final millisecond
}

// boundariesKept is how many continuations are remembered: two per lane,
// so a page read ahead never pushes out the boundary before it.
const boundariesKept = 2 * MaxLanes

// add remembers ids as the boundary before continuation next.
func (b *boundaries) add(next []byte, ids map[string]bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.entries) == boundariesKept {
		b.entries = b.entries[1:]
	}
	b.entries = append(b.entries, boundary{next: string(compact(next)), ids: ids})
}

// after returns the ids listed just before continuation next, or nil.
func (b *boundaries) after(next []byte) map[string]bool {
	if len(next) == 0 {
		return nil
	}
	key := string(compact(next))
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.entries) - 1; i >= 0; i-- {
		if b.entries[i].next == key {
			return b.entries[i].ids
		}
	}
	return nil
}

// Lanes is how many scan lanes keep the rate limit busy at the answer
// time measured so far (see the function Lanes); 0 before any answer. It
// makes the Source a recovery.LaneSizer.
func (s *Source) Lanes() int {
	answer := s.budget.AnswerTime()
	if answer == 0 {
		return 0
	}
	return Lanes(answer, s.budget.PerMinute())
}

// PageSize is the most activities one page holds: the scan limit, or the
// plain one where the Source pages by cursor.
func (s *Source) PageSize() int {
	if s.usePlain() {
		return s.plainLimit
	}
	return s.scanLimit
}
