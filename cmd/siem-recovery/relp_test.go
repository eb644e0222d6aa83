package main

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"siem-recovery/sink"
	"siem-recovery/sink/rsyslogtest"
)

// relpArgs recover a big export into rsyslog over RELP, each message the
// activity's JSON without a syslog header, so that rsyslog's output lines
// are the activities.
func relpArgs(dir, addr string) []string {
	return []string{"run",
		"--start", strconv.FormatInt(bigStart, 10), "--end", strconv.FormatInt(bigEnd, 10),
		"--source", "file:" + filepath.Join(dir, "big.jsonl"),
		"--format", "json", "--syslog", "none", "--sink", "relp://" + addr,
		"--checkpoint", filepath.Join(dir, "cp.db"), "--page-size", "5000",
	}
}

// receivedOnce checks that rsyslog's output holds every activity of want
// and returns how many arrived twice.
func receivedOnce(t *testing.T, srv *rsyslogtest.Server, want map[string]bool) (dups int) {
	t.Helper()
	srv.Await(len(want), 2*time.Minute)
	counts, torn := deliveredIDs(t, srv.Output)
	dups = noneLost(t, counts, want)
	if torn != 0 || len(counts) != len(want) {
		t.Fatalf("%d lines that are no activity of the window, %d distinct ids for %d", torn, len(counts), len(want))
	}
	return dups
}

// TestRELPReceiverRestartedMidRun kills rsyslog in the middle of a batch
// of a run over RELP and starts it again: the run waits, says so, goes on,
// loses nothing, and sends again the messages rsyslog had not
// acknowledged: at most the window (none when rsyslog died with every
// message it was sent acknowledged).
func TestRELPReceiverRestartedMidRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := writeBigExport(t, filepath.Join(dir, "big.jsonl"), 200_000)
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.RELP})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, stderr, done := startBin(ctx, t, relpArgs(dir, srv.Addr)...)
	srv.Await(len(want)/3, time.Minute)
	// Frozen, rsyslog holds the run in the middle of a batch, its window
	// on the wire; then it dies.
	srv.Pause()
	awaitStatus(ctx, t, dir, filepath.Join(dir, "cp.db"), func(s statusReport) bool { return s.InFlight > 0 })
	srv.Kill()
	st := awaitStatus(ctx, t, dir, filepath.Join(dir, "cp.db"), func(s statusReport) bool { return s.LastError != "" })
	if !strings.HasPrefix(st.LastError, "Data server connection error: relp://"+srv.Addr) {
		t.Fatalf("status while rsyslog is down: %+v", st)
	}
	srv.Restart()
	<-done
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d\n%s", code, stderr.String())
	}
	dups := receivedOnce(t, srv, want)
	end := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
	t.Logf("rsyslog killed mid-run: %d arrived twice, %d counted as sent again", dups, end.SentAgain)
	if int64(dups) > end.SentAgain || end.SentAgain > sink.DefaultRELPWindow || end.State != "completed" {
		t.Fatalf("%d twice, %d counted, window %d; status %+v", dups, end.SentAgain, sink.DefaultRELPWindow, end)
	}
	if !strings.Contains(stderr.String(), "Data server connection restored") {
		t.Fatalf("no recovery logged:\n%s", stderr.String())
	}
}

// TestRELPKill9SendsAtMostTheWindowAgain kills the binary three times
// while it sends over RELP: each next run skips what the checkpoint
// recorded as acknowledged and sends again at most what the sink may run
// past the record: the window.
func TestRELPKill9SendsAtMostTheWindowAgain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := writeBigExport(t, filepath.Join(dir, "big.jsonl"), 200_000)
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.RELP})
	const kills = 3
	for k := 1; k <= kills; k++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd, stderr, done := startBin(ctx, t, relpArgs(dir, srv.Addr)...)
		// Kill while a batch is in flight, part of it acknowledged.
		awaitStatus(ctx, t, dir, filepath.Join(dir, "cp.db"), func(s statusReport) bool {
			return s.Sent >= int64(len(want)*k/(kills+1)) && s.InFlight > 0
		})
		srv.Await(srv.Count()+100, time.Minute)
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		cancel()
		if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() {
			t.Fatalf("run %d was not killed: %v\n%s", k, cmd.ProcessState, stderr.String())
		}
	}
	r := runBin(t, dir, nil, relpArgs(dir, srv.Addr)...)
	wantCode(t, r, 0)
	dups := receivedOnce(t, srv, want)
	end := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
	t.Logf("%d kills: %d arrived twice, %d counted as sent again", kills, dups, end.SentAgain)
	if int64(dups) > end.SentAgain || end.SentAgain > kills*sink.DefaultRELPWindow {
		t.Fatalf("%d twice, %d counted as sent again: want at most %d a kill", dups, end.SentAgain, sink.DefaultRELPWindow)
	}
}
