package checkpoint

import (
	"context"
	"path/filepath"
	"testing"

	"siem-recovery/recovery"
)

// BenchmarkUpdate is the cost of one checkpoint transaction (open, write,
// fsync, close): the replay loop makes one or two per page.
func BenchmarkUpdate(b *testing.B) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "cp.db"), ident)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for b.Loop() {
		if err := s.Update(context.Background(), func(st *recovery.State) error { st.Sent++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
