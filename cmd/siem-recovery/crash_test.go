package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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
	var line []byte
	for i := range n {
		line = bigLine(line[:0], i)
		if i%100 != 99 {
			want[string(line[len(`{"_id":"`):len(`{"_id":"c0000000`)])] = true
		}
		w.Write(line)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return want
}

// bigLine appends line i of writeBigExport's export, its line end
// included. (fmt took most of the time of writing a million lines under
// the race detector.)
func bigLine(dst []byte, i int) []byte {
	ts := bigStart + int64(i/50)
	if i%100 == 99 {
		ts = bigEnd + int64(i)
	}
	dst = append(dst, `{"_id":"c`...)
	dst = appendPadded(dst, i, 7)
	dst = append(dst, `","timestamp":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"appName":"Box","description":"crash test `...)
	dst = strconv.AppendInt(dst, int64(i), 10)
	return append(dst, "\"}\n"...)
}

// appendPadded appends i in decimal, with leading zeros to width digits.
func appendPadded(dst []byte, i, width int) []byte {
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], int64(i), 10)
	for range width - len(d) {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}

// deliveredIDs counts each id in a json-format sink file. A line that is
// not, byte for byte, a line of writeBigExport's (one torn by a kill -9)
// is not an activity and is returned apart.
func deliveredIDs(t *testing.T, path string) (counts map[string]int, torn int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts = map[string]int{}
	sc := bufio.NewScanner(f)
	var want []byte
	for sc.Scan() {
		line := sc.Bytes()
		id, ok := bytes.CutPrefix(line, []byte(`{"_id":"c`))
		i, err := strconv.Atoi(string(id[:min(7, len(id))]))
		if !ok || err != nil || i < 0 {
			torn++
			continue
		}
		// The line as written, without its line end.
		if want = bigLine(want[:0], i); !bytes.Equal(line, want[:len(want)-1]) {
			torn++
			continue
		}
		counts[string(line[len(`{"_id":"`):len(`{"_id":"c0000000`)])]++
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

// awaitTornTail returns as soon as path ends in the middle of a line, or
// fails the test if the run ends first. It polls without pause: a writer
// leaves a line unfinished only for the moment between two writes.
func awaitTornTail(t *testing.T, path string, done <-chan struct{}) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	last := make([]byte, 1)
	for {
		if info, err := f.Stat(); err == nil && info.Size() > 0 {
			if _, err := f.ReadAt(last, info.Size()-1); err == nil && last[0] != '\n' {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("the run ended before %s ended in the middle of a line", path)
		default:
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

// startBin starts the binary in the background; done closes once it has
// exited (cmd.ProcessState is then set). stderr holds what it printed, and
// may be read while it runs.
func startBin(ctx context.Context, t *testing.T, args ...string) (cmd *exec.Cmd, stderr *syncBuffer, done <-chan struct{}) {
	t.Helper()
	return startBinIn(ctx, t, "", nil, args...)
}

// startBinIn is startBin in dir ("": the test's), with extra environment.
func startBinIn(ctx context.Context, t *testing.T, dir string, env []string, args ...string) (cmd *exec.Cmd, stderr *syncBuffer, done <-chan struct{}) {
	t.Helper()
	cmd = exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	stderr = &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	return cmd, stderr, exited
}

// awaitStatus polls the status command until the checkpoint exists and
// ok accepts its report, or fails the test when ctx ends.
func awaitStatus(ctx context.Context, t *testing.T, dir, checkpoint string, ok func(statusReport) bool) statusReport {
	t.Helper()
	for {
		r := runBin(t, dir, nil, "status", "--checkpoint", checkpoint, "--json")
		var s statusReport
		if r.code == 0 {
			if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
				t.Fatalf("status --json: %v\n%s", err, r.stdout)
			}
			if ok(s) {
				return s
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("status never got there; last: %+v %s", s, r.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestKill9ExactlyOnceIntoAFile kills the real binary with SIGKILL at
// random moments of a 1,000,000-line export (at least three, and until one
// of them tore a line), re-running it after each kill, and checks that the
// file then holds every activity of the window exactly once, in whole
// lines, and that nothing was counted as sent again: each resumed run read
// back what the killed one had written of its batch, cut the torn line and
// wrote only the rest.
func TestKill9ExactlyOnceIntoAFile(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("1,000,000 activities: not in -short")
	}
	const n, pageSize = 1_000_000, 5000
	dir := t.TempDir()
	want := writeBigExport(t, filepath.Join(dir, "big.jsonl"), n)
	out := filepath.Join(dir, "out.jsonl")
	lineBytes := int64(len(`{"_id":"c0000000","timestamp":1715673600000,"appName":"Box","description":"crash test 500000"}` + "\n"))
	total := int64(len(want)) * lineBytes
	args := bigArgs(dir, "--page-size", strconv.Itoa(pageSize))
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("kill points drawn with seed %d", seed)

	var kills, tornAtKill, midBatch int
	for at := int64(0); kills < 3 || tornAtKill == 0; kills++ {
		// Somewhere in the next few hundredths of the file.
		if at = at + total/50 + rng.Int64N(total/20); at > total*95/100 || kills == 10 {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd, stderr, done := startBin(ctx, t, args...)
		waitForSize(t, out, at, done)
		if kills > 0 {
			// Once past the point, kill while a line is being written: a
			// batch spends most of its time being synced and recorded,
			// with whole lines in the file.
			awaitTornTail(t, out, done)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-done
		cancel()
		if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("run %d was not killed: %v\n%s", kills, cmd.ProcessState, stderr.String())
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		torn := len(data) > 0 && data[len(data)-1] != '\n'
		mid := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
		// The run died: stopped, not running (issue 28), and status says how.
		if mid.State != "stopped" || !mid.Interrupted || mid.RunActive || mid.InFlight > pageSize {
			t.Fatalf("status after kill %d: %+v", kills, mid)
		}
		t.Logf("kill %d at byte %d: %d sent, %d in flight, torn line: %v", kills, len(data), mid.Sent, mid.InFlight, torn)
		if torn {
			tornAtKill++
		}
		if mid.InFlight > 0 {
			midBatch++
		}
	}
	if kills < 3 || tornAtKill == 0 {
		t.Fatalf("%d kills, %d of them tearing a line: the test needs three, one tearing", kills, tornAtKill)
	}

	r := runBin(t, dir, nil, args...)
	wantCode(t, r, 0)
	counts, torn := deliveredIDs(t, out)
	missing, dups := tally(counts, want)
	end := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
	t.Logf("%d kills (%d mid-batch, %d tearing a line): %d activities twice, %d counted as sent again, %d torn lines",
		kills, midBatch, tornAtKill, dups, end.Resent, torn)
	if missing != 0 || dups != 0 || torn != 0 || len(counts) != len(want) || end.Resent != 0 {
		t.Fatalf("%d of %d activities missing, %d twice, %d torn lines, %d counted as sent again: want each once, in whole lines",
			missing, len(want), dups, torn, end.Resent)
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
	wantStderr(t, r, "--max-duration 300ms reached", "Stopped before the end date: stopped at 2024-05-14T08:00:", " of the export) with ",
		"% of the window done (", "progress is saved; re-run the same command to resume")
	mid := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
	if mid.Sent == 0 || mid.Sent >= int64(len(want)) || mid.Percent >= 100 || mid.State != "stopped" || mid.InFlight != 0 {
		t.Fatalf("status after the stop: %+v", mid)
	}
	// The stop message and status tell the same percent and position.
	said := regexp.MustCompile(`stopped at (.+) with (\d+\.\d)% of the window done \((\d+) sent in all\)`).FindStringSubmatch(r.stderr)
	if said == nil || said[1] != mid.Position || said[2] != fmt.Sprintf("%.1f", mid.Percent) || said[3] != strconv.FormatInt(mid.Sent, 10) {
		t.Fatalf("the stop message says %q; status says %s, %.1f%%, %d sent", said, mid.Position, mid.Percent, mid.Sent)
	}
	// For a scheduler that takes only 0 for success (a Kubernetes Job), a
	// planned stop can exit 0; it is still a stop, and says so.
	r = runBin(t, dir, nil, bigArgs(dir, "--max-duration", "1ns", "--page-size", "1000", "--stopped-exit-code", "0")...)
	wantCode(t, r, 0)
	wantStderr(t, r, "Stopped before the end date: stopped at "+mid.Position+" with "+fmt.Sprintf("%.1f", mid.Percent)+"% of the window done")
	if s := statusJSON(t, dir, filepath.Join(dir, "cp.db")); s.Sent != mid.Sent || s.Percent >= 100 {
		t.Fatalf("status after a stop that exits 0: %+v", s)
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
	cmd, stderr, done := startBin(ctx, t, bigArgs(dir, "--page-size", "1000")...)
	waitForSize(t, filepath.Join(dir, "out.jsonl"), 1, done)
	cmd.Process.Signal(syscall.SIGTERM)
	<-done
	if code := cmd.ProcessState.ExitCode(); code != exitStopped {
		t.Fatalf("exit code %d after SIGTERM, want 75\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "Stopped before the end date: ") || !strings.Contains(stderr.String(), "reason=\"SIGTERM received\"") {
		t.Fatalf("stderr: %s", stderr.String())
	}
	st := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
	if st.Sent >= int64(len(want)) || st.RunActive || st.State != "stopped" {
		t.Fatalf("status after SIGTERM: %+v", st)
	}
}

// fifoReceiver reads a named pipe the way a syslog receiver reads its
// connections: each writer's stream ends at a line boundary (a line torn by
// the writer's death is ended there), and reading can be paused to hold a
// writer blocked in the middle of a batch.
type fifoReceiver struct {
	path   string
	out    bytes.Buffer
	paused chan struct{} // closed once pauseAt bytes were read
	resume chan struct{} // close to read on
	ended  chan struct{} // one value as each writer's stream ends
	done   chan error
}

// readOnAfterKill lets the receiver read on, after the writer it held was
// killed, and returns once it has read that writer's stream to its end. A
// writer that opened the pipe before that would join the dead writer's
// stream, and the receiver would wait for it forever.
func (f *fifoReceiver) readOnAfterKill() {
	close(f.resume)
	<-f.ended
}

// wait returns once every writer's stream has ended, failing the test if
// that takes longer than a minute.
func (f *fifoReceiver) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-f.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("the receiver of %s still waits for a writer", f.path)
	}
}

func startFIFOReceiver(t *testing.T, path string, pauseAt int, writers int) *fifoReceiver {
	t.Helper()
	mkfifo(t, path)
	f := &fifoReceiver{path: path, paused: make(chan struct{}), resume: make(chan struct{}),
		ended: make(chan struct{}, writers), done: make(chan error, 1)}
	go func() {
		buf := make([]byte, 32<<10)
		pausing := true
		for range writers {
			r, err := os.Open(path) // blocks until a writer opens it
			if err != nil {
				f.done <- err
				return
			}
			for {
				want := len(buf)
				if pausing && f.out.Len() < pauseAt {
					want = min(want, pauseAt-f.out.Len())
				}
				n, err := r.Read(buf[:want])
				f.out.Write(buf[:n])
				if pausing && f.out.Len() >= pauseAt {
					pausing = false
					close(f.paused)
					<-f.resume
				}
				if err != nil { // io.EOF: the writer is gone
					break
				}
			}
			r.Close()
			if b := f.out.Bytes(); len(b) > 0 && b[len(b)-1] != '\n' {
				f.out.WriteByte('\n')
			}
			f.ended <- struct{}{}
		}
		f.done <- nil
	}()
	return f
}

// TestKill9MidBatchResendsOnePage kills the binary while it is blocked in
// the middle of sending a page (its receiver stopped reading), so the kill
// certainly leaves a batch unconfirmed: the next run must report it, send
// it again, and lose nothing.
func TestKill9MidBatchResendsOnePage(t *testing.T) {
	t.Parallel()
	const n, pageSize = 200_000, 5000
	dir := t.TempDir()
	want := writeBigExport(t, filepath.Join(dir, "big.jsonl"), n)
	fifo := filepath.Join(dir, "siem.fifo")
	lineBytes := len(`{"_id":"c0000000","timestamp":1715673600000,"appName":"Box","description":"crash test 100000"}` + "\n")
	recv := startFIFOReceiver(t, fifo, len(want)/2*lineBytes+lineBytes/2, 2)
	args := []string{"run", "--start", strconv.FormatInt(bigStart, 10), "--end", strconv.FormatInt(bigEnd, 10),
		"--source", "file:" + filepath.Join(dir, "big.jsonl"), "--format", "json", "--sink", "file:" + fifo,
		"--checkpoint", filepath.Join(dir, "cp.db"), "--page-size", strconv.Itoa(pageSize)}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, _, done := startBin(ctx, t, args...)
	select {
	case <-recv.paused:
	case <-ctx.Done():
		t.Fatal("the receiver never got half the window")
	}
	// The binary now blocks writing the rest of its page into the full pipe.
	mid := awaitStatus(ctx, t, dir, filepath.Join(dir, "cp.db"), func(s statusReport) bool { return s.InFlight > 0 })
	// status tells the truth during the run: a run holds the checkpoint,
	// half the window is confirmed, one page is in flight.
	if mid.State != "running" || !mid.RunActive || mid.Sent == 0 || mid.Sent >= int64(len(want)) || mid.Percent >= 100 {
		t.Fatalf("status during the run: %+v", mid)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	recv.readOnAfterKill()

	r := runBin(t, dir, nil, args...)
	wantCode(t, r, 0)
	wantStderr(t, r, "the previous run stopped before the sink confirmed its last batch; that batch is sent again",
		fmt.Sprintf("activities=%d", mid.InFlight))
	recv.wait(t)
	out := filepath.Join(dir, "received.jsonl")
	if err := os.WriteFile(out, recv.out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	counts, torn := deliveredIDs(t, out)
	dups := noneLost(t, counts, want)
	end := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
	t.Logf("killed with %d in flight: %d re-sent, %d torn lines", mid.InFlight, dups, torn)
	if mid.InFlight != pageSize || dups == 0 || dups > pageSize || end.Resent != pageSize || torn > 1 || end.Sent != int64(len(want)) {
		t.Fatalf("in flight %d, re-sent %d, reported %d, torn %d, sent %d", mid.InFlight, dups, end.Resent, torn, end.Sent)
	}
}
