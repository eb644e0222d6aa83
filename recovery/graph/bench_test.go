package graph_test

import (
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/graph"
	"siem-recovery/recovery/graph/graphtest"
)

// BenchmarkFetch reads 20,000 real-shaped rows in pages of 5,000 from the
// emulator: the client's share of a recovery (reading, checking, making
// records and CEF fields), with the emulator's serving beside it.
func BenchmarkFetch(b *testing.B) {
	rows := graphtest.Generate(graphtest.GenerateOptions{Window: testWindow, Count: 20_000})
	srv := graphtest.New(b, graphtest.Options{Rows: rows})
	src, err := graph.New(graph.Config{BaseURL: srv.URL, Authorization: bearer(graphtest.DefaultToken), TenantID: testTenant,
		Window: testWindow, RateLimit: 600_000, TLSConfig: srv.TLSConfig(), RequestTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	n := 0
	for b.Loop() {
		var cur recovery.Cursor
		for {
			page, err := src.Fetch(b.Context(), cur)
			if err != nil {
				b.Fatal(err)
			}
			n += len(page.Activities)
			if page.Last {
				break
			}
			cur = page.Next
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkParseRecord decodes one streaming record: what the sink does
// for each line of its file on a resume.
func BenchmarkParseRecord(b *testing.B) {
	raw := []byte(streamed)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := graph.ParseRecord(raw); err != nil {
			b.Fatal(err)
		}
	}
}
