package mcas_test

import (
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
	n, requests, err := src.Count(t.Context())
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
	n, requests, err = filtered.Count(t.Context())
	if err != nil || n != kept || requests != 2 || kept == 0 || kept == int64(len(want)) {
		t.Fatalf("filtered Count after a 503 = %d in %d requests, %v; want %d in 2", n, requests, err, kept)
	}
	var _ recovery.Counter = src
}
