//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Hostile input, round 3 (issue 22): the checkpoint and the file sink
// reached by names an operator or an attacker can change under a run.

// holdCheckpoint starts a run that holds the checkpoint cp.db in dir for
// as long as the test needs: its sink is a named pipe nobody reads, whose
// opening waits. It returns the run, stopped at the end of the test.
func holdCheckpoint(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	mkfifo(t, filepath.Join(dir, "held.fifo"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	cmd, _, done := startBin(ctx, t, "run", "--alert", filepath.Join(dir, "alert.json"), "--source", "file:"+filepath.Join(dir, "export.jsonl"),
		"--checkpoint", filepath.Join(dir, "cp.db"), "--sink", "file:"+filepath.Join(dir, "held.fifo"))
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		cancel()
	})
	awaitStatus(ctx, t, dir, filepath.Join(dir, "cp.db"), func(s statusReport) bool { return s.RunActive })
	return cmd
}

// The lock was the checkpoint's path plus .lock: through a hard link (or a
// bind mount) of the checkpoint, a second run took a lock of its own and
// both wrote the window. Every name of the file now finds the run that
// holds it.
func TestCheckpointLockedThroughAnotherName(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "alert.json", goodAlert)
	writeFile(t, dir, "export.jsonl", goodExport)
	holder := holdCheckpoint(t, dir)
	if err := os.Link(filepath.Join(dir, "cp.db"), filepath.Join(dir, "cp2.db")); err != nil {
		t.Fatal(err)
	}
	pid := fmt.Sprint(holder.Process.Pid)
	args := []string{"run", "--alert", "alert.json", "--source", "file:export.jsonl", "--sink", "file:out.log"}
	r := runBin(t, dir, nil, append(args, "--checkpoint", "cp2.db")...)
	wantCode(t, r, exitCheckpointUnusable)
	golden(t, "run/checkpoint-hard-link/stderr", strings.ReplaceAll(lastLine(r.stderr), "pid "+pid+")", "pid PID)"))
	if _, err := os.Stat(filepath.Join(dir, "out.log")); err == nil {
		t.Fatal("the refused run opened its sink")
	}

	// A bind mount of the file, where the test may make one: in a user
	// and mount namespace of its own.
	if err := exec.Command("unshare", "-rm", "true").Run(); err != nil {
		t.Logf("no bind mount: unshare -rm: %v", err)
		return
	}
	if err := os.Mkdir(filepath.Join(dir, "bound"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "bound/cp.db", "")
	r = runProgram(t, dir, nil, "unshare", append([]string{"-rm", "sh", "-c", `mount --bind cp.db bound/cp.db && exec "$0" "$@"`, binary},
		append(args, "--checkpoint", "bound/cp.db")...)...)
	wantCode(t, r, exitCheckpointUnusable)
	if want := "Checkpoint unavailable: bound/cp.db is locked by another siem-recovery run (pid " + pid + "); "; !strings.HasPrefix(lastLine(r.stderr), want) {
		t.Fatalf("through a bind mount: %s, want %s…", lastLine(r.stderr), want)
	}
}
