package recovery

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync/atomic"
	"testing"
)

// day is the window of the balancing tests: one day from 2024-05-01.
var day = Window{Start: 1714521600000, End: 1714521600000 + 24*3600*1000}

// timeline is a window's activities, as their sorted timestamps, and a
// CountFunc over them that counts its calls.
type timeline struct {
	ts    []int64
	calls atomic.Int64
}

func (tl *timeline) count(_ context.Context, w Window) (Tally, error) {
	tl.calls.Add(1)
	lo, hi := tl.span(w)
	t := Tally{Activities: int64(hi - lo), Requests: 1}
	if hi > lo {
		t.First = tl.ts[lo]
	}
	return t, nil
}

func (tl *timeline) span(w Window) (lo, hi int) {
	lo = sort.Search(len(tl.ts), func(i int) bool { return tl.ts[i] >= w.Start })
	hi = sort.Search(len(tl.ts), func(i int) bool { return tl.ts[i] >= w.End })
	return lo, hi
}

// in counts the activities of w.
func (tl *timeline) in(w Window) int64 {
	lo, hi := tl.span(w)
	return int64(hi - lo)
}

// spread puts n activities evenly over [start, end).
func spread(n int, start, end int64) []int64 {
	ts := make([]int64, n)
	for i := range ts {
		ts[i] = start + int64(i)*(end-start)/int64(n)
	}
	return ts
}

func TestSlicesBalanceCounts(t *testing.T) {
	const hour = 3600 * 1000
	busy := day.Start + 14*hour
	tests := []struct {
		name      string
		ts        []int64
		n         int
		tolerance int64
		maxCounts int
		most      int64 // counts made, at most
	}{
		// Spread evenly, the first guess (equal times) is right: one
		// count per cut and no more.
		{"even", spread(200000, day.Start, day.End), 4, 5000, 15, 3},
		// 80% of the day's activities in one hour: equal times would give
		// one lane 80% of the work.
		{"busy hour", slices.Concat(spread(40000, day.Start, day.End), spread(160000, busy, busy+hour)), 4, 5000, 15, 15},
		// Everything in the last minute of the day: the first activity
		// after each count finds it.
		{"last minute", spread(50000, day.End-60000, day.End), 3, 1000, 10, 10},
		{"eight lanes", slices.Concat(spread(100000, day.Start, day.End), spread(100000, busy, busy+hour)), 8, 5000, 35, 35},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			slices.Sort(tc.ts)
			tl := &timeline{ts: tc.ts}
			total := int64(len(tc.ts))
			cuts, requests, err := Slices(context.Background(), day, tc.n, total, tc.tolerance, tc.maxCounts, tl.count)
			if err != nil {
				t.Fatal(err)
			}
			if int64(requests) != tl.calls.Load() || tl.calls.Load() > tc.most {
				t.Errorf("%d requests reported, %d counts made; want at most %d", requests, tl.calls.Load(), tc.most)
			}
			assertCovers(t, cuts, day)
			if len(cuts) != tc.n {
				t.Fatalf("%d slices, want %d: %v", len(cuts), tc.n, cuts)
			}
			// Each end of a slice is within tolerance of its share.
			share := total / int64(tc.n)
			for i, c := range cuts {
				if c.Activities < share || c.Activities > share+1 {
					t.Errorf("slice %d: estimated %d activities, want its share %d", i, c.Activities, share)
				}
				if got := tl.in(c.Window); got < share-2*tc.tolerance || got > share+2*tc.tolerance {
					t.Errorf("slice %d %v holds %d activities, want %d ± %d", i, c, got, share, 2*tc.tolerance)
				}
			}
		})
	}
}

// assertCovers fails unless cuts are in order, not empty, and cover w
// exactly.
func assertCovers(t *testing.T, cuts []Slice, w Window) {
	t.Helper()
	start := w.Start
	for i, c := range cuts {
		if c.Start != start || c.End <= c.Start {
			t.Fatalf("slice %d is %v after %d: not the next part of %v", i, c, start, w)
		}
		start = c.End
	}
	if start != w.End {
		t.Fatalf("the slices end at %d, not at the window's end %d", start, w.End)
	}
}

func TestSlicesWithAMillisecondOverAShare(t *testing.T) {
	// 70% of the activities share one millisecond, which no cut can
	// split: its slice holds more than a share, no other one does.
	ms := day.Start + 5000
	ts := slices.Concat(spread(3000, day.Start, day.End), slices.Repeat([]int64{ms}, 7000))
	slices.Sort(ts)
	tl := &timeline{ts: ts}
	cuts, _, err := Slices(context.Background(), day, 3, int64(len(ts)), 100, 10, tl.count)
	if err != nil {
		t.Fatal(err)
	}
	assertCovers(t, cuts, day)
	for _, c := range cuts {
		if n := tl.in(c.Window); !c.Contains(ms) && n > int64(len(ts))/3+100 {
			t.Errorf("slice %v holds %d activities, more than a share", c, n)
		}
	}
}

func TestSlicesOneLaneCountsNothing(t *testing.T) {
	tl := &timeline{ts: spread(1000, day.Start, day.End)}
	for _, tc := range []struct {
		n     int
		total int64
	}{{1, 1000}, {4, 0}} {
		cuts, requests, err := Slices(context.Background(), day, tc.n, tc.total, 10, 10, tl.count)
		if err != nil || requests != 0 || !slices.Equal(cuts, []Slice{{day, tc.total}}) {
			t.Errorf("n=%d total=%d: %v, %d requests, %v; want the whole window and no request", tc.n, tc.total, cuts, requests, err)
		}
	}
	if tl.calls.Load() != 0 {
		t.Errorf("%d counts made", tl.calls.Load())
	}
}

func TestSlicesReturnsTheCountError(t *testing.T) {
	refused := errors.New("refused")
	_, requests, err := Slices(context.Background(), day, 3, 1000, 10, 10, func(context.Context, Window) (Tally, error) {
		return Tally{Requests: 2}, refused
	})
	if !errors.Is(err, refused) || requests != 4 {
		t.Errorf("got %d requests, %v; want the 4 requests of the two counts and the count's error", requests, err)
	}
}
