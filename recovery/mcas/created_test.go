package mcas_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas"
	"siem-recovery/recovery/mcas/mcastest"
)

// savedIn makes a tenant for a window by created: activities that
// happened in testWindow (some saved after it, as activitygen saves one in
// 17 hours late), activities that happened the day before and were saved
// in it (a connector catching up), 400 of them in one millisecond, and
// activities saved before it. want is every activity saved in the window.
func savedIn(t *testing.T) (all []json.RawMessage, want []string) {
	t.Helper()
	day := int64(24 * 3600_000)
	all = mcastest.Generate(mcastest.GenerateOptions{Window: testWindow, Count: 3000})
	before := recovery.Window{Start: testWindow.Start - day, End: testWindow.Start}
	all = append(all, mcastest.Generate(mcastest.GenerateOptions{Window: before, Count: 600, First: 3000, SavedAt: testWindow.Start + 3600_000})...)
	all = append(all, mcastest.Generate(mcastest.GenerateOptions{Window: before, Count: 400, First: 3600, SavedAt: testWindow.End - 1})...)
	all = append(all, mcastest.Generate(mcastest.GenerateOptions{Window: before, Count: 50, First: 4000, SavedAt: testWindow.Start - 1})...)
	savedLate := 0
	for _, raw := range all {
		a, err := recovery.ParseActivity(raw)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case testWindow.Contains(a.Created):
			want = append(want, a.ID)
		case testWindow.Contains(a.Timestamp):
			savedLate++
		}
	}
	if savedLate == 0 {
		t.Fatal("no activity of the window was saved after it: nothing to leave out")
	}
	return all, want
}

// TestWindowByCreated: with By created the source asks for, sorts on and
// pages by created, and delivers exactly the activities saved in the
// window, once, including those that happened before it, in scan mode and
// in plain paging, across a resume from a cursor that went through JSON.
func TestWindowByCreated(t *testing.T) {
	t.Parallel()
	acts, want := savedIn(t)
	for _, pageSize := range []int{1000, 100} {
		t.Run(fmt.Sprintf("page=%d", pageSize), func(t *testing.T) {
			srv := mcastest.New(t, mcastest.Options{Activities: acts})
			src, _ := newSource(t, srv, func(c *mcas.Config) { c.PageSize, c.By = pageSize, recovery.ByCreated })
			first, err := drain(ctxFor(t, time.Minute), t, src, recovery.Cursor{}, 3)
			if err != nil {
				t.Fatal(err)
			}
			var resumed recovery.Cursor
			b, _ := json.Marshal(first.next)
			if err := json.Unmarshal(b, &resumed); err != nil {
				t.Fatal(err)
			}
			rest, err := drain(ctxFor(t, time.Minute), t, src, resumed, 0)
			if err != nil {
				t.Fatal(err)
			}
			assertExactlyOnce(t, append(first.ids, rest.ids...), want)

			// Every request: the window on created, sorted on created; the
			// first asks for the window as it is.
			wantFirst := fmt.Sprintf(`{"created":{"gte":%d,"lt":%d}}`, testWindow.Start, testWindow.End)
			for i, r := range srv.Requests() {
				body := bodyOf(t, r)
				var f map[string]map[string]int64
				if err := json.Unmarshal(body.Filters, &f); err != nil {
					t.Fatal(err)
				}
				if body.SortField != "created" || f["date"] != nil || f["created"]["lt"] != testWindow.End || f["created"]["gte"] < testWindow.Start ||
					i == 0 && string(body.Filters) != wantFirst {
					t.Errorf("request %d: %s, want sortField created and created in the window (first: %s)", i, r.Body, wantFirst)
				}
			}
		})
	}
}
