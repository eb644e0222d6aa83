//go:build linux

package main

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"siem-recovery/recovery/mcas/mcastest"
)

// Hostile input, round 3 (issue 22): the checkpoint and the file sink
// reached by names an operator or an attacker can change under a run.

// holdCheckpoint starts a run that holds the checkpoint cp.db in dir for
// as long as the test needs: it reads an API whose third answer (after the
// count and a first page delivered, which made the checkpoint) comes a
// minute late. It returns the run, stopped at the end of the test.
func holdCheckpoint(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	srv := mcastest.New(t, mcastest.Options{Activities: mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 10})})
	srv.FailFrom(3, 1, mcastest.Fault{Delay: time.Minute})
	writeFile(t, dir, "token.txt", srv.Token()+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	cmd, _, done := startBin(ctx, t, "run", "--start", strconv.FormatInt(apiWindow.Start, 10), "--end", strconv.FormatInt(apiWindow.End, 10),
		"--source", srv.URL, "--token-file", filepath.Join(dir, "token.txt"), "--parallel", "1", "--page-size", "5",
		"--checkpoint", filepath.Join(dir, "cp.db"), "--sink", "file:"+filepath.Join(dir, "held.jsonl"))
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

// unionDelivered counts each id in the json-format sink file at path and
// in every file its rotations left beside it (gzip ones decompressed), as
// deliveredIDs does for one file.
func unionDelivered(t *testing.T, path string) (counts map[string]int, torn int, files []string) {
	t.Helper()
	dir, base := filepath.Split(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	counts = map[string]int{}
	plain := t.TempDir()
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), base) {
			continue
		}
		files = append(files, e.Name())
		name := filepath.Join(dir, e.Name())
		if strings.HasSuffix(name, ".gz") {
			name = gunzip(t, name, filepath.Join(plain, e.Name()))
		}
		c, n := deliveredIDs(t, name)
		for id, k := range c {
			counts[id] += k
		}
		torn += n
	}
	return counts, torn, files
}

func gunzip(t *testing.T, from, to string) string {
	t.Helper()
	f, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", from, err)
	}
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, z); err != nil {
		t.Fatalf("%s: %v", from, err)
	}
	return to
}

// logrotateConf writes a logrotate configuration for path with the given
// directives and returns the command that rotates it now, forced.
func logrotateConf(t *testing.T, path string, directives ...string) func() *exec.Cmd {
	t.Helper()
	bin := requireTool(t, "logrotate")
	dir := t.TempDir()
	conf := filepath.Join(dir, "rotate.conf")
	text := path + " {\n    rotate 1000\n    missingok\n    nomail\n    " + strings.Join(directives, "\n    ") + "\n}\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return func() *exec.Cmd { return exec.Command(bin, "--force", "--state", filepath.Join(dir, "state"), conf) }
}

// A file sink kept its descriptor for ever: logrotate's create+compress
// during a run left most of the window in a file compress then removed
// ("completed, sent 20304", 3,309 of them in the files), and copytruncate
// had it written past the end of a truncated file. The real logrotate
// rotates the sink's file over and over while a run writes many batches:
// the union of the files it leaves holds every activity of the window
// once.
func TestFileSinkRotatedDuringARun(t *testing.T) {
	t.Parallel()
	for _, directives := range [][]string{{"create", "compress"}, {"copytruncate"}} {
		t.Run(strings.Join(directives, "+"), func(t *testing.T) {
			dir := t.TempDir()
			want := writeBigExport(t, filepath.Join(dir, "big.jsonl"), 50_000)
			out := filepath.Join(dir, "out.jsonl")
			rotate := logrotateConf(t, out, directives...)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd, stderr, done := startBin(ctx, t, bigArgs(dir, "--page-size", "500")...)
			waitForSize(t, out, 1, done)
			// Back to back, so that many land in the middle of a batch.
			rotations := 0
			for running := true; running && rotations < 40; {
				// gzip says so when the run wrote to the file it compressed:
				// the race the sink makes up for.
				if b, err := rotate().CombinedOutput(); err != nil || len(b) > 0 && !strings.Contains(string(b), "file size changed while zipping") {
					t.Fatalf("logrotate: %v\n%s", err, b)
				}
				rotations++
				select {
				case <-done:
					running = false
				default:
				}
			}
			<-done
			if code := cmd.ProcessState.ExitCode(); code != 0 {
				t.Fatalf("exit code %d\n%s", code, stderr.String())
			}
			counts, torn, files := unionDelivered(t, out)
			missing, dups := tally(counts, want)
			t.Logf("%d rotations, %d files, %d torn lines", rotations, len(files), torn)
			if rotations < 3 || len(files) < 3 {
				t.Fatalf("%d rotations left %d files: the run was over before the test rotated it", rotations, len(files))
			}
			if missing != 0 || dups != 0 || len(counts) != len(want) {
				t.Fatalf("%d of %d activities missing, %d twice in the union of %v (%s)\n%s", missing, len(want), dups, files, whereAre(t, out, counts, want), stderr.String())
			}
			if !strings.Contains(stderr.String(), "the sink file was") {
				t.Errorf("no rotation was logged:\n%s", stderr.String())
			}
		})
	}
}

// A run killed in the middle of a batch, and the sink's file rotated
// before the next run (create+compress: the dead run's lines, and its torn
// one, are in out.jsonl.1.gz; copytruncate: in out.jsonl.1, with out.jsonl
// emptied). The resume read back a file that was not the one marked and
// wrote the batch again whole. It now reads the batch back from the
// rotated file: every activity once, nothing counted as sent again.
func TestKill9ThenRotationResumes(t *testing.T) {
	t.Parallel()
	for _, directives := range [][]string{{"create", "compress"}, {"copytruncate"}} {
		t.Run(strings.Join(directives, "+"), func(t *testing.T) {
			dir := t.TempDir()
			want := writeBigExport(t, filepath.Join(dir, "big.jsonl"), 300_000)
			out := filepath.Join(dir, "out.jsonl")
			args := bigArgs(dir, "--page-size", "5000")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd, _, done := startBin(ctx, t, args...)
			waitForSize(t, out, 2<<20, done)
			awaitTornTail(t, out, done)
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			mid := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
			if mid.InFlight == 0 {
				t.Fatalf("killed with no batch in flight: %+v", mid)
			}
			if b, err := logrotateConf(t, out, directives...)().CombinedOutput(); err != nil || len(b) > 0 {
				t.Fatalf("logrotate: %v\n%s", err, b)
			}

			r := runBin(t, dir, nil, args...)
			wantCode(t, r, 0)
			wantStderr(t, r, "that batch is read back from the rotated files",
				"what the sink lacks of it is sent", "activities="+strconv.FormatInt(mid.InFlight, 10), "sent_again=0")
			counts, torn, files := unionDelivered(t, out)
			missing, dups := tally(counts, want)
			end := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
			if missing != 0 || dups != 0 || len(counts) != len(want) || end.Resent != 0 || end.Sent != int64(len(want)) {
				t.Fatalf("%d of %d activities missing, %d twice in %v, %d counted as sent again, sent %d",
					missing, len(want), dups, files, end.Resent, end.Sent)
			}
			// A line the kill tore stays in the rotated file (a compressed or
			// copied file is not the run's to cut); its activity is whole in
			// the new one. (The kill may also land just after the write.)
			t.Logf("%d torn lines", torn)
			if torn > 1 {
				t.Errorf("%d torn lines in %v, want at most the one the kill tore", torn, files)
			}
		})
	}
}

// After a kill -9, out.jsonl replaced by a symbolic link to a file in
// /etc made the resume append the window there. The link is refused, and
// its target left as it was.
func TestFileSinkLinkPlantedAfterKill9(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBigExport(t, filepath.Join(dir, "big.jsonl"), 100_000)
	out := filepath.Join(dir, "out.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, _, done := startBin(ctx, t, bigArgs(dir, "--page-size", "5000")...)
	waitForSize(t, out, 1<<20, done)
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	writeFile(t, dir, "victim.conf", "important\n")
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("victim.conf", out); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, dir, nil, "run", "--start", strconv.FormatInt(bigStart, 10), "--end", strconv.FormatInt(bigEnd, 10),
		"--source", "file:big.jsonl", "--format", "json", "--sink", "file:out.jsonl", "--checkpoint", "cp.db", "--page-size", "5000")
	wantCode(t, r, exitUsage)
	golden(t, "run/sink-symlink/stderr", lastLine(r.stderr))
	if got, _ := os.ReadFile(filepath.Join(dir, "victim.conf")); string(got) != "important\n" {
		t.Fatalf("the run wrote through the link: victim.conf holds %d bytes", len(got))
	}
}

// A FIFO sink nobody reads blocked the run in open(2), deaf to SIGTERM.
// SIGTERM now stops it at once: exit 75, naming the pipe.
func TestFIFOSinkWithoutReaderStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "alert.json", goodAlert)
	writeFile(t, dir, "export.jsonl", goodExport)
	mkfifo(t, filepath.Join(dir, "siem.fifo"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd, stderr, done := startBin(ctx, t, "run", "--alert", filepath.Join(dir, "alert.json"), "--source", "file:"+filepath.Join(dir, "export.jsonl"),
		"--checkpoint", filepath.Join(dir, "cp.db"), "--sink", "file:"+filepath.Join(dir, "siem.fifo"))
	awaitOutput(ctx, t, stderr, "waiting for a reader of the named pipe", done)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("SIGTERM did not stop a run waiting for the pipe's reader")
	}
	if code := cmd.ProcessState.ExitCode(); code != exitStopped {
		t.Fatalf("exit code %d, want 75\n%s", code, stderr.String())
	}
	golden(t, "run/sink-fifo-no-reader/stderr", strings.ReplaceAll(lastLine(stderr.String()), dir+string(filepath.Separator), ""))
}

// whereAre says, for the failure message, the first activity missing and
// the first one twice, and which files hold it.
func whereAre(t *testing.T, path string, counts map[string]int, want map[string]bool) string {
	t.Helper()
	first := func(ok func(n int) bool) string {
		var ids []string
		for id := range want {
			if ok(counts[id]) {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		if len(ids) == 0 {
			return "none"
		}
		return ids[0]
	}
	missing, twice := first(func(n int) bool { return n == 0 }), first(func(n int) bool { return n > 1 })
	var in []string
	dir, base := filepath.Split(path)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), base) {
			continue
		}
		name := filepath.Join(dir, e.Name())
		if strings.HasSuffix(name, ".gz") {
			name = gunzip(t, name, filepath.Join(t.TempDir(), e.Name()))
		}
		if c, _ := deliveredIDs(t, name); c[twice] > 0 {
			in = append(in, e.Name())
		}
	}
	return fmt.Sprintf("first missing %s, first twice %s, in %v", missing, twice, in)
}
