package recovery_test

import (
	"testing"

	"siem-recovery/internal/activitygen"
	"siem-recovery/recovery"
)

// benchActivities are activity objects in the API's shape, with its bulk
// (about 4 KiB each), varied enough to take every branch of the CEF
// mapping.
func benchActivities(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = activitygen.Append(nil, i, 1715673600000+int64(i))
	}
	return out
}

// BenchmarkParseActivity decodes one realistic activity object per
// operation; bytes/s is the JSON read.
func BenchmarkParseActivity(b *testing.B) {
	raws := benchActivities(64)
	var size int64
	for _, r := range raws {
		size += int64(len(r))
	}
	b.SetBytes(size / int64(len(raws)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := recovery.ParseActivity(raws[i%len(raws)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
