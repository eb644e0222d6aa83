package mcas_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas"
	"siem-recovery/recovery/mcas/mcastest"
)

// TestCountIsOneRequest: the window's count comes from the total of one
// plain answer (limit 1), with the window and the filter applied, whatever
// the window holds; a failed request is retried like a page. The window
// holds more than two scan pages, and more than plain paging can reach
// (skip + limit ≤ 5000).
func TestCountIsOneRequest(t *testing.T) {
	t.Parallel()
	const count = 12_000
	acts, want := generate(count, 300, 7000)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	src, _ := newSource(t, srv, nil)
	n, requests, err := countAll(t.Context(), src)
	if err != nil || n != int64(len(want)) || requests != 1 || srv.Stats().Requests != 1 {
		t.Fatalf("Count = %d, %d requests (the API saw %d), %v; want %d in 1", n, requests, srv.Stats().Requests, err, len(want))
	}
	body := bodyOf(t, srv.Requests()[0])
	if body.IsScan || body.Limit != 1 {
		t.Errorf("count request %+v, want a plain request of limit 1", body)
	}

	filter, err := recovery.ParseFilter([]byte(`{"service":{"eq":[11161]}}`))
	if err != nil {
		t.Fatal(err)
	}
	// Activity i of the window comes from Services[i%len(Services)].
	var kept int64
	for i := range count {
		if mcastest.Services[i%len(mcastest.Services)].ID == 11161 {
			kept++
		}
	}
	srv.FailNext(1, mcastest.Fault{Status: 503})
	filtered, _ := newSource(t, srv, func(c *mcas.Config) { c.Filter = filter })
	n, requests, err = countAll(t.Context(), filtered)
	if err != nil || n != kept || requests != 2 || kept == 0 || kept == int64(len(want)) {
		t.Fatalf("filtered Count after a 503 = %d in %d requests, %v; want %d in 2", n, requests, err, kept)
	}
	var _ recovery.Counter = src
}

// TestUnusableTotalIsNoTotal: a total that is not a count (a string, an
// exponent, a fraction, a negative or absurd number) is taken for none,
// as an absent one is, with one warning (issue 22: such a total was a
// malformed answer, which ended the run where an absent one did not).
func TestUnusableTotalIsNoTotal(t *testing.T) {
	t.Parallel()
	acts, _ := generate(100, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	src, logs := newSource(t, srv, nil)
	for _, total := range []string{`"1200"`, `1e18`, `-5`, `12.5`, `1000000000001`, `null`, `{"value":3}`} {
		srv.FailNext(1, mcastest.Fault{Total: total})
		n, requests, err := countAll(t.Context(), src)
		if !errors.Is(err, recovery.ErrNoTotal) || n != 0 || requests != 1 {
			t.Errorf("total %s: Count = %d in %d requests, %v; want ErrNoTotal in 1", total, n, requests, err)
		}
	}
	if got := strings.Count(logs.String(), "the API's total is not a count of activities"); got != 1 || !strings.Contains(logs.String(), `total="\"1200\""`) {
		t.Errorf("%d warnings, want one naming the first:\n%s", got, logs.String())
	}
	// The largest count taken, and 0.
	for _, total := range []int64{1_000_000_000_000, 0} {
		srv.FailNext(1, mcastest.Fault{Total: strconv.FormatInt(total, 10)})
		if n, _, err := countAll(t.Context(), src); err != nil || n != total {
			t.Errorf("total %d: Count = %d, %v", total, n, err)
		}
	}
}

// TestCountLowerBound: the API's total is an estimate; where it stops
// counting it says so ("moreThanTotal": true), and the Tally is then a
// lower bound (issue 26: a total that stopped at 10,000 for a window of
// 100,304 was taken for the count, and verify exited 0 on it).
func TestCountLowerBound(t *testing.T) {
	t.Parallel()
	acts, want := generate(1200, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts, TotalCap: 1000})
	src, _ := newSource(t, srv, nil)
	whole, err := src.Count(t.Context(), testWindow)
	if err != nil || whole.Activities != 1000 || !whole.AtLeast || whole.Requests != 1 || len(want) != 1200 {
		t.Fatalf("Count of 1200 with totals capped at 1000 = %+v, %v; want at least 1000 in 1 request", whole, err)
	}
	// A part under the cap is counted exactly, and says so.
	half := recovery.Window{Start: testWindow.Start, End: testWindow.Start + (testWindow.End-testWindow.Start)/4}
	part, err := src.Count(t.Context(), half)
	if err != nil || part.AtLeast || part.Activities == 0 || part.Activities >= 1000 {
		t.Fatalf("Count of a quarter = %+v, %v; want an exact count under 1000", part, err)
	}
	// "moreThanTotal" other than true leaves the count as it is.
	for _, total := range []string{`12`} {
		srv.FailNext(1, mcastest.Fault{Total: total})
		if n, err := src.Count(t.Context(), half); err != nil || n.Activities != 12 || n.AtLeast {
			t.Errorf("total %s: %+v, %v", total, n, err)
		}
	}
}
