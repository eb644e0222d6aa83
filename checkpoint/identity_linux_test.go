package checkpoint

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The lock was the path plus .lock: two names of one checkpoint file (a
// hard link, a bind mount) gave two locks, and two runs wrote the same
// activities twice. The file itself is locked now: every name of it finds
// the run that holds it, with its pid, and status through any name sees
// the run; so does a run on the same path whose lock file was removed
// under the holder.
func TestEveryNameOfTheFileSharesTheLock(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.db")
	s, err := Open(ctx, path, ident)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.db")
	if err := os.Link(path, other); err != nil {
		t.Fatal(err)
	}
	held := fmt.Sprintf("is locked by another siem-recovery run (pid %d)", os.Getpid())
	_, err = Open(ctx, other, ident)
	wantUnavailable(t, err, other+" "+held, "two runs must never share a checkpoint")
	if _, running, err := Read(ctx, other); err != nil || !running {
		t.Fatalf("status through the hard link: running %v, %v", running, err)
	}
	if err := os.Remove(path + ".lock"); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, path, ident)
	wantUnavailable(t, err, path+" "+held)

	s.Close()
	s, err = Open(ctx, other, ident)
	if err != nil {
		t.Fatalf("once the run is over, the other name opens: %v", err)
	}
	s.Close()
	if _, running, err := Read(ctx, path); err != nil || running {
		t.Fatalf("status after the runs: running %v, %v", running, err)
	}
}
