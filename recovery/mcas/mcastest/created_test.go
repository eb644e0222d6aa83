package mcastest_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery/mcas/mcastest"
)

// The emulator's second time, "created": filters, sorting in both paging
// modes, activities added between runs and listed only once indexed.

type saved struct {
	ID      string `json:"_id"`
	Date    int64  `json:"timestamp"`
	Created int64  `json:"created"`
}

func decodeSaved(t *testing.T, raws []json.RawMessage) []saved {
	t.Helper()
	out := make([]saved, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func idsOf(acts []saved) string {
	ids := make([]string, len(acts))
	for i, a := range acts {
		ids[i] = a.ID
	}
	return strings.Join(ids, ",")
}

// byCreated is acts sorted as the API sorts on created: by created, then _id.
func byCreated(acts []saved, desc bool) []saved {
	out := slices.Clone(acts)
	slices.SortFunc(out, func(a, b saved) int {
		return cmp.Or(cmp.Compare(a.Created, b.Created), strings.Compare(a.ID, b.ID))
	})
	if desc {
		slices.Reverse(out)
	}
	return out
}

func sortBody(filters, field, dir, extra string) string {
	return fmt.Sprintf(`{"filters":%s,"sortField":%q,"sortDirection":%q%s}`, filters, field, dir, extra)
}

func TestCreatedFiltersAndSort(t *testing.T) {
	raws := mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 60})
	acts := decodeSaved(t, raws)
	srv := mcastest.New(t, mcastest.Options{Activities: raws})
	// activitygen saves one activity in 17 hours late: created and date
	// orders differ, which is what this test is about.
	sorted := byCreated(acts, false)
	if idsOf(sorted) == idsOf(acts) {
		t.Fatal("the generated activities are saved in the order they happened: nothing to test")
	}
	c := func(i int) int64 { return sorted[i].Created }
	for _, tc := range []struct {
		filters string
		want    []saved
	}{
		{fmt.Sprintf(`{"created":{"gte":%d,"lt":%d}}`, c(10), c(13)), sorted[10:13]},
		{fmt.Sprintf(`{"created":{"gt":%d,"lte":%d}}`, c(10), c(13)), sorted[11:14]},
		{fmt.Sprintf(`{"created":{"eq":[%d,%d]}}`, c(3), c(7)), []saved{sorted[3], sorted[7]}},
		{fmt.Sprintf(`{"created":{"range":[{"start":%d,"end":%d},{"start":%d,"end":%d}]}}`, c(1), c(2), c(50), c(50)), []saved{sorted[1], sorted[2], sorted[50]}},
		// Both times at once: saved late, happened early.
		{fmt.Sprintf(`{"date":{"lte":%d},"created":{"gte":%d}}`, acts[20].Date, acts[16].Date+3600_000), []saved{acts[16]}},
	} {
		status, _, l := post(t, srv, "/api/v1/activities/", token(srv), sortBody(tc.filters, "created", "asc", `,"limit":100`))
		if status != 200 {
			t.Errorf("%s: status %d", tc.filters, status)
			continue
		}
		if got, want := idsOf(decodeSaved(t, l.Data)), idsOf(tc.want); got != want {
			t.Errorf("%s:\n got %s\nwant %s", tc.filters, got, want)
		}
		if l.Total != len(tc.want) {
			t.Errorf("%s: total %d, want %d", tc.filters, l.Total, len(tc.want))
		}
	}
	for _, dir := range []string{"asc", "desc"} {
		_, _, l := post(t, srv, "/api/v1/activities/", token(srv), sortBody(`{}`, "created", dir, `,"limit":100`))
		if got, want := idsOf(decodeSaved(t, l.Data)), idsOf(byCreated(acts, dir == "desc")); got != want {
			t.Errorf("sorted on created %s:\n got %s\nwant %s", dir, got, want)
		}
	}
	if status, _, _ := post(t, srv, "/api/v1/activities/", token(srv), sortBody(`{"created":{"gte_ndays":1}}`, "created", "asc", "")); status != 400 {
		t.Errorf("an operator created does not take: %d, want 400", status)
	}
}

// TestScanOnCreated pages through activities sorted on created, 300 of
// them saved in one millisecond across a page boundary: each is listed
// once, in created order, and each continuation moves the created bound.
func TestScanOnCreated(t *testing.T) {
	const burstAt = 1714530000000
	raws := mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 900})
	raws = append(raws, mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 300, First: 900, SavedAt: burstAt})...)
	acts := decodeSaved(t, raws)
	srv := mcastest.New(t, mcastest.Options{Activities: raws})
	filters := fmt.Sprintf(`{"created":{"gte":%d,"lt":%d}}`, window.Start, window.End+24*3600_000)
	var all []saved
	for page := 0; ; page++ {
		status, _, l := post(t, srv, "/api/v1/activities/", token(srv), sortBody(filters, "created", "asc", `,"isScan":true,"limit":500`))
		if status != 200 || page > 10 {
			t.Fatalf("page %d: status %d", page, status)
		}
		got := decodeSaved(t, l.Data)
		all = append(all, got...)
		if !l.HasNext {
			break
		}
		var next struct {
			Created map[string]int64 `json:"created"`
			Date    json.RawMessage  `json:"date"`
		}
		if err := json.Unmarshal(l.NextQueryFilters, &next); err != nil {
			t.Fatal(err)
		}
		if next.Date != nil || next.Created["lt"] != window.End+24*3600_000 || next.Created["gte"] < got[len(got)-1].Created {
			t.Fatalf("page %d: nextQueryFilters %s after created %d", page, l.NextQueryFilters, got[len(got)-1].Created)
		}
		filters = string(l.NextQueryFilters)
	}
	if got, want := idsOf(all), idsOf(byCreated(acts, false)); got != want {
		t.Fatalf("scan on created listed %d activities, not each once in created order", len(all))
	}
}

// TestAddAndIndexDelay: activities added between two listings appear at
// their place in both orders, once the emulator's clock is IndexDelay past
// their created time.
func TestAddAndIndexDelay(t *testing.T) {
	srv := mcastest.New(t, mcastest.Options{Activities: mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 10}), IndexDelay: time.Hour})
	now := srv.Now().UnixMilli()
	late := mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 3, First: 10, SavedAt: now})
	srv.Add(t, late...)
	if srv.Len() != 13 {
		t.Fatalf("Len %d after adding 3 to 10", srv.Len())
	}
	list := func(field string) []saved {
		t.Helper()
		_, _, l := post(t, srv, "/api/v1/activities/", token(srv), sortBody(`{}`, field, "asc", `,"limit":100`))
		return decodeSaved(t, l.Data)
	}
	if got := list("date"); len(got) != 10 {
		t.Fatalf("%d listed before the added ones are indexed, want 10", len(got))
	}
	srv.Advance(time.Hour)
	all := decodeSaved(t, append(mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 10}), late...))
	byDate := slices.Clone(all)
	slices.SortFunc(byDate, func(a, b saved) int {
		return cmp.Or(cmp.Compare(a.Date, b.Date), strings.Compare(a.ID, b.ID))
	})
	if got, want := idsOf(list("date")), idsOf(byDate); got != want {
		t.Errorf("on date after Add:\n got %s\nwant %s", got, want)
	}
	got := list("created")
	if idsOf(got) != idsOf(byCreated(all, false)) || idsOf(got[10:]) != idsOf(byCreated(decodeSaved(t, late), false)) {
		t.Errorf("on created after Add: %s", idsOf(got))
	}
}
