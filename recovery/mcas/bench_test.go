package mcas_test

import (
	"fmt"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas"
	"siem-recovery/recovery/mcas/mcastest"
)

// BenchmarkFetchWindow pages through a window of 20,000 activities (300 in
// one millisecond) and reports the API requests it took per 1,000
// activities: the number that, with the rate limit, sets how long a
// recovery takes.
func BenchmarkFetchWindow(b *testing.B) {
	const n = 20000
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: testWindow, Count: n, Burst: 300, BurstIndex: 4850})
	for _, bc := range []struct {
		paging   mcas.Paging
		pageSize int
	}{{mcas.PagingScan, 5000}, {mcas.PagingScan, 500}, {mcas.PagingPlain, 100}} {
		b.Run(fmt.Sprintf("%s-%d", bc.paging, bc.pageSize), func(b *testing.B) {
			srv := mcastest.New(b, mcastest.Options{Activities: acts})
			var requests, activities int
			for b.Loop() {
				src, err := mcas.New(mcas.Config{
					BaseURL: srv.URL, Token: recovery.NewToken(srv.Token()), Window: testWindow,
					Paging: bc.paging, PageSize: bc.pageSize, RateLimit: 6000000, RetryInitial: time.Millisecond,
				})
				if err != nil {
					b.Fatal(err)
				}
				var cur recovery.Cursor
				for {
					page, err := src.Fetch(b.Context(), cur)
					if err != nil {
						b.Fatal(err)
					}
					requests += page.Requests
					activities += len(page.Activities)
					if page.Last {
						break
					}
					cur = page.Next
				}
			}
			if activities != n*b.N {
				b.Fatalf("%d activities in %d runs of %d", activities, b.N, n)
			}
			b.ReportMetric(float64(requests)*1000/float64(activities), "requests/1k-activities")
		})
	}
}
