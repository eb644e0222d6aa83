package parallel

import (
	"runtime"
	"slices"
	"sync"
	"testing"
)

// Every item is visited exactly once, the ranges are contiguous and in
// part order, and part 0 starts at 0.
func TestRunCoversEveryItemOnceInOrder(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	for _, tc := range []struct{ n, parts int }{{0, 1}, {1, 4}, {7, 1}, {8, 2}, {9, 2}, {10, 4}, {5, 4}, {1000, 3}} {
		var mu sync.Mutex
		ranges := map[int][2]int{}
		seen := make([]int, tc.n)
		Run(tc.n, tc.parts, func(part, lo, hi int) {
			for i := lo; i < hi; i++ {
				seen[i]++
			}
			mu.Lock()
			ranges[part] = [2]int{lo, hi}
			mu.Unlock()
		})
		for i, c := range seen {
			if c != 1 {
				t.Fatalf("n=%d parts=%d: item %d visited %d times", tc.n, tc.parts, i, c)
			}
		}
		end := 0
		for p := range len(ranges) {
			r, ok := ranges[p]
			if !ok || r[0] != end || r[1] < r[0] {
				t.Fatalf("n=%d parts=%d: ranges %v are not contiguous in part order", tc.n, tc.parts, ranges)
			}
			end = r[1]
		}
		if end != tc.n || len(ranges) > max(tc.parts, 1) {
			t.Fatalf("n=%d parts=%d: ranges %v", tc.n, tc.parts, ranges)
		}
	}
}

func TestParts(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	got := []int{Parts(0, 256), Parts(511, 256), Parts(512, 256), Parts(100_000, 256), Parts(10, 0)}
	if want := []int{1, 1, 2, 4, 4}; !slices.Equal(got, want) {
		t.Errorf("Parts = %v, want %v", got, want)
	}
}
