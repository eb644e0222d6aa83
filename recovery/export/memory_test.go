package export

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	"siem-recovery/internal/activitygen"
	"siem-recovery/recovery"
)

// writeGenerated writes n activities of the API's shape, one a line, and
// returns the export's path and the bytes of its lines.
func writeGenerated(t *testing.T, n int) (string, int) {
	t.Helper()
	var text []byte
	for i := range n {
		text = append(activitygen.Append(text, i, 1000+int64(i)), '\n')
	}
	path := filepath.Join(t.TempDir(), "export.jsonl")
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, len(text)
}

// allocatedPerLineByte pages through the export at path with s, after a
// first page that sizes the buffers, and returns the bytes Fetch allocated
// for each byte of the lines it read, and the activities it returned.
func allocatedPerLineByte(t *testing.T, s *Source, size int) (float64, []recovery.Activity) {
	t.Helper()
	first, err := s.Fetch(context.Background(), recovery.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	from := at(t, first.Next).Offset
	var acts []recovery.Activity
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for cur := first.Next; ; {
		p, err := s.Fetch(context.Background(), cur)
		if err != nil {
			t.Fatal(err)
		}
		acts = append(acts, p.Activities...)
		if p.Last {
			break
		}
		cur = p.Next
	}
	runtime.ReadMemStats(&after)
	return float64(after.TotalAlloc-before.TotalAlloc) / float64(int64(size)-from), acts
}

// Without Raw, a page holds no copy of its lines: the buffer they are read
// into serves every round, and what a page allocates is its activities'
// fields, a small part of the lines. The fields are those of a page with
// Raw.
func TestLeaveRawKeepsNoCopyOfTheLines(t *testing.T) {
	path, size := writeGenerated(t, 4*decodeRound)
	w := byDate(0, 1<<62)
	withRaw, err := Open(path, w, recovery.Filter{}, decodeRound+256)
	if err != nil {
		t.Fatal(err)
	}
	defer withRaw.Close()
	without, err := Open(path, w, recovery.Filter{}, decodeRound+256)
	if err != nil {
		t.Fatal(err)
	}
	defer without.Close()
	without.LeaveRaw()

	perByte, full := allocatedPerLineByte(t, withRaw, size)
	perByteBare, bare := allocatedPerLineByte(t, without, size)
	t.Logf("allocated per byte of the lines read: %.2f with Raw, %.2f without", perByte, perByteBare)
	if perByteBare > 0.5 {
		t.Errorf("without Raw, Fetch allocated %.2f bytes per byte of the lines read, want at most 0.5 (%.2f with Raw)", perByteBare, perByte)
	}
	if len(bare) != len(full) {
		t.Fatalf("%d activities without Raw, %d with", len(bare), len(full))
	}
	for i := range bare {
		if bare[i].Raw != nil {
			t.Fatalf("activity %s carries Raw", bare[i].ID)
		}
		want := full[i]
		want.Raw = nil
		if !reflect.DeepEqual(bare[i], want) {
			t.Fatalf("activity %d without Raw:\n%+v\nwith Raw:\n%+v", i, bare[i], want)
		}
	}
}

// A page that keeps its lines takes the buffers they were read into, each
// sized for the lines its round reads: a page that ends a few hundred lines
// into a round costs a little more than its lines, not a round's buffer
// more.
func TestPageBuffersAreSizedToThePage(t *testing.T) {
	path, size := writeGenerated(t, 4*(decodeRound+256))
	s, err := Open(path, byDate(0, 1<<62), recovery.Filter{}, decodeRound+256)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	perByte, acts := allocatedPerLineByte(t, s, size)
	t.Logf("allocated per byte of the lines read: %.2f", perByte)
	if perByte > 1.6 {
		t.Errorf("Fetch allocated %.2f bytes per byte of the lines read, want at most 1.6", perByte)
	}
	for _, a := range acts {
		if len(a.Raw) == 0 || a.Raw[0] != '{' || a.Raw[len(a.Raw)-1] != '}' {
			t.Fatalf("activity %s: Raw %.40q is not its line", a.ID, a.Raw)
		}
	}
}
