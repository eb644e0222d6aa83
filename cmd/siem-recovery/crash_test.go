package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

const (
	bigStart = int64(1715673600000)
	bigEnd   = bigStart + 3600_000
)

// writeBigExport writes n activities, one in every 100 outside the window,
// up to 50 sharing one millisecond, and returns the ids in the window.
func writeBigExport(t *testing.T, path string, n int) map[string]bool {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	want := make(map[string]bool, n)
	for i := range n {
		ts := bigStart + int64(i/50)
		if i%100 == 99 {
			ts = bigEnd + int64(i)
		} else {
			want[fmt.Sprintf("c%07d", i)] = true
		}
		fmt.Fprintf(w, `{"_id":"c%07d","timestamp":%d,"appName":"Box","description":"crash test %d"}`+"\n", i, ts, i)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return want
}

var jsonID = regexp.MustCompile(`^\{"_id":"(c\d{7})"`)

// deliveredIDs counts each id in a json-format sink file. A line torn by a
// kill -9 is not an activity and is returned apart.
func deliveredIDs(t *testing.T, path string) (counts map[string]int, torn int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts = map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := jsonID.FindSubmatch(sc.Bytes())
		if m == nil || !json.Valid(sc.Bytes()) {
			torn++
			continue
		}
		counts[string(m[1])]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return counts, torn
}

func bigArgs(dir string, extra ...string) []string {
	return append([]string{"run",
		"--start", strconv.FormatInt(bigStart, 10), "--end", strconv.FormatInt(bigEnd, 10),
		"--source", "file:" + filepath.Join(dir, "big.jsonl"),
		"--format", "json", "--sink", "file:" + filepath.Join(dir, "out.jsonl"),
		"--checkpoint", filepath.Join(dir, "cp.db"),
	}, extra...)
}

// waitForSize polls until path is at least size bytes, or fails the test.
func waitForSize(t *testing.T, path string, size int64, done <-chan struct{}) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		if info, err := os.Stat(path); err == nil && info.Size() >= size {
			return
		}
		select {
		case <-done:
			t.Fatalf("the run ended before %s reached %d bytes", path, size)
		case <-deadline:
			t.Fatalf("%s never reached %d bytes", path, size)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// statusJSON reads a checkpoint through the status command.
func statusJSON(t *testing.T, dir, checkpoint string) statusReport {
	t.Helper()
	r := runBin(t, dir, nil, "status", "--checkpoint", checkpoint, "--json")
	wantCode(t, r, 0)
	var s statusReport
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return s
}

// TestKill9HalfwayLosesNothing kills the real binary with SIGKILL halfway
// through a 1,000,000-line export, re-runs it, and checks that every
// activity of the window was delivered and that what was sent twice is at
// most one checkpoint interval (one page) and is reported.
func TestKill9HalfwayLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000,000 activities: not in -short")
	}
	const n, pageSize = 1_000_000, 5000
	dir := t.TempDir()
	want := writeBigExport(t, filepath.Join(dir, "big.jsonl"), n)
	lineBytes := int64(len(`{"_id":"c0000000","timestamp":1715673600000,"appName":"Box","description":"crash test 500000"}` + "\n"))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, bigArgs(dir, "--page-size", strconv.Itoa(pageSize))...)
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	waitForSize(t, filepath.Join(dir, "out.jsonl"), int64(len(want))/2*lineBytes, done)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the first run was not killed: %v\n%s", cmd.ProcessState, stderr.String())
	}
	mid := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
	if mid.State != "running" || mid.RunActive || mid.Sent == 0 || mid.Sent >= int64(len(want)) {
		t.Fatalf("status after kill -9: %+v", mid)
	}

	r := runBin(t, dir, nil, bigArgs(dir, "--page-size", strconv.Itoa(pageSize))...)
	wantCode(t, r, 0)
	if mid.InFlight > 0 { // killed mid-batch rather than between batches
		wantStderr(t, r, "the previous run stopped before the sink confirmed its last batch; that batch is sent again",
			fmt.Sprintf("activities=%d", mid.InFlight))
	}

	counts, torn := deliveredIDs(t, filepath.Join(dir, "out.jsonl"))
	var missing, dups int
	for id := range want {
		switch c := counts[id]; {
		case c == 0:
			missing++
		case c > 1:
			dups += c - 1
		}
	}
	if len(counts) != len(want) || missing != 0 {
		t.Fatalf("%d of %d activities missing; %d distinct ids delivered", missing, len(want), len(counts))
	}
	end := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
	t.Logf("kill -9 at %d sent: %d activities re-sent, %d reported, %d torn lines", mid.Sent, dups, end.Resent, torn)
	if dups > pageSize || end.Resent != mid.InFlight || int64(dups) > end.Resent || torn > 1 {
		t.Fatalf("re-sent %d (reported %d, torn lines %d): more than one checkpoint interval of %d, or unreported", dups, end.Resent, torn, pageSize)
	}
	if end.State != "completed" || end.Sent != int64(len(want)) || end.Percent != 100 {
		t.Fatalf("final status %+v", end)
	}
}

// TestMaxDurationStopsAndResumes stops a run with --max-duration (exit 75,
// progress saved), and a re-run finishes the window.
func TestMaxDurationStopsAndResumes(t *testing.T) {
	dir := t.TempDir()
	want := writeBigExport(t, filepath.Join(dir, "big.jsonl"), 300_000)
	r := runBin(t, dir, nil, bigArgs(dir, "--max-duration", "300ms", "--page-size", "1000")...)
	wantCode(t, r, exitStopped)
	wantStderr(t, r, "--max-duration 300ms reached", "Stopped before the end date: stopped after line ", "progress is saved; re-run the same command to resume")
	mid := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
	if mid.Sent == 0 || mid.Sent >= int64(len(want)) || mid.Percent >= 100 {
		t.Fatalf("status after the stop: %+v", mid)
	}
	r = runBin(t, dir, nil, bigArgs(dir, "--page-size", "1000")...)
	wantCode(t, r, 0)
	counts, _ := deliveredIDs(t, filepath.Join(dir, "out.jsonl"))
	for id := range want {
		if counts[id] == 0 {
			t.Fatalf("%s never delivered", id)
		}
	}
}

// TestSIGTERMStopsCleanly sends SIGTERM mid-run: exit 75, state saved.
func TestSIGTERMStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	want := writeBigExport(t, filepath.Join(dir, "big.jsonl"), 300_000)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, bigArgs(dir, "--page-size", "1000")...)
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	waitForSize(t, filepath.Join(dir, "out.jsonl"), 1, done)
	cmd.Process.Signal(syscall.SIGTERM)
	<-done
	if code := cmd.ProcessState.ExitCode(); code != exitStopped {
		t.Fatalf("exit code %d after SIGTERM, want 75\n%s", code, stderr.String())
	}
	if !bytes.Contains(stderr.Bytes(), []byte("Stopped before the end date: ")) || !bytes.Contains(stderr.Bytes(), []byte("reason=\"signal received\"")) {
		t.Fatalf("stderr: %s", stderr.String())
	}
	st := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
	if st.Sent >= int64(len(want)) || st.RunActive {
		t.Fatalf("status after SIGTERM: %+v", st)
	}
}
