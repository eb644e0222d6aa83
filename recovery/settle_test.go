package recovery

import (
	"testing"
	"time"
)

func TestNextSweep(t *testing.T) {
	t0 := time.Date(2024, 5, 14, 12, 0, 0, 0, time.UTC)
	ms := func(d time.Duration) int64 { return t0.Add(d).UnixMilli() }
	w := Window{Start: ms(-4 * time.Hour), End: ms(-3 * time.Hour)}
	settle := Settle{For: time.Hour, Margin: 10 * time.Minute, Deadline: t0.Add(time.Hour), Horizon: ms(-10 * time.Minute)}
	for _, tc := range []struct {
		name  string
		pass  Scope
		s     Settle
		now   time.Time
		want  Scope
		final bool
		empty bool
	}{
		{"a sweep reads from the horizon to its own",
			Scope{Window: w}, settle, t0.Add(15 * time.Minute),
			Scope{Window: w, SavedFrom: ms(-10 * time.Minute), SavedBefore: ms(5 * time.Minute)}, false, false},
		{"a clock set back behind the last sweep reads nothing",
			Scope{Window: w}, settle, t0.Add(-time.Minute),
			Scope{Window: w, SavedFrom: ms(-10 * time.Minute), SavedBefore: ms(-11 * time.Minute)}, false, true},
		{"the first run at the deadline makes the final sweep, with no upper bound",
			Scope{Window: w}, settle, t0.Add(time.Hour),
			Scope{Window: w, SavedFrom: ms(-10 * time.Minute)}, true, false},
		{"by created, a window that ended before the horizon holds nothing more",
			Scope{Window: w, By: ByCreated}, settle, t0.Add(15 * time.Minute),
			Scope{Window: w, By: ByCreated, SavedFrom: ms(-10 * time.Minute), SavedBefore: w.End}, false, true},
		{"by created, the final sweep stops at the window's end",
			Scope{Window: Window{Start: ms(-time.Hour), End: ms(time.Hour)}, By: ByCreated}, settle, t0.Add(2 * time.Hour),
			Scope{Window: Window{Start: ms(-time.Hour), End: ms(time.Hour)}, By: ByCreated, SavedFrom: ms(-10 * time.Minute), SavedBefore: ms(time.Hour)}, true, false},
		{"without --settle the deadline is the pass's completion: the final sweep follows at once",
			Scope{Window: w}, Settle{Margin: time.Minute, Deadline: t0, Horizon: ms(-time.Minute)}, t0,
			Scope{Window: w, SavedFrom: ms(-time.Minute)}, true, false},
	} {
		got, final, empty := tc.s.NextSweep(tc.pass, tc.now)
		if got != tc.want || final != tc.final || empty != tc.empty {
			t.Errorf("%s:\n got %s final %v empty %v\nwant %s final %v empty %v", tc.name, got, final, empty, tc.want, tc.final, tc.empty)
		}
	}
	if h := Horizon(t0, DefaultSettleMargin); h != ms(-10*time.Minute) {
		t.Errorf("Horizon %d", h)
	}
}
