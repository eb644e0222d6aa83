package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"siem-recovery/recovery"
	"siem-recovery/sink/rsyslogtest"
)

// terminalRun is the binary running with its stderr on a
// pseudo-terminal, as an operator would run it, with what it drew so far.
type terminalRun struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	screen strings.Builder
	grew   chan struct{} // closed and replaced each time screen grows
	done   chan struct{} // closed once the terminal is closed
}

func startOnTerminal(ctx context.Context, t *testing.T, dir string, args ...string) *terminalRun {
	t.Helper()
	r := &terminalRun{cmd: exec.CommandContext(ctx, binary, args...), grew: make(chan struct{}), done: make(chan struct{})}
	// Only stderr, where the bar and the logs go, is the terminal's.
	r.cmd.Dir, r.cmd.Env, r.cmd.Stdout = dir, cleanEnv(), io.Discard
	tty, err := pty.StartWithSize(r.cmd, &pty.Winsize{Rows: 24, Cols: 160})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(r.done)
		defer tty.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := tty.Read(buf)
			r.mu.Lock()
			r.screen.Write(buf[:n])
			close(r.grew)
			r.grew = make(chan struct{})
			r.mu.Unlock()
			if err != nil { // EIO once the binary exits and the pty closes
				if !errors.Is(err, syscall.EIO) && !errors.Is(err, io.EOF) {
					t.Error(err)
				}
				return
			}
		}
	}()
	return r
}

// await waits until what was drawn matches re, and returns the match.
func (r *terminalRun) await(ctx context.Context, t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	for {
		r.mu.Lock()
		m, grew := re.FindStringSubmatch(r.screen.String()), r.grew
		r.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-grew:
		case <-r.done:
			t.Fatalf("the run ended without drawing %v:\n%s", re, r.output())
		case <-ctx.Done():
			t.Fatalf("the terminal never showed %v:\n%s", re, r.output())
		}
	}
}

// wait waits for the run to end and returns everything it drew.
func (r *terminalRun) wait(t *testing.T) string {
	t.Helper()
	<-r.done
	if err := r.cmd.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, r.output())
	}
	return r.output()
}

func (r *terminalRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.screen.String()
}

// screenLines is what a terminal shows after out: a carriage return goes
// back to the start of the line, and what follows overwrites it.
func screenLines(out string) []string {
	var lines []string
	var line []rune
	col := 0
	for _, r := range out {
		switch r {
		case '\r':
			col = 0
		case '\n':
			lines = append(lines, strings.TrimRight(string(line), " "))
			line, col = line[:0], 0
		default:
			if col < len(line) {
				line[col] = r
			} else {
				line = append(line, r)
			}
			col++
		}
	}
	return append(lines, strings.TrimRight(string(line), " "))
}

// frame is one drawing of the bar.
type frame struct {
	percent      float64
	done         []string // the submatches of the detail
	waitingSince string   // "15:04:05" while the SIEM is away
	waited       int      // seconds
}

// barFrames returns every drawing of the bar in out, checking each is a
// well-formed bar whose words after the blocks match detail (if any):
// its percent and its blocks agree, and the percent never goes back.
func barFrames(t *testing.T, out, verb, detail string) []frame {
	t.Helper()
	re := regexp.MustCompile(`^` + verb + ` +(\d+\.\d)% \[([█░]{20})\](?: ` + detail + `)?` +
		` · (?:waiting for the SIEM since (?P<since>\d\d:\d\d:\d\d) \((?P<waited>\d+)s\) · )?(\d+m)?\d+s elapsed( · (\d+[hm])?\d+[ms] left)?$`)
	var frames []frame
	last := -1.0
	for _, f := range strings.FieldsFunc(out, func(r rune) bool { return r == '\r' || r == '\n' }) {
		f = strings.TrimRight(f, " ")
		if !strings.HasPrefix(f, verb+" ") {
			continue
		}
		m := re.FindStringSubmatch(f)
		if m == nil {
			t.Fatalf("not a %q bar: %q", verb, f)
		}
		fr := frame{done: m[3:re.SubexpIndex("since")], waitingSince: m[re.SubexpIndex("since")]}
		fr.percent, _ = strconv.ParseFloat(m[1], 64)
		fr.waited, _ = strconv.Atoi(m[re.SubexpIndex("waited")])
		if blocks := strings.Count(m[2], "█"); blocks != int(fr.percent/5) || fr.percent < last {
			t.Fatalf("bar %q: %d blocks for %.1f%%, after %.1f%%", f, blocks, fr.percent, last)
		}
		last = fr.percent
		frames = append(frames, fr)
	}
	return frames
}

// wantLogLinesApart checks that each log line stands on a line of its own
// on the screen, never run into the bar.
func wantLogLinesApart(t *testing.T, out string, want ...string) {
	t.Helper()
	var logs []string
	for _, l := range screenLines(out) {
		if l == "" || strings.HasPrefix(l, "Stopped") {
			continue
		}
		if !strings.HasPrefix(l, "time=") || strings.Count(l, "level=") != 1 {
			t.Fatalf("a log line runs into the bar on the screen:\n%q\nwhole output:\n%s", l, out)
		}
		logs = append(logs, l)
	}
	for _, w := range want {
		if !strings.Contains(strings.Join(logs, "\n"), w) {
			t.Fatalf("no log line with %q on the screen:\n%s", w, strings.Join(logs, "\n"))
		}
	}
}

// TestProgressBarOnTerminal runs the binary with its stderr on a
// pseudo-terminal, as an operator would, and checks every drawing of the
// bar: the percent (of the window: an export has no count), the blocks,
// what was sent, the rate and the clock; and that the log lines stand
// apart from it. The receiver holds each of the 100 batches 10 ms before
// confirming it, so that the run lasts.
func TestProgressBarOnTerminal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBigExport(t, filepath.Join(dir, "big.jsonl"), 200_000)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	recv := slowReceiver(t, 10*time.Millisecond)
	out := startOnTerminal(ctx, t, dir, bigArgs(dir, "--page-size", "2000", "--sink", "tcp://"+recv)...).wait(t)
	frames := barFrames(t, out, "recovering", `(\d+) sent · (\d+)/s`)
	if len(frames) < 2 {
		t.Fatalf("%d drawings of the bar:\n%s", len(frames), out)
	}
	sent := 0
	for _, f := range frames[1:] { // the first may come before any page
		n, _ := strconv.Atoi(f.done[0])
		if n < sent || n > 198_000 || n%2000 != 0 || f.waitingSince != "" {
			t.Fatalf("the bar says %d sent after %d (%+v)", n, sent, f)
		}
		sent = n
	}
	wantLogLinesApart(t, out, "msg=recovering ", `msg="window recovered: checkpoint completed and disabled" sent=198000`, "msg=completed sent_this_run=198000")
}

// TestProgressWhileTheSIEMIsDown: while the receiver is down the bar's
// clock runs on and it says since when the run has been waiting for the
// SIEM; the sink's log line stands apart; once rsyslog is back the run
// delivers everything.
func TestProgressWhileTheSIEMIsDown(t *testing.T) {
	t.Parallel()
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TCP})
	srv.Stop()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := startOnTerminal(ctx, t, dir, exampleArgs(t, dir, "--sink", "tcp://"+srv.Addr)...)
	since := `waiting for the SIEM since (\d\d:\d\d:\d\d) \((\d+)s\)`
	first := run.await(ctx, t, regexp.MustCompile(since))
	// The clock is not frozen: a later drawing counts on from the same start.
	run.await(ctx, t, regexp.MustCompile(`waiting for the SIEM since `+first[1]+` \(([2-9]|\d\d+)s\)`))
	srv.Restart()
	out := run.wait(t)
	var waits []frame
	for _, f := range barFrames(t, out, "recovering", `(\d+) sent · \d+/s`) {
		if f.waitingSince != "" {
			waits = append(waits, f)
		}
	}
	if len(waits) < 3 || waits[0].waitingSince != first[1] || waits[len(waits)-1].waitingSince != first[1] || waits[len(waits)-1].waited < 2 {
		t.Fatalf("the waiting bar was drawn %d times: %+v\n%s", len(waits), waits, out)
	}
	wantLogLinesApart(t, out, "Data server connection error: cannot connect to tcp://"+srv.Addr, "msg=completed sent_this_run=102")
	if got := len(srv.Lines()); got != 102 {
		t.Fatalf("rsyslog got %d activities, want 102", got)
	}
}

// TestProgressOfDryRunAndVerify: a dry run and verify that read a whole
// export draw a bar while they work.
func TestProgressOfDryRunAndVerify(t *testing.T) {
	dir := t.TempDir()
	writeBigExport(t, filepath.Join(dir, "big.jsonl"), 200_000)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := startOnTerminal(ctx, t, dir, bigArgs(dir, "--dry-run", "--page-size", "1000")...).wait(t)
	if frames := barFrames(t, out, "counting", `(\d+) activities`); len(frames) == 0 || frames[len(frames)-1].percent > 100 {
		t.Fatalf("the dry run drew no bar:\n%s", out)
	}
	wantLogLinesApart(t, out, `msg="dry run: nothing sent, no checkpoint written" window="[2024-05-14T08:00:00.000Z, 2024-05-14T09:00:00.000Z)" activities=198000 api_requests=0`)

	writeFile(t, dir, "none.txt", "")
	verify := []string{"verify", "--start", strconv.FormatInt(bigStart, 10), "--end", strconv.FormatInt(bigEnd, 10),
		"--source", "file:big.jsonl", "--received", "none.txt", "--page-size", "1000"}
	run := startOnTerminal(ctx, t, dir, verify...)
	<-run.done
	out = run.output()
	if frames := barFrames(t, out, "verifying", `(\d+) activities`); len(frames) == 0 {
		t.Fatalf("verify drew no bar:\n%s", out)
	}
	if err := run.cmd.Wait(); err == nil || run.cmd.ProcessState.ExitCode() != exitMissing {
		t.Fatalf("verify against an empty SIEM: %v", err)
	}
}

// TestProgressLogWithoutTerminal: with stderr on a pipe there is no bar,
// and progress comes as log lines.
func TestProgressLogWithoutTerminal(t *testing.T) {
	dir := t.TempDir()
	writeBigExport(t, filepath.Join(dir, "big.jsonl"), 100_000)
	r := runBin(t, dir, nil, bigArgs(dir, "--page-size", "1000", "--progress-interval", "1ns")...)
	wantCode(t, r, 0)
	if strings.Contains(r.stderr, "█") || strings.Contains(r.stderr, "\r") {
		t.Fatalf("a bar was drawn on a pipe:\n%.2000s", r.stderr)
	}
	wantStderr(t, r, "level=INFO msg=progress percent=", "sent=1000 ")
	json := runBin(t, dir, nil, "run", "--start", "2015-01-01T00:00:00Z", "--end", "2015-01-01T00:00:01Z", "--source", "file:big.jsonl", "--checkpoint", "j.db", "--log-format", "json")
	wantCode(t, json, 0)
	wantStderr(t, json, `"level":"INFO","msg":"completed"`)
}

// slowReceiver accepts syslog TCP connections on 127.0.0.1, reads each to
// its end, and closes it only after hold: a SIEM that takes its time to
// confirm. It returns the address.
func slowReceiver(t *testing.T, hold time.Duration) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c)
				time.Sleep(hold)
			}()
		}
	}()
	return l.Addr().String()
}

// TestBarClearsItsRowsWhenTheTerminalNarrows: once the terminal narrows
// below the bar drawn, a terminal that reflows has wrapped that bar over
// several rows; the next drawing (or a log line) clears them all, bottom
// up, instead of leaving fragments above the new bar (issue 28). A bar
// that still fits is redrawn in place as before.
func TestBarClearsItsRowsWhenTheTerminalNarrows(t *testing.T) {
	var out strings.Builder
	cols := 100
	c := &console{w: &out, tty: true, vt: true, width: func() (int, error) { return cols, nil }}
	c.show(strings.Repeat("a", 90))
	cols = 120 // wider: in place
	c.show(strings.Repeat("b", 90))
	if got, want := out.String(), "\r"+strings.Repeat("a", 90)+"\r"+strings.Repeat("b", 90); got != want {
		t.Fatalf("drawn %q, want %q", got, want)
	}
	out.Reset()
	cols = 40 // the 90 columns now take 3 rows
	c.show(strings.Repeat("c", 90))
	if got, want := out.String(), "\r\x1b[K\x1b[1A\x1b[K\x1b[1A\x1b[K"+"\r"+strings.Repeat("c", 39); got != want {
		t.Fatalf("after narrowing, drawn %q, want %q", got, want)
	}
	out.Reset()
	cols = 20 // narrower again, then a log line
	c.Write([]byte("level=INFO msg=x\n"))
	if got, want := out.String(), "\r\x1b[K\x1b[1A\x1b[K"+"level=INFO msg=x\n"+"\r"+strings.Repeat("c", 19); got != want {
		t.Fatalf("a log line after narrowing: %q, want %q", got, want)
	}
	// Windows' console: no escape sequences, as before.
	out.Reset()
	w := &console{w: &out, tty: true, width: func() (int, error) { return cols, nil }}
	cols = 100
	w.show(strings.Repeat("d", 90))
	cols = 40
	w.show("e")
	if strings.Contains(out.String(), "\x1b") {
		t.Fatalf("escape sequences without VT: %q", out.String())
	}
}

// TestBarShowsALowerBound: the bar shows a count that is only a lower
// bound as one, and the percent then by time; an exact count as it is.
func TestBarShowsALowerBound(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		atLeast bool
		percent float64
		done    string
	}{{true, 50, "50000 sent of more than 10000"}, {false, 99.9, "50000 sent"}} {
		total := int64(10_000)
		if !tt.atLeast {
			total = 50_001
			tt.done += " of 50001"
		}
		st := recovery.State{Total: &total, TotalAtLeast: tt.atLeast,
			Pass: recovery.Pass{State: recovery.StateRunning, Sent: 50_000, Lane: recovery.Lane{Progress: 0.5}}}
		if f := passFigures(st, st.Pass, now); f.done != tt.done || f.percent != tt.percent {
			t.Errorf("at least %v: %q at %.1f%%, want %q at %.1f%%", tt.atLeast, f.done, f.percent, tt.done, tt.percent)
		}
	}
}
