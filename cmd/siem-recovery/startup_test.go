package main

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"siem-recovery/recovery/mcas/mcastest"
)

// TestKillLoopCompletes kills the run with SIGKILL after a random 0.3 to
// 0.8 s, start after start, against an API that takes 250 ms to answer:
// every start asks for its first page at once and records what it learns
// as soon as it knows it (the window's count, the lanes' plan), so the
// starts together complete the window, each activity exactly once in the
// file. (Before, a start counted the window and balanced its lanes, two
// answer times and more, before its first page, and a kill threw all of it
// away: no start got anywhere.) The checkpoint's count of API requests
// lacks at most what the kills cut short: the requests in flight.
func TestKillLoopCompletes(t *testing.T) {
	t.Parallel()
	const n, pageSize = 6000, 500
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: lanesWindow, Count: n, Burst: 400, BurstIndex: 2900})
	srv := mcastest.New(t, mcastest.Options{Activities: acts, AnswerTime: 250 * time.Millisecond})
	dir := t.TempDir()
	token := writeFile(t, dir, "token.txt", srv.Token())
	out, cp := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "cp.db")
	args := []string{"run", "--start", strconv.FormatInt(lanesWindow.Start, 10), "--end", strconv.FormatInt(lanesWindow.End, 10),
		"--source", srv.URL, "--token-file", token, "--checkpoint", cp, "--page-size", strconv.Itoa(pageSize),
		"--rate-limit", "6000", "--sink", "file:" + out, "--format", "json"}
	const seed = 23 // the kill times are drawn from it: the same each time
	rng := rand.New(rand.NewPCG(seed, 0))

	const most = 60 // starts: a few make no progress (a kill before the first page arrives)
	kills := 0
	for starts := 1; ; starts++ {
		if starts > most {
			t.Fatalf("not complete after %d starts (seed %d)", most, seed)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd, stderr, done := startBin(ctx, t, args...)
		select {
		case <-done:
		case <-time.After(300*time.Millisecond + time.Duration(rng.Int64N(int64(500*time.Millisecond)))):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
		cancel()
		if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() {
			kills++
			continue
		}
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("start %d exited %d:\n%s", starts, code, stderr.String())
		}
		t.Logf("completed by start %d, after %d kills", starts, kills)
		break
	}
	if kills == 0 {
		t.Fatal("no start was killed: the test tested nothing")
	}
	assertDelivered(t, out, acts)
	end := statusJSON(t, dir, cp)
	made := int64(srv.Stats().Requests)
	// A request is recorded by the checkpoint's next write after it was
	// sent: a kill loses those sent after a start's last write, at most a
	// page in each lane (6: one for every two of the 12 pages), the one
	// read ahead, and the counts of a plan in the making (the window's and
	// 5 balancing ones).
	if end.State != "completed" || end.Sent != n || end.Resent != 0 || end.APIRequests > made || end.APIRequests < made-int64(kills)*13 {
		t.Errorf("final status: %s, %d sent, %d sent again, %d API requests recorded of %d made in %d kills", end.State, end.Sent, end.Resent, end.APIRequests, made, kills)
	}
}

// TestResumedPlanCountsNothing: a run in scan lanes stopped (SIGTERM)
// once its plan is recorded; the run that resumes it asks the API for no
// count (every request it makes is a page, or the final sweep's), and
// records every request it makes, exactly.
func TestResumedPlanCountsNothing(t *testing.T) {
	t.Parallel()
	const n = 12000
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: lanesWindow, Count: n})
	srv := mcastest.New(t, mcastest.Options{Activities: acts, AnswerTime: 100 * time.Millisecond})
	dir := t.TempDir()
	token := writeFile(t, dir, "token.txt", srv.Token())
	cp := filepath.Join(dir, "cp.db")
	args := []string{"run", "--start", strconv.FormatInt(lanesWindow.Start, 10), "--end", strconv.FormatInt(lanesWindow.End, 10),
		"--source", srv.URL, "--token-file", token, "--checkpoint", cp, "--page-size", "500",
		"--rate-limit", "6000", "--parallel", "3", "--sink", "file:" + filepath.Join(dir, "out.jsonl"), "--format", "json"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, stderr, done := startBin(ctx, t, args...)
	awaitStatus(ctx, t, dir, cp, func(s statusReport) bool { return len(s.Lanes) == 3 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-done
	if code := cmd.ProcessState.ExitCode(); code != exitStopped {
		t.Fatalf("the stopped run exited %d:\n%s", code, stderr.String())
	}
	mid := statusJSON(t, dir, cp)
	if mid.State != "stopped" || len(mid.Lanes) != 3 || mid.Total == nil || *mid.Total != n || mid.Sent >= n {
		t.Fatalf("after the stop: %s, %d lanes, total %v, %d sent", mid.State, len(mid.Lanes), mid.Total, mid.Sent)
	}
	before, counts := srv.Stats().Requests, countRequests(t, srv)

	r := runBin(t, dir, nil, args...)
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(dir, "out.jsonl"), acts)
	end := statusJSON(t, dir, cp)
	made := srv.Stats().Requests - before
	if got := countRequests(t, srv); got != counts || made == 0 || end.APIRequests-mid.APIRequests != int64(made) || end.State != "completed" {
		t.Errorf("the resumed run made %d requests (%d counts), recorded %d; want no count and each request recorded", made, got-counts, end.APIRequests-mid.APIRequests)
	}
}
