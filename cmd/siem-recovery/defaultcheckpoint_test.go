package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Without --checkpoint, the checkpoint is the recovery's own file in the
// user's state directory: the same command run from another directory
// resumes it (issue 18: the old default, siem-recovery.db in the working
// directory, silently started over and sent the window twice). Its path is
// printed at start, in the stop message and in "already completed".
func TestDefaultCheckpointResumesFromAnyDirectory(t *testing.T) {
	state := t.TempDir()
	env := []string{"XDG_STATE_HOME=" + state}
	args := exampleArgs(t, "")
	args = args[:len(args)-2] // no --checkpoint
	wantIDs, _ := exampleLines(t, nil)

	stopped := runBin(t, t.TempDir(), env, append(args, "--max-duration", "1ns")...)
	wantCode(t, stopped, exitStopped)
	m := regexp.MustCompile(`msg=checkpoint path=(\S+) state=pending sent=0`).FindStringSubmatch(stopped.stderr)
	if m == nil {
		t.Fatalf("the run does not print its checkpoint at start:\n%s", stopped.stderr)
	}
	path := m[1]
	if filepath.Dir(path) != filepath.Join(state, "siem-recovery") ||
		!regexp.MustCompile(`^20240514T080000Z-20240514T090000Z-[0-9a-f]{12}\.db$`).MatchString(filepath.Base(path)) {
		t.Fatalf("default checkpoint %s, want a file named for the window in %s/siem-recovery", path, state)
	}
	if !strings.HasSuffix(lastLine(stopped.stderr), " (checkpoint "+path+")\n") {
		t.Fatalf("the stop message does not name the checkpoint: %s", lastLine(stopped.stderr))
	}
	for p, mode := range map[string]os.FileMode{filepath.Dir(path): 0o700, path: 0o600} {
		if info, err := os.Stat(p); err != nil || info.Mode().Perm() != mode {
			t.Fatalf("%s: %v, %v; want mode %v", p, info.Mode().Perm(), err, mode)
		}
	}

	r := runBin(t, t.TempDir(), env, args...) // another directory: resumes
	wantCode(t, r, 0)
	if got := cefIDs(t, r.stdout); len(got) != len(wantIDs) {
		t.Fatalf("the resumed run sent %d activities, want %d", len(got), len(wantIDs))
	}
	again := runBin(t, t.TempDir(), env, args...)
	wantCode(t, again, 0)
	if again.stdout != "" {
		t.Fatalf("the window was sent again from a third directory: %.300s", again.stdout)
	}
	wantStderr(t, again, "already completed, nothing to do", "checkpoint="+path)

	// status reads one checkpoint: without --checkpoint, the only one in
	// the state directory, and it says which (issue 28: it used to exit 2).
	st := runBin(t, t.TempDir(), env, "status")
	wantCode(t, st, 0)
	if st.stderr != "status of "+path+", the only checkpoint in "+filepath.Dir(path)+"\n" || !strings.Contains(st.stdout, "state:         completed") {
		t.Fatalf("status without --checkpoint, one checkpoint:\n%s%s", st.stdout, st.stderr)
	}
	st = runBin(t, t.TempDir(), env, "status", "--checkpoint", path)
	wantCode(t, st, 0)
	if !strings.Contains(st.stdout, "state:         completed") {
		t.Fatalf("status of the default checkpoint:\n%s", st.stdout)
	}
	// With two, it lists them.
	other := runBin(t, t.TempDir(), env, append(args, "--by", "created")...)
	wantCode(t, other, 0)
	st = runBin(t, t.TempDir(), env, "status")
	wantCode(t, st, exitUsage)
	golden(t, "status/missing-checkpoint/stderr", strings.ReplaceAll(st.stderr, state, "$XDG_STATE_HOME"))
}
