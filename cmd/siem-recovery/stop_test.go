package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"siem-recovery/recovery/mcas/mcastest"
)

// Planned stops (--max-duration, SIGINT, SIGTERM, SIGHUP) over TCP: the
// batch the receiver is reading when the stop comes is finished, nothing is
// sent after it, and the resumed run sends nothing twice.

// streamReceiver is a syslog receiver over TCP as rsyslog behaves towards
// the sink: it reads each connection to its end, then closes it. It keeps
// every complete line. It can read slowly (bytesPerSecond), and it can hold
// a connection once it has read holdAt lines in all, until release is
// called.
type streamReceiver struct {
	addr string

	mu    sync.Mutex
	lines []string
	total int // lines read, complete or not

	limiter *rate.Limiter // nil: as fast as it comes
	holdAt  int           // 0: never
	held    chan struct{} // closed when holding
	resume  chan struct{} // closed by release
}

func startStreamReceiver(t *testing.T, bytesPerSecond, holdAt int) *streamReceiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	r := &streamReceiver{addr: l.Addr().String(), holdAt: holdAt, held: make(chan struct{}), resume: make(chan struct{})}
	if bytesPerSecond > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(bytesPerSecond), 64<<10)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.read(c) // one connection at a time, as the sink opens them
		}
	}()
	return r
}

func (r *streamReceiver) read(c net.Conn) {
	defer c.Close()
	var data []byte
	buf := make([]byte, 32<<10)
	for {
		if r.limiter != nil {
			r.limiter.WaitN(context.Background(), len(buf))
		}
		n, err := c.Read(buf)
		data = append(data, buf[:n]...)
		r.mu.Lock()
		before := r.total
		r.total += bytes.Count(buf[:n], []byte("\n"))
		hold := r.holdAt > 0 && before < r.holdAt && r.total >= r.holdAt
		r.mu.Unlock()
		if hold {
			close(r.held)
			<-r.resume
		}
		if err != nil { // io.EOF: the sender's FIN; or the sender is gone
			break
		}
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		r.mu.Lock()
		r.lines = append(r.lines, strings.Split(string(data[:i]), "\n")...)
		r.mu.Unlock()
	}
}

func (r *streamReceiver) release() { close(r.resume) }

// ids returns how often each activity id arrived, in the order of first
// arrival.
func (r *streamReceiver) ids(t *testing.T) (order []string, counts map[string]int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	counts = map[string]int{}
	for _, line := range r.lines {
		m := externalID.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("not a CEF line: %q", line)
		}
		if counts[m[1]]++; counts[m[1]] == 1 {
			order = append(order, m[1])
		}
	}
	return order, counts
}

// syncBuffer is a bytes.Buffer a test may read while the process writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// awaitOutput polls out until it contains want, or fails the test when the
// process ends or ctx does first.
func awaitOutput(ctx context.Context, t *testing.T, out *syncBuffer, want string, exited <-chan struct{}) {
	t.Helper()
	for !strings.Contains(out.String(), want) {
		select {
		case <-exited:
			if strings.Contains(out.String(), want) {
				return
			}
			t.Fatalf("the run ended without printing %q:\n%s", want, out.String())
		case <-ctx.Done():
			t.Fatalf("the run never printed %q:\n%s", want, out.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// tally counts the ids of want that never arrived, and the copies beyond
// the first of those that arrived more than once.
func tally(counts map[string]int, want map[string]bool) (missing, dups int) {
	for id := range want {
		switch c := counts[id]; {
		case c == 0:
			missing++
		case c > 1:
			dups += c - 1
		}
	}
	return missing, dups
}

// noneLost fails if an id of want never arrived, and returns how many
// arrived again after their first time.
func noneLost(t *testing.T, counts map[string]int, want map[string]bool) (dups int) {
	t.Helper()
	for id := range want {
		if counts[id] == 0 {
			t.Fatalf("%s was lost", id)
		}
		dups += counts[id] - 1
	}
	return dups
}

// stopArgs runs the big export (see crash_test.go) into the receiver as
// CEF over TCP, 5000 activities a batch.
func stopArgs(dir, addr string, extra ...string) []string {
	return append([]string{"run",
		"--start", strconv.FormatInt(bigStart, 10), "--end", strconv.FormatInt(bigEnd, 10),
		"--source", "file:" + filepath.Join(dir, "big.jsonl"), "--sink", "tcp://" + addr,
		"--checkpoint", filepath.Join(dir, "cp.db"), "--page-size", "5000",
	}, extra...)
}

// checkAllOnce fails unless every id of want arrived exactly once.
func checkAllOnce(t *testing.T, counts map[string]int, want map[string]bool) {
	t.Helper()
	missing, dups := tally(counts, want)
	if missing != 0 || dups != 0 || len(counts) != len(want) {
		t.Fatalf("%d of %d activities missing, %d sent twice, %d distinct ids received", missing, len(want), dups, len(counts))
	}
}

// TestSignalLetsTheBatchInFlightFinish holds the receiver in the middle of
// the second batch, stops the run with each stop signal, and lets the
// receiver read on: the run confirms that batch, fetches and sends nothing
// more, exits 75 with the stop recorded (status says stopped, nothing in
// flight), and the next run delivers the rest: every activity exactly
// once, nothing counted as sent again.
func TestSignalLetsTheBatchInFlightFinish(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(signalName(sig), func(t *testing.T) {
			dir := t.TempDir()
			want := writeBigExport(t, filepath.Join(dir, "big.jsonl"), 20_000)
			recv := startStreamReceiver(t, 0, 7500) // in the middle of the second batch
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd, stderr, exited := startBin(ctx, t, stopArgs(dir, recv.addr)...)
			select {
			case <-recv.held:
			case <-exited:
				t.Fatalf("the run ended before the receiver held a batch:\n%s", stderr.String())
			}
			cmd.Process.Signal(sig)
			awaitOutput(ctx, t, stderr, "stopping: no new page is fetched", exited)
			recv.release()
			<-exited
			if code := cmd.ProcessState.ExitCode(); code != exitStopped {
				t.Fatalf("exit code %d, want 75\n%s", code, stderr.String())
			}
			for _, w := range []string{`reason="` + signalName(sig) + ` received"`, "Stopped before the end date: stopped at 2024-05-14T08:00:"} {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			order, _ := recv.ids(t)
			mid := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
			if len(order) != 10_000 || mid.Sent != 10_000 || mid.InFlight != 0 || mid.State != "stopped" || mid.SentAgain != 0 {
				t.Fatalf("after the stop: %d ids received, status %+v; want the two batches confirmed and nothing in flight", len(order), mid)
			}

			r := runBin(t, dir, nil, stopArgs(dir, recv.addr)...)
			wantCode(t, r, 0)
			_, counts := recv.ids(t)
			checkAllOnce(t, counts, want)
			if end := statusJSON(t, dir, filepath.Join(dir, "cp.db")); end.SentAgain != 0 || end.Sent != int64(len(want)) || end.State != "completed" {
				t.Fatalf("final status %+v", end)
			}
		})
	}
}

// TestNohupKeepsSIGHUPIgnored: under nohup (SIGHUP ignored from the start)
// the run leaves SIGHUP ignored, as the runbook promises, and a SIGHUP does
// not stop it; SIGTERM is still caught.
func TestNohupKeepsSIGHUPIgnored(t *testing.T) {
	nohup, err := exec.LookPath("nohup")
	if err != nil {
		t.Skip("no nohup on this system")
	}
	dir := t.TempDir()
	want := writeBigExport(t, filepath.Join(dir, "big.jsonl"), 20_000)
	recv := startStreamReceiver(t, 0, 7500)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nohup, append([]string{binary}, stopArgs(dir, recv.addr)...)...)
	cmd.Env = cleanEnv()
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	select {
	case <-recv.held: // the run is in its replay loop: its handlers are set
	case <-exited:
		t.Fatalf("the run ended before the receiver held a batch:\n%s", stderr.String())
	}
	ignored, caught := signalMasks(t, cmd.Process.Pid)
	if ignored&(1<<(syscall.SIGHUP-1)) == 0 || caught&(1<<(syscall.SIGTERM-1)) == 0 {
		t.Fatalf("SigIgn %x, SigCgt %x: want SIGHUP ignored and SIGTERM caught", ignored, caught)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	recv.release()
	<-exited
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGHUP under nohup, want 0\n%s", code, stderr.String())
	}
	_, counts := recv.ids(t)
	checkAllOnce(t, counts, want)
}

// signalMasks reads a process's ignored and caught signals from /proc.
func signalMasks(t *testing.T, pid int) (ignored, caught uint64) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "SigIgn:\t"); ok {
			ignored, _ = strconv.ParseUint(v, 16, 64)
		}
		if v, ok := strings.CutPrefix(line, "SigCgt:\t"); ok {
			caught, _ = strconv.ParseUint(v, 16, 64)
		}
	}
	return ignored, caught
}

// TestSecondSignalCutsTheBatch: a second signal does not wait for the batch
// in flight; it stays in flight in the checkpoint, and the next run sends
// it again, counted.
func TestSecondSignalCutsTheBatch(t *testing.T) {
	dir := t.TempDir()
	want := writeBigExport(t, filepath.Join(dir, "big.jsonl"), 20_000)
	recv := startStreamReceiver(t, 0, 7500)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, stderr, exited := startBin(ctx, t, stopArgs(dir, recv.addr)...)
	<-recv.held
	cmd.Process.Signal(syscall.SIGTERM)
	awaitOutput(ctx, t, stderr, "stopping: no new page is fetched", exited)
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	recv.release()
	if code := cmd.ProcessState.ExitCode(); code != exitStopped {
		t.Fatalf("exit code %d, want 75\n%s", code, stderr.String())
	}
	for _, w := range []string{"stopping at once: the batch in flight is cut",
		"stopped before the sink confirmed the batch in flight; the next run sends it again", "activities=5000"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
		}
	}
	if mid := statusJSON(t, dir, filepath.Join(dir, "cp.db")); mid.Sent != 5000 || mid.InFlight != 5000 || mid.State != "stopped" {
		t.Fatalf("after the cut: %+v", mid)
	}
	r := runBin(t, dir, nil, stopArgs(dir, recv.addr)...)
	wantCode(t, r, 0)
	wantStderr(t, r, "the previous run stopped before the sink confirmed its last batch; that batch is sent again", "activities=5000")
	_, counts := recv.ids(t)
	dups := noneLost(t, counts, want)
	if end := statusJSON(t, dir, filepath.Join(dir, "cp.db")); end.SentAgain != 5000 || dups > 5000 {
		t.Fatalf("%d duplicates, status %+v: the cut batch must be sent again and counted", dups, end)
	}
}

// TestMaxDurationSlotsResendNothing is the trial: a receiver that
// reads 5,000 lines in about 0.3 s, and --max-duration slots that end in
// the middle of batches, one after the other until the window is done.
// Every activity arrives exactly once; nothing is counted as sent again.
func TestMaxDurationSlotsResendNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := writeBigExport(t, filepath.Join(dir, "big.jsonl"), 40_304)
	recv := startStreamReceiver(t, 5000*480*10/3, 0) // lines of about 480 bytes
	var codes []int
	for slot := 0; ; slot++ {
		if slot == 100 {
			t.Fatalf("100 slots did not finish the window; exit codes %v", codes)
		}
		r := runBin(t, dir, nil, stopArgs(dir, recv.addr, "--max-duration", "700ms")...)
		codes = append(codes, r.code)
		if r.code == 0 {
			break
		}
		wantCode(t, r, exitStopped)
	}
	_, counts := recv.ids(t)
	checkAllOnce(t, counts, want)
	end := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
	t.Logf("%d slots: exit codes %v; status %+v", len(codes), codes, end)
	if end.SentAgain != 0 || end.State != "completed" || end.Sent != int64(len(want)) {
		t.Fatalf("final status %+v", end)
	}
}

// Stops while the API is being asked, before any page (issue 22): the
// first count of a run, with answers of 20 s, or the run's first request
// being retried on 503s. The stop cuts the request or the wait at once, no
// request starts after it, and the run exits 75 with the stop recorded,
// where it went on counting, balancing or retrying for minutes.

// apiStopArgs runs srv's window in lanes sized from its answer time (the
// balancing rounds are what started after the signal), its files in dir
// named by absolute paths (startBin runs it where the test runs).
func apiStopArgs(t *testing.T, srv *mcastest.Server, extra ...string) (dir string, args []string) {
	t.Helper()
	a := newAPIRun(t, srv, srv.Token())
	args = append([]string(nil), a.args...)
	for flag, value := range map[string]string{"--parallel": "auto", "--token-file": filepath.Join(a.dir, "token.txt"),
		"--checkpoint": filepath.Join(a.dir, "cp.db"), "--sink": "file:" + filepath.Join(a.dir, "out.jsonl")} {
		args[slices.Index(args, flag)+1] = value
	}
	return a.dir, append(args, extra...)
}

// requestsAfter counts the requests srv received after t.
func requestsAfter(srv *mcastest.Server, t time.Time) int {
	n := 0
	for _, r := range srv.Requests() {
		if r.At.After(t) {
			n++
		}
	}
	return n
}

// awaitRequests waits until srv has received n requests, or fails the
// test when the run ends or ctx does first.
func awaitRequests(ctx context.Context, t *testing.T, srv *mcastest.Server, n int, stderr *syncBuffer, exited <-chan struct{}) {
	t.Helper()
	for srv.Stats().Requests < n {
		select {
		case <-exited:
			t.Fatalf("the run ended before %d requests:\n%s", n, stderr.String())
		case <-ctx.Done():
			t.Fatalf("no %d requests:\n%s", n, stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestSignalStopsTheCountAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		opts mcastest.Options
		// wait is how many requests to await before the signal.
		wait int
	}{
		// The count, answered in 20 s.
		{"SIGTERM-during-count", syscall.SIGTERM, mcastest.Options{AnswerTime: 20 * time.Second}, 1},
		// The count answered 503 every time, retried after 1 s, 2 s, 4 s…
		{"SIGINT-during-retries", syscall.SIGINT, mcastest.Options{}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Activities = mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 3000})
			srv := mcastest.New(t, tc.opts)
			if tc.wait > 1 {
				srv.FailEvery(1, mcastest.Fault{Status: 503})
			}
			// Pages of 500: six of them, which three lanes read, balanced
			// by two more counts.
			dir, args := apiStopArgs(t, srv, "--max-critical-errors", "100", "--page-size", "500")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd, stderr, exited := startBin(ctx, t, args...)
			awaitRequests(ctx, t, srv, tc.wait, stderr, exited)
			signalled := time.Now()
			cmd.Process.Signal(tc.sig)
			<-exited
			if code := cmd.ProcessState.ExitCode(); code != exitStopped {
				t.Fatalf("exit code %d, want 75\n%s", code, stderr.String())
			}
			wantStderr(t, result{stderr: stderr.String()}, `reason="`+signalName(tc.sig)+` received"`)
			golden(t, "api/stop-"+tc.name+"/stderr", strings.ReplaceAll(normalize(lastLine(stderr.String()), hostPort(srv.URL)), dir, "DIR"))
			if n := requestsAfter(srv, signalled); n != 0 {
				t.Errorf("%d requests reached the API after the signal (%d in all)\n%s", n, srv.Stats().Requests, stderr.String())
			}
			if st := statusJSON(t, dir, "cp.db"); st.State != "stopped" || st.Sent != 0 {
				t.Errorf("status %+v, want stopped with nothing sent", st)
			}
		})
	}
}

func TestMaxDurationEndsTheRetriesOfTheFirstRequest(t *testing.T) {
	t.Parallel()
	// The API answers 503 to everything: the run's first request is
	// retried after about 1 s, 3 s, 7 s, … (±20 %) until
	// --max-critical-errors (6: half a minute) would end it;
	// --max-duration 2s ends it first, between two requests, and no
	// request follows the stop the run logs.
	srv := mcastest.New(t, mcastest.Options{Activities: mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 3000})})
	srv.FailEvery(1, mcastest.Fault{Status: 503})
	dir, args := apiStopArgs(t, srv, "--max-critical-errors", "6", "--max-duration", "2s")
	r := runBin(t, dir, nil, args...)
	wantCode(t, r, exitStopped)
	wantStderr(t, r, `reason="--max-duration 2s reached"`)
	golden(t, "api/stop-max-duration-during-retries/stderr", strings.ReplaceAll(normalize(lastLine(r.stderr), hostPort(srv.URL)), dir, "DIR"))
	stopped := loggedAt(t, r.stderr, `msg="stopping: no new page is fetched`)
	if n := requestsAfter(srv, stopped); n != 0 {
		t.Errorf("%d requests reached the API after the stop at %s (%d in all)\n%s", n, stopped.Format(time.RFC3339Nano), srv.Stats().Requests, r.stderr)
	}
	if st := statusJSON(t, dir, "cp.db"); st.State != "stopped" || st.Sent != 0 {
		t.Errorf("status %+v, want stopped with nothing sent", st)
	}
}

// loggedAt is the time of the first log line of stderr that holds msg.
func loggedAt(t *testing.T, stderr, msg string) time.Time {
	t.Helper()
	for line := range strings.Lines(stderr) {
		if !strings.Contains(line, msg) {
			continue
		}
		stamp, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		return at
	}
	t.Fatalf("no log line holds %q:\n%s", msg, stderr)
	return time.Time{}
}
