//go:build unix

package checkpoint

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"siem-recovery/recovery"
)

func wantUnavailable(t *testing.T, err error, parts ...string) {
	t.Helper()
	if !errors.Is(err, recovery.ErrCheckpointUnavailable) {
		t.Fatalf("want checkpoint unavailable, got %v", err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("%q lacks %q", err, p)
		}
	}
}

func wantContent(t *testing.T, path, want string) {
	t.Helper()
	if got, err := os.ReadFile(path); err != nil || string(got) != want {
		t.Fatalf("%s holds %q (%v), want %q", path, got, err, want)
	}
}

// A symbolic link planted at CHECKPOINT.lock made a run truncate the
// link's target and write its pid there. The lock is now opened without
// following links: the run is refused (exit 6) and the target untouched.
func TestLockThatIsASymlinkIsRefused(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim.conf")
	if err := os.WriteFile(victim, []byte("important\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "cp.db")
	if err := os.Symlink(victim, path+".lock"); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), path, ident)
	wantUnavailable(t, err, "the lock "+path+".lock is a symbolic link, not a lock file", "remove it")
	wantContent(t, victim, "important\n")
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused run created the checkpoint: %v", err)
	}
}

// A lock file that is not what a run writes (another file hard-linked at
// its name, foreign content, a directory, a pipe) is never truncated.
func TestLockThatIsNotALockFileIsRefused(t *testing.T) {
	for name, setup := range map[string]func(t *testing.T, lock string) (check func(), want string){
		"hard link": func(t *testing.T, lock string) (func(), string) {
			victim := filepath.Join(filepath.Dir(lock), "victim")
			if err := os.WriteFile(victim, []byte("1234\n"), 0o600); err != nil { // looks like a pid, even
				t.Fatal(err)
			}
			if err := os.Link(victim, lock); err != nil {
				t.Fatal(err)
			}
			return func() { wantContent(t, victim, "1234\n") }, "has 2 names (hard links)"
		},
		"foreign content": func(t *testing.T, lock string) (func(), string) {
			if err := os.WriteFile(lock, []byte("key=value\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return func() { wantContent(t, lock, "key=value\n") }, "holds something other than a pid"
		},
		"large file": func(t *testing.T, lock string) (func(), string) {
			big := strings.Repeat("9", 100)
			if err := os.WriteFile(lock, []byte(big), 0o600); err != nil {
				t.Fatal(err)
			}
			return func() { wantContent(t, lock, big) }, "holds 100 bytes, not a pid"
		},
		"directory": func(t *testing.T, lock string) (func(), string) {
			if err := os.Mkdir(lock, 0o700); err != nil {
				t.Fatal(err)
			}
			return func() {}, "is a directory, not a lock file"
		},
		"named pipe": func(t *testing.T, lock string) (func(), string) {
			if err := unix.Mkfifo(lock, 0o600); err != nil {
				t.Fatal(err)
			}
			return func() {}, "is a named pipe (FIFO), not a lock file"
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cp.db")
			check, want := setup(t, path+".lock")
			_, err := Open(context.Background(), path, ident)
			wantUnavailable(t, err, "the lock "+path+".lock "+want)
			check()
		})
	}
}

// A lock file a run left behind (its pid in it) is reused.
func TestLeftoverLockIsReused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	if err := os.WriteFile(path+".lock", []byte("999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), path, ident)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantContent(t, path+".lock", itoa(os.Getpid())+"\n")
}

// Two paths to one checkpoint (a symbolic link to the file, or to its
// directory) take one lock: the second run is refused, and status through
// either path sees the run.
func TestAliasPathsShareOneLock(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	linkDir := filepath.Join(dir, "linkdir")
	if err := os.Symlink(real, linkDir); err != nil {
		t.Fatal(err)
	}
	// Before the checkpoint exists: through its directory's link.
	first, err := Open(ctx, filepath.Join(linkDir, "cp.db"), ident)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, filepath.Join(real, "cp.db"), ident)
	wantUnavailable(t, err, "is locked by another siem-recovery run (pid ")
	first.Close()

	// Once it exists: through a link to the file.
	alias := filepath.Join(dir, "alias.db")
	if err := os.Symlink(filepath.Join(real, "cp.db"), alias); err != nil {
		t.Fatal(err)
	}
	held, err := Open(ctx, alias, ident)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, err = Open(ctx, filepath.Join(real, "cp.db"), ident)
	wantUnavailable(t, err, filepath.Join(real, "cp.db")+" is locked by another siem-recovery run (pid ")
	for _, p := range []string{alias, filepath.Join(real, "cp.db"), filepath.Join(linkDir, "cp.db")} {
		if _, running, err := Read(ctx, p); err != nil || !running {
			t.Fatalf("status through %s: running %v, %v", p, running, err)
		}
	}
	if _, err := os.Lstat(alias + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a lock beside the alias: %v", err)
	}
}

// A checkpoint path that names no regular file is refused at once: bbolt
// would wait for ever on a pipe, or write into a device.
func TestCheckpointMustBeARegularFile(t *testing.T) {
	dir := t.TempDir()
	pipe := filepath.Join(dir, "pipe")
	if err := unix.Mkfifo(pipe, 0o600); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.db")
	if err := os.Symlink(filepath.Join(dir, "nowhere", "cp.db"), dangling); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		pipe:        pipe + " is a named pipe (FIFO), not a checkpoint file",
		dir:         dir + " is a directory, not a checkpoint file",
		"/dev/null": "/dev/null is a device, not a checkpoint file",
		dangling:    dangling + " is a symbolic link to a file that does not exist",
	} {
		_, err := Open(context.Background(), path, ident)
		wantUnavailable(t, err, want)
		_, _, err = Read(context.Background(), path)
		wantUnavailable(t, err, want)
	}
}
