package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strconv"
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
// slices.
func pageRequests(t *testing.T, srv *mcastest.Server) map[int64]int {
	t.Helper()
	lanes := map[int64]int{}
	for _, r := range srv.Requests() {
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
		if body.IsScan {
			lanes[body.Filters.Date.LTE]++
		}
	}
	return lanes
}

// TestLanesRecoverSideBySideExactlyOnce: against an API that takes a
// second to answer, with a rate limit of 10 requests a second, the default
// reads the window in lanes side by side, each activity exactly once. No
// lane makes more than a third of the page requests: the run takes at
// most a third of the answer times --parallel 1 waits for (which makes
// them all one after the other, the second assertion).
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
	if len(lanes) < 4 || most*3 > total {
		t.Errorf("%d lanes made %d page requests, the busiest %d: want at least 4 lanes and none with more than a third", len(lanes), total, most)
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

// TestParallelOneReadsInOneLane: --parallel 1 is today's run, one request
// after the other in one lane.
func TestParallelOneReadsInOneLane(t *testing.T) {
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: lanesWindow, Count: 3000})
	srv := mcastest.New(t, mcastest.Options{Activities: acts, AnswerTime: 100 * time.Millisecond})
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", srv.Token())
	r := laneRun(t, srv, dir, "--rate-limit", "6000", "--parallel", "1")
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(dir, "out.jsonl"), acts)
	if lanes := pageRequests(t, srv); len(lanes) != 1 || srv.Stats().MaxInFlight != 1 {
		t.Errorf("%d lanes, %d requests in flight at once; want 1 and 1", len(lanes), srv.Stats().MaxInFlight)
	}
	if bytes.Contains([]byte(r.stderr), []byte("scan lanes")) {
		t.Errorf("--parallel 1 planned lanes:\n%s", r.stderr)
	}
}
