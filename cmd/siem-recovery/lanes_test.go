package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas/mcastest"
)

// lanesWindow is the window of the scan-lane tests: one day, so that the
// activities have a millisecond each apart from a burst.
var lanesWindow = recovery.Window{Start: 1715673600000, End: 1715673600000 + 24*3600*1000}

// laneRun is a run of the binary over lanesWindow against srv, into
// out.jsonl, with the given extra flags.
func laneRun(t *testing.T, srv *mcastest.Server, dir string, extra ...string) result {
	t.Helper()
	args := []string{"run", "--start", strconv.FormatInt(lanesWindow.Start, 10), "--end", strconv.FormatInt(lanesWindow.End, 10),
		"--source", srv.URL, "--token-file", "token.txt", "--checkpoint", "cp.db", "--page-size", "500",
		"--sink", "file:out.jsonl", "--format", "json"}
	return runBin(t, dir, nil, append(args, extra...)...)
}

// pageRequests groups the scan requests srv received by the end of the
// window they read (each lane reads its own slice, and its continuations
// keep that end): how many requests each lane made, in order of the
// slices. The first lane begins on the whole window, before the plan cuts
// its slice short, and its continuations keep the window's end: its
// requests and the last lane's are counted together.
func pageRequests(t *testing.T, srv *mcastest.Server) map[int64]int {
	t.Helper()
	lanes := map[int64]int{}
	for _, r := range srv.Requests() {
		if scan, lte := requestKind(t, r); scan {
			lanes[lte]++
		}
	}
	return lanes
}

// requestKind tells whether r is a scan request (a page), and the end
// (date lte) of the window it reads; a request that is no scan is a count.
func requestKind(t *testing.T, r mcastest.Request) (scan bool, lte int64) {
	t.Helper()
	var body struct {
		IsScan  bool `json:"isScan"`
		Filters struct {
			Date struct {
				LTE int64 `json:"lte"`
			} `json:"date"`
		} `json:"filters"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("request %s: %v", r.Body, err)
	}
	return body.IsScan, body.Filters.Date.LTE
}

// countRequests is how many of srv's requests were counts (plain requests
// for one activity, whose answer carries the total).
func countRequests(t *testing.T, srv *mcastest.Server) int {
	t.Helper()
	n := 0
	for _, r := range srv.Requests() {
		if scan, _ := requestKind(t, r); !scan {
			n++
		}
	}
	return n
}

// TestLanesRecoverSideBySideExactlyOnce: against an API that takes a
// second to answer, with a rate limit of 10 requests a second, the default
// reads the window in lanes side by side, each activity exactly once. No
// two lanes make more than half of the page requests: the run takes at
// most half the answer times --parallel 1 waits for (which makes them all
// one after the other, the second assertion).
func TestLanesRecoverSideBySideExactlyOnce(t *testing.T) {
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: lanesWindow, Count: 8000, Burst: 300, BurstIndex: 2400})
	srv := mcastest.New(t, mcastest.Options{Activities: acts, AnswerTime: time.Second})
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", srv.Token())

	r := laneRun(t, srv, dir, "--rate-limit", "600")
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(dir, "out.jsonl"), acts)
	wantStderr(t, r, "reading the window in scan lanes side by side", "completed")
	lanes := pageRequests(t, srv)
	total, most := 0, 0
	for _, n := range lanes {
		total += n
		most = max(most, n)
	}
	// The window's end is the first lane's (its pages before the plan,
	// and its continuation after) and the last lane's: together, they
	// still make no more than half.
	if len(lanes) < 4 || most*2 > total {
		t.Errorf("%d lanes made %d page requests, the busiest %d: want at least 4 lanes and none with more than half", len(lanes), total, most)
	}
	if st := srv.Stats(); st.MaxInFlight < 4 {
		t.Errorf("at most %d requests in flight at once: the lanes did not run side by side", st.MaxInFlight)
	}
	// The requests a run needs: one per page of each lane, and the counts
	// that planned them.
	s := statusJSON(t, dir, "cp.db")
	if s.State != "completed" || s.Sent != 8000 || int(s.APIRequests) != srv.Stats().Requests {
		t.Errorf("status: %s, %d sent, %d API requests recorded of %d made", s.State, s.Sent, s.APIRequests, srv.Stats().Requests)
	}
}

// TestParallelOneReadsInOneLane: --parallel 1 reads the window in one
// lane, one page after the other; the window's count (for the percent
// done) is the one request beside its first page.
func TestParallelOneReadsInOneLane(t *testing.T) {
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: lanesWindow, Count: 3000})
	srv := mcastest.New(t, mcastest.Options{Activities: acts, AnswerTime: 100 * time.Millisecond})
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", srv.Token())
	r := laneRun(t, srv, dir, "--rate-limit", "6000", "--parallel", "1")
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(dir, "out.jsonl"), acts)
	if lanes, counts := pageRequests(t, srv), countRequests(t, srv); len(lanes) != 1 || counts != 1 || srv.Stats().MaxInFlight > 2 {
		t.Errorf("%d lanes, %d counts, %d requests in flight at once; want 1, 1 and at most the count beside a page", len(lanes), counts, srv.Stats().MaxInFlight)
	}
	if bytes.Contains([]byte(r.stderr), []byte("scan lanes")) {
		t.Errorf("--parallel 1 planned lanes:\n%s", r.stderr)
	}
}

// TestLanesKill9LosesNothing kills a run in four scan lanes with SIGKILL
// at a quarter, half and three quarters of the window, and re-runs it:
// every lane goes on from where it stood (the same four slices, no new
// plan), and the file holds every activity exactly once, in whole lines,
// as with one lane: the sink takes one batch at a time, whichever lane's,
// and the lane whose batch a kill left in flight resumes it (cutting the
// torn line) before any other lane writes.
func TestLanesKill9LosesNothing(t *testing.T) {
	const n, pageSize = 40000, 500
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: lanesWindow, Count: n, Burst: 700, BurstIndex: 9000})
	srv := mcastest.New(t, mcastest.Options{Activities: acts, AnswerTime: 20 * time.Millisecond})
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", srv.Token())
	out := filepath.Join(dir, "out.jsonl")
	args := []string{"run", "--start", strconv.FormatInt(lanesWindow.Start, 10), "--end", strconv.FormatInt(lanesWindow.End, 10),
		"--source", srv.URL, "--token-file", filepath.Join(dir, "token.txt"), "--checkpoint", filepath.Join(dir, "cp.db"),
		"--page-size", strconv.Itoa(pageSize), "--rate-limit", "60000", "--parallel", "4", "--sink", "file:" + out, "--format", "json"}
	var size int64
	for _, a := range acts {
		size += int64(len(a)) + 1
	}

	counted := 0
	for _, share := range []int64{1, 2, 3} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd, stderr, done := startBin(ctx, t, args...)
		waitForSize(t, out, size*share/4, done)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-done
		cancel()
		if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("run %d was not killed: %v\n%s", share, cmd.ProcessState, stderr.String())
		}
		mid := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
		if len(mid.Lanes) != 4 || mid.InFlight > pageSize {
			t.Fatalf("status after kill %d: %d lanes, %d in flight", share, len(mid.Lanes), mid.InFlight)
		}
		if share == 1 {
			counted = countRequests(t, srv)
		}
	}
	r := runBin(t, dir, nil, args...)
	wantCode(t, r, 0)

	counts, _, torn := activityLines(t, out)
	dups := 0
	for _, id := range mcastest.IDs(acts) {
		switch c := counts[id]; {
		case c == 0:
			t.Fatalf("activity %s missing", id)
		case c > 1:
			dups += c - 1
		}
	}
	end := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
	if dups != 0 || torn != 0 || end.Resent != 0 {
		t.Fatalf("after 3 kills: %d activities twice, %d torn lines, %d counted as sent again; want none", dups, torn, end.Resent)
	}
	if end.State != "completed" || end.Sent != n || len(end.Lanes) != 4 {
		t.Fatalf("final status: %s, %d sent, %d lanes", end.State, end.Sent, len(end.Lanes))
	}
	// The four lanes went on where they stood: each slice's requests
	// carry its end (the first lane's the window's, as the last's), and no
	// run after the first counted anything: the plan was recorded.
	if lanes := pageRequests(t, srv); len(lanes) != 3 {
		t.Errorf("page requests over %d slices, want the 4 planned once: %v", len(lanes), lanes)
	}
	if n := countRequests(t, srv); n != counted || counted < 4 {
		t.Errorf("%d counts in all, %d by the first run: want the window's and 3 balancing ones, by the first run only", n, counted)
	}
}

// TestLanesStopAndResumeByCreated: a window by created, in three lanes,
// stopped by --max-duration (exit 75, every lane where it stood, nothing
// in flight), then resumed to the end: each activity MCAS saved in the
// window exactly once, none sent again.
func TestLanesStopAndResumeByCreated(t *testing.T) {
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: lanesWindow, Count: 12000})
	srv := mcastest.New(t, mcastest.Options{Activities: acts, AnswerTime: 200 * time.Millisecond})
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", srv.Token())
	r := laneRun(t, srv, dir, "--by", "created", "--parallel", "3", "--rate-limit", "6000", "--max-duration", "1500ms")
	wantCode(t, r, exitStopped)
	wantStderr(t, r, "--max-duration 1.5s reached", "(the slowest of 3 lanes)")
	mid := statusJSON(t, dir, "cp.db")
	if mid.State != "stopped" || len(mid.Lanes) != 3 || mid.InFlight != 0 || mid.Sent == 0 || mid.Sent >= 12000 {
		t.Fatalf("after the stop: %s, %d lanes, %d in flight, %d sent", mid.State, len(mid.Lanes), mid.InFlight, mid.Sent)
	}
	r = laneRun(t, srv, dir, "--by", "created", "--parallel", "3", "--rate-limit", "6000")
	wantCode(t, r, 0)
	// The window by created: what MCAS saved in it, whenever it happened.
	var want []json.RawMessage
	for _, raw := range acts {
		a, err := recovery.ParseActivity(raw)
		if err != nil {
			t.Fatal(err)
		}
		if lanesWindow.Contains(a.Created) {
			want = append(want, raw)
		}
	}
	assertDelivered(t, filepath.Join(dir, "out.jsonl"), want)
	if end := statusJSON(t, dir, "cp.db"); end.State != "completed" || end.Resent != 0 || end.By != "created" {
		t.Errorf("final: %s, %d sent again, by %s", end.State, end.Resent, end.By)
	}
}

// TestParallelOnAnExportIsIgnored: an export has no lanes; --parallel 4 is
// ignored with a word, and the run is the same as without it.
func TestParallelOnAnExportIsIgnored(t *testing.T) {
	dir := t.TempDir()
	r := runBin(t, repoRoot(t), nil, "run", "--alert", "docs/examples/alert.json", "--source", "file:docs/examples/activities.jsonl",
		"--checkpoint", filepath.Join(dir, "cp.db"), "--sink", "file:"+filepath.Join(dir, "out"), "--parallel", "4")
	wantCode(t, r, 0)
	wantStderr(t, r, `level=WARN msg="--parallel is ignored: an export is read in one lane, from its first line to its last"`)
	if s := statusJSON(t, dir, filepath.Join(dir, "cp.db")); s.State != "completed" || len(s.Lanes) != 0 {
		t.Errorf("status: %s, %d lanes", s.State, len(s.Lanes))
	}
}
