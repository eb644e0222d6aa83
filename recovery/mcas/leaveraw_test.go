package mcas_test

import (
	"reflect"
	"runtime"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas"
	"siem-recovery/recovery/mcas/mcastest"
)

// With LeaveRaw the pages carry the same activities without their text,
// and reading them allocates no copy of it: the text of one activity at a
// time is read into one buffer.
func TestLeaveRawKeepsNoTextOfTheActivities(t *testing.T) {
	acts, want := generate(3000, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	var text int
	for _, a := range acts {
		text += len(a)
	}
	drained := func(leave bool) ([]recovery.Activity, uint64) {
		src, _ := newSource(t, srv, func(c *mcas.Config) { c.PageSize, c.LeaveRaw = 1000, leave })
		var got []recovery.Activity
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for cur := (recovery.Cursor{}); ; {
			p, err := src.Fetch(ctxFor(t, time.Minute), cur)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, p.Activities...)
			if p.Last {
				break
			}
			cur = p.Next
		}
		runtime.ReadMemStats(&after)
		return got, after.TotalAlloc - before.TotalAlloc
	}
	full, withRaw := drained(false)
	bare, without := drained(true)
	t.Logf("%d bytes of activities: %d allocated with Raw, %d without", text, withRaw, without)
	if len(full) != len(want) || len(bare) != len(full) {
		t.Fatalf("%d activities with Raw, %d without, want %d", len(full), len(bare), len(want))
	}
	for i := range bare {
		w := full[i]
		if string(w.Raw) != string(acts[i+3]) { // after the 3 before the window
			t.Fatalf("activity %s: Raw is not its text", w.ID)
		}
		w.Raw = nil
		if !reflect.DeepEqual(bare[i], w) {
			t.Fatalf("activity %d without Raw:\n%+v\nwith Raw:\n%+v", i, bare[i], w)
		}
	}
	if withRaw-without < uint64(text)*9/10 {
		t.Errorf("LeaveRaw saved %d bytes of allocation, want at least 90%% of the %d bytes of the activities", int64(withRaw)-int64(without), text)
	}
}
