package mcas

import (
	"math"
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
// plain one where the Source pages by cursor; less once the API's answers
// showed they hold markedly fewer than the limit (Microsoft documents 100
// items an answer to API-token requests): what estimates count pages by.
// A page a little short of the limit is not a cap: a scan ends a page
// before a millisecond it cannot list whole.
func (s *Source) PageSize() int {
	limit := s.scanLimit
	if s.usePlain() {
		limit = s.plainLimit
	}
	if seen := int(s.pageSeen.Load()); seen > 0 && seen < limit*9/10 {
		return seen
	}
	return limit
}
