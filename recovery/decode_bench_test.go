package recovery

import (
	"testing"

	"siem-recovery/internal/activitygen"
)

// BenchmarkDecode compares the scanner (a Decoder, as the export source
// uses it) with the fastjson decoder it replaced, kept in the tests as the
// reference, on the same activities in the same run: the large objects
// of internal/activitygen (about 4 KiB, most of it fields the tool
// passes over) and the bundled export's (about 2.2 KiB: the same shape
// without the app's raw record). Read the ratio of the two, not the
// figures.
func BenchmarkDecode(b *testing.B) {
	large := make([][]byte, 64)
	for i := range large {
		large[i] = activitygen.Append(nil, i, 1715673600000+int64(i))
	}
	small := exampleActivities(b)
	for _, set := range []struct {
		name  string
		lines [][]byte
	}{{"activitygen", large}, {"example", small}} {
		var size int
		for _, l := range set.lines {
			size += len(l)
		}
		run := func(b *testing.B, decode func([]byte) (Activity, error)) {
			b.SetBytes(int64(size / len(set.lines)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := decode(set.lines[i%len(set.lines)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		}
		b.Run(set.name+"/scanner", func(b *testing.B) {
			var d Decoder
			run(b, d.Decode)
		})
		b.Run(set.name+"/fastjson", func(b *testing.B) { run(b, parseActivityReference) })
	}
}
