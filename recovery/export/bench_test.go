package export

import (
	"context"
	"io"
	"os"
	"testing"

	"siem-recovery/recovery"
	"siem-recovery/sink"
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
		s, err := Open(path, recovery.Scope{Window: w}, recovery.Filter{}, 5000)
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

// BenchmarkPipeline is the whole hot path of a run: the export read page
// by page, each activity decoded, formatted as CEF and written to a sink
// that discards, with the checkpoint in memory.
func BenchmarkPipeline(b *testing.B) {
	path := os.Getenv("SIEM_RECOVERY_BENCH_EXPORT")
	if path == "" {
		path = "../../docs/examples/activities.jsonl"
	}
	w := recovery.Window{Start: 0, End: 1 << 62}
	var n int64
	for b.Loop() {
		src, err := Open(path, recovery.Scope{Window: w}, recovery.Filter{}, 5000)
		if err != nil {
			b.Fatal(err)
		}
		out, err := sink.Open(context.Background(), "stdout", sink.Options{Stdout: io.Discard, Version: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		cp := &memCheckpoint{}
		res, err := (&recovery.Replayer{Source: src, Sink: out, Checkpoint: cp}).Run(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		n += res.Sent
		src.Close()
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "activities/s")
}

type memCheckpoint struct{ st recovery.State }

func (m *memCheckpoint) Load(context.Context) (recovery.State, error) { return m.st, nil }
func (m *memCheckpoint) Update(_ context.Context, fn func(*recovery.State) error) error {
	return fn(&m.st)
}
