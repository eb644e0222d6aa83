package recovery

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Progress is how far a pass has come. The progress bar, status, check and
// the stop message all take it from State.ProgressOf, so that they show
// the same figure at the same moment.
type Progress struct {
	// Percent is the share of the pass done, floored to a tenth: 100 only
	// once the pass completed.
	Percent float64
	// ByCount is true when Percent counts activities against the window's
	// total at the source; otherwise it is the source's own measure: the
	// time reached within the window for the API, the bytes read for an
	// export (whose activities need not be in time order).
	ByCount bool
	// Left is the time the rest should take at the rate of the pass's
	// latest run alone (what an earlier run did says nothing of this one);
	// 0 when unknown: no run in progress, or nothing done yet.
	Left time.Duration
}

// Done is the share of pass p done, from 0 to 1, and whether it counts
// activities. With the window's total known it is the activities the pass
// has sent or skipped over that total; otherwise the source's measure,
// which it also falls back to when the total is only a lower bound, or
// when the pass has outgrown it (activities saved since it was counted):
// a share of a count that is too small would reach 100 % before the end.
func (st State) Done(p Pass) (fraction float64, byCount bool) {
	if p.State == StateCompleted || p.State == StateSettling {
		return 1, st.Total != nil && !st.TotalAtLeast
	}
	if p.State == StateWaiting && st.Settle != nil {
		// The window has not ended: it is done up to the present, the
		// horizon, as time within it.
		return min(st.Window.Fraction(st.Settle.Horizon), 0.999), false
	}
	// A sweep reads what was saved late, not the window's count: the
	// source measures it.
	if st.countsActivities(p) {
		if done := float64(p.Sent+p.Skipped) / float64(*st.Total); done < 1 {
			return done, true
		}
		// Activities saved late made the pass outgrow the count taken at
		// its start: it is not done until its last page, and the time
		// reached says how far it is.
	}
	return min(p.Progress, 0.999), false
}

// countsActivities tells whether the percent done of pass p can count
// activities: the window's count is known, exact, and what p reads (not a
// sweep of what was saved late).
func (st State) countsActivities(p Pass) bool {
	return st.Total != nil && *st.Total > 0 && !st.TotalAtLeast && p.Scope.SavedFrom == 0
}

// outgrewSinceRunStart tells whether pass p's latest run began counting
// activities against the window's count and has outgrown it since: its
// mark (RunStartedDone) is then a share of activities, and the measure
// now is another.
func (st State) outgrewSinceRunStart(p Pass, byCount bool) bool {
	return !byCount && st.countsActivities(p) && p.RunStartedSent+p.RunStartedSkipped < *st.Total
}

// ProgressOf returns the progress of pass p at now. The time left uses the
// mark the pass's latest run left (RunStartedAt, RunStartedDone); pass
// running=false when no run is in progress, and Left stays 0. It is 0
// too when the run began counting activities and has outgrown the count
// since: the percent is then another measure than the mark's.
func (st State) ProgressOf(p Pass, now time.Time, running bool) Progress {
	done, byCount := st.Done(p)
	pr := Progress{Percent: math.Floor(done*1000) / 10, ByCount: byCount}
	elapsed := now.Sub(p.RunStartedAt)
	gained := done - p.RunStartedDone
	if running && p.State != StateCompleted && !p.RunStartedAt.IsZero() && elapsed > 0 && gained > 0 && !st.outgrewSinceRunStart(p, byCount) {
		pr.Left = time.Duration(float64(elapsed) * (1 - done) / gained).Round(time.Second)
	}
	return pr
}

// Position says where pass p stands, for people: the time of the latest
// activity behind it (on the pass's time, date or created) and what its
// cursor says (an export's line), never the source's token, which can be an
// opaque continuation.
//
// A pass read in scan lanes stands where its slowest lane does: all of
// the window before that time is delivered.
func (p Pass) Position() string {
	if p.State == StateCompleted || p.State == StateSettling {
		return "the end of the window"
	}
	if len(p.Lanes) > 0 {
		if p.Reached == 0 {
			return fmt.Sprintf("the start of the window (%d lanes)", len(p.Lanes))
		}
		return fmt.Sprintf("%s (the slowest of %d lanes)", FormatMillis(p.Reached), len(p.Lanes))
	}
	return p.Lane.position("window")
}

// position says where lane l stands in its part ("window", "slice").
func (l Lane) position(part string) string {
	var parts []string
	if l.Reached != 0 {
		parts = append(parts, FormatMillis(l.Reached))
	}
	if l.Cursor.Text != "" {
		parts = append(parts, l.Cursor.Text)
	}
	switch {
	case len(parts) == 2:
		return parts[0] + " (" + parts[1] + ")"
	case len(parts) == 1:
		return parts[0]
	case l.Cursor.IsZero():
		return "the start of the " + part
	}
	return "past the start of the " + part
}

// FormatLeft renders a time left for people: "1h02m", "4m10s", "25s".
func FormatLeft(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	var b strings.Builder
	switch {
	case h > 0:
		fmt.Fprintf(&b, "%dh%02dm", h, m)
	case m > 0:
		fmt.Fprintf(&b, "%dm%02ds", m, s)
	default:
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}

// CountText shows a count of activities for people: "12000", or "more
// than 10000" when it is only a lower bound (the API's moreThanTotal),
// never as a count.
func CountText(n int64, atLeast bool) string {
	if atLeast {
		return "more than " + strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10)
}
