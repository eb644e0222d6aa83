package export

import (
	"context"
	"os"
	"testing"

	"siem-recovery/recovery"
)

// BenchmarkFetch reads a realistic export page by page (set
// SIEM_RECOVERY_BENCH_EXPORT to a file made by scripts/benchtools/gen, or
// the bundled example is used).
func BenchmarkFetch(b *testing.B) {
	path := os.Getenv("SIEM_RECOVERY_BENCH_EXPORT")
	if path == "" {
		path = "../../docs/examples/activities.jsonl"
	}
	info, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	w := recovery.Window{Start: 0, End: 1 << 62}
	var n int
	b.SetBytes(info.Size())
	for b.Loop() {
		s, err := Open(path, w, recovery.Filter{}, 5000)
		if err != nil {
			b.Fatal(err)
		}
		var cur recovery.Cursor
		for {
			p, err := s.Fetch(context.Background(), cur)
			if err != nil {
				b.Fatal(err)
			}
			n += len(p.Activities)
			if p.Last {
				break
			}
			cur = p.Next
		}
		s.Close()
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "activities/s")
}
