package checkpoint

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"siem-recovery/recovery"
)

var ident = Identity{Window: recovery.Window{Start: 1000, End: 2000}, Source: "file:a.jsonl", Fingerprint: "fp1"}

func TestCreateResumeAndMode(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	s, err := Open(ctx, path, ident)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + ".lock"} {
		info, err := os.Stat(p)
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, %v; want 0600", p, info.Mode().Perm(), err)
		}
	}
	err = s.Update(ctx, func(st *recovery.State) error {
		st.Sent = 42
		st.Cursor = recovery.Cursor{Token: []byte(`{"offset":99,"line":3}`), Text: "line 3 of the export"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(st *recovery.State) error { st.Sent = 0; return errors.New("no") }); err == nil {
		t.Fatal("failing update reported success")
	}
	s.Close()

	s, err = Open(ctx, path, ident)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Load(ctx)
	if err != nil || st.Sent != 42 || string(st.Cursor.Token) != `{"offset":99,"line":3}` || st.State != recovery.StatePending || st.Window != ident.Window {
		t.Fatalf("reloaded %+v, %v", st, err)
	}
}

func TestLockedByAnotherRun(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	s, err := Open(ctx, path, ident)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(ctx, path, ident)
	if !errors.Is(err, recovery.ErrCheckpointUnavailable) || !strings.Contains(err.Error(), "is locked by another siem-recovery run (pid ") {
		t.Fatalf("second open: %v", err)
	}
	// status can still read it, and sees the run.
	st, active, err := Read(ctx, path)
	if err != nil || !active || st.Fingerprint != "fp1" {
		t.Fatalf("Read during run: %+v, %v, %v", st, active, err)
	}
	s.Close()
	if _, active, _ := Read(ctx, path); active {
		t.Fatal("Read after close still sees a run")
	}
}

func TestMismatchLeavesFileUntouched(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	s, err := Open(ctx, path, ident)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	before, _ := os.ReadFile(path)
	other := ident
	other.Window.End = 3000
	other.Filter = `{"service":{"eq":[1]}}`
	other.Fingerprint = "fp2"
	_, err = Open(ctx, path, other)
	want := "cp.db was made for window [1970-01-01T00:00:01.000Z, 1970-01-01T00:00:02.000Z), source file:a.jsonl, filter none, " +
		`but this run asks for window [1970-01-01T00:00:01.000Z, 1970-01-01T00:00:03.000Z), source file:a.jsonl, filter {"service":{"eq":[1]}}`
	if !errors.Is(err, recovery.ErrCheckpointUnavailable) || !strings.Contains(err.Error(), want) {
		t.Fatalf("mismatch: %v", err)
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatal("a mismatched open changed the file")
	}
}

func TestCorruptLeftUntouched(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	s, err := Open(ctx, good, ident)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, _ := os.ReadFile(good)
	cases := map[string][]byte{
		"text":      []byte("this is not a database\n"),
		"truncated": data[:len(data)/3],
		"zeroed":    make([]byte, len(data)),
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".db")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(ctx, path, ident)
			if !errors.Is(err, recovery.ErrCheckpointUnavailable) || !strings.Contains(err.Error(), "is corrupt or not a siem-recovery checkpoint (") ||
				!strings.Contains(err.Error(), "move it aside") {
				t.Fatalf("open corrupt: %v", err)
			}
			after, _ := os.ReadFile(path)
			if string(after) != string(content) {
				t.Fatal("the corrupt file was modified")
			}
		})
	}
}

func TestReadMissing(t *testing.T) {
	_, _, err := Read(context.Background(), filepath.Join(t.TempDir(), "nope.db"))
	if !errors.Is(err, recovery.ErrCheckpointUnavailable) || !strings.Contains(err.Error(), "a run creates it when it starts") {
		t.Fatalf("Read missing: %v", err)
	}
}

// A run killed while creating its checkpoint leaves at most the temporary
// file, never a half-made checkpoint: the next run creates it afresh.
func TestKilledCreationDoesNotBlockTheNextRun(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	if err := os.WriteFile(path+".new", nil, 0o600); err != nil { // what a kill -9 in bolt.Open leaves
		t.Fatal(err)
	}
	s, err := Open(ctx, path, ident)
	if err != nil {
		t.Fatalf("Open after a killed creation: %v", err)
	}
	defer s.Close()
	if st, err := s.Load(ctx); err != nil || st.State != recovery.StatePending || st.Fingerprint != ident.Fingerprint {
		t.Fatalf("created %+v, %v", st, err)
	}
	if _, err := os.Stat(path + ".new"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the temporary file is still there: %v", err)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("checkpoint mode %v, %v; want 0600", info.Mode().Perm(), err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
