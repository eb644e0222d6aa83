package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas/mcastest"
)

// activityLines counts the activities of a json-format sink file by id, and
// returns the latest timestamp among them; a line torn by a kill -9 is
// counted apart.
func activityLines(t *testing.T, path string) (counts map[string]int, latest int64, torn int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts = map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var a struct {
			ID        string `json:"_id"`
			Timestamp int64  `json:"timestamp"`
		}
		if json.Unmarshal(sc.Bytes(), &a) != nil || a.ID == "" {
			torn++
			continue
		}
		counts[a.ID]++
		latest = max(latest, a.Timestamp)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return counts, latest, torn
}

// TestAPIStatusShowsTimeReachedNotCursor: a scan-mode run that fails
// half-way shows, in status and in the logs of the run that resumes it, the
// time it reached, not the API's opaque continuation (kept raw under
// --json); once the window is completed, the failure is shown resolved.
func TestAPIStatusShowsTimeReachedNotCursor(t *testing.T) {
	t.Parallel()
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 3000})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	// Request 1 counts the window, 2 to 4 are pages; 5, 6 and 7 fail.
	for _, k := range []int{5, 6, 7} {
		srv.FailEvery(k, mcastest.Fault{Status: 503})
	}
	a := newAPIRun(t, srv, srv.Token())
	r := a.run(t, nil, "--page-size", "500", "--max-critical-errors", "3")
	wantCode(t, r, exitTooManyCritical)
	delivered, latest, _ := activityLines(t, filepath.Join(a.dir, "out.jsonl"))
	reached := recovery.FormatMillis(latest)
	percent := fmt.Sprintf("%.1f%%", math.Floor(float64(len(delivered))/3000*1000)/10)

	text := runBin(t, a.dir, nil, "status", "--checkpoint", "cp.db")
	wantCode(t, text, 0)
	for _, want := range []string{"state:         failed\n", "position:      " + reached + "\n", "percent:       " + percent + " of 3000 activities at the source\n",
		"last error:    fetch the page at " + reached + ": 3 consecutive API requests"} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, text.stdout)
		}
	}
	if strings.Contains(text.stdout, "continuation") || strings.Contains(text.stdout, "{") {
		t.Errorf("status shows the API's cursor:\n%s", text.stdout)
	}
	s := statusJSON(t, a.dir, "cp.db")
	var cursor struct {
		NextFilters json.RawMessage `json:"next_filters"`
	}
	if err := json.Unmarshal(s.Cursor, &cursor); err != nil || len(cursor.NextFilters) == 0 || s.Position != reached || s.LastErrorResolved {
		t.Errorf("status --json: position %q, cursor %s (%v), resolved %v", s.Position, s.Cursor, err, s.LastErrorResolved)
	}

	srv.ClearFaults()
	r = a.run(t, nil, "--page-size", "500", "--max-critical-errors", "3")
	wantCode(t, r, 0)
	wantStderr(t, r, `msg=recovering window="[2024-05-14T08:00:00.000Z, 2024-05-14T09:00:00.000Z)" source=`+srv.URL+" position="+reached+" sent_before="+strconv.Itoa(len(delivered)))
	text = runBin(t, a.dir, nil, "status", "--checkpoint", "cp.db")
	for _, want := range []string{"state:                  completed\n", "position:               the end of the window\n",
		"last error (resolved):  fetch the page at " + reached + ": 3 consecutive API requests"} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, text.stdout)
		}
	}
	if s := statusJSON(t, a.dir, "cp.db"); !s.LastErrorResolved || s.LastError == "" {
		t.Errorf("status --json after completion: last_error %q, resolved %v", s.LastError, s.LastErrorResolved)
	}
}

// TestAPITopUpResumesAfterKill9: a top-up pass (run --exclude-ids on the
// completed checkpoint) killed with SIGKILL half-way resumes where it
// stood: in the end every activity the SIEM lacked was sent, those it held
// were not, at most the batch in flight twice (and counted); then the same
// command does nothing, with no API request.
func TestAPITopUpResumesAfterKill9(t *testing.T) {
	t.Parallel()
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 10_000})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	a := newAPIRun(t, srv, srv.Token())
	wantCode(t, a.run(t, nil, "--page-size", "500"), 0)

	// The SIEM lost every 7th activity.
	var held, missing []string
	for i, id := range mcastest.IDs(acts) {
		if i%7 == 0 {
			missing = append(missing, id)
		} else {
			held = append(held, id)
		}
	}
	writeFile(t, a.dir, "siem-ids.txt", strings.Join(held, "\n")+"\n")
	// Answers take 50 ms from now on, so that the top-up (20 pages) lasts.
	srv.FailEvery(1, mcastest.Fault{Delay: 50 * time.Millisecond})
	args := append(append([]string(nil), a.args...), "--page-size", "500", "--exclude-ids", "siem-ids.txt")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir, cmd.Env = a.dir, cleanEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	awaitStatus(ctx, t, a.dir, "cp.db", func(s statusReport) bool { return s.TopUp != nil && s.TopUp.Sent > 0 })
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	mid := statusJSON(t, a.dir, "cp.db")
	// The run died: stopped, not running (issue 28), and status says how.
	if mid.State != "stopped" || !mid.Interrupted || mid.RunActive || mid.TopUp.State != "stopped" || mid.TopUp.Sent >= int64(len(missing)) ||
		mid.Sent != 10_000 || mid.TopUp.Percent >= 100 {
		t.Fatalf("status after the kill: %+v, top-up %+v", mid, mid.TopUp)
	}
	text := runBin(t, a.dir, nil, "status", "--checkpoint", "cp.db")
	if !regexp.MustCompile(`(?m)^state: +stopped \(the last run died without recording its end: kill -9, a crash or a reboot; a re-run resumes\)$`).MatchString(text.stdout) ||
		!regexp.MustCompile(`(?m)^run active: +no `).MatchString(text.stdout) {
		t.Fatalf("status after the kill:\n%s", text.stdout)
	}

	srv.ClearFaults()
	r := runBin(t, a.dir, nil, args...)
	wantCode(t, r, 0)
	wantStderr(t, r, "pass=top-up")
	counts, _, torn := activityLines(t, filepath.Join(a.dir, "out.jsonl"))
	for _, id := range held {
		if counts[id] != 1 {
			t.Fatalf("%s, held by the SIEM, was sent %d times", id, counts[id])
		}
	}
	end := statusJSON(t, a.dir, "cp.db")
	var dups int64
	for _, id := range missing {
		if counts[id] < 2 {
			t.Fatalf("%s, missing in the SIEM, was not sent by the top-up", id)
		}
		dups += int64(counts[id] - 2)
	}
	tu := end.TopUp
	if end.State != "completed" || tu.State != "completed" || tu.Sent != int64(len(missing)) || tu.Skipped != int64(len(held)) ||
		dups != tu.SentAgain || tu.SentAgain > 500 || torn > 1 || end.Runs != 3 {
		t.Fatalf("after the resumed top-up: %+v, top-up %+v; %d sent twice, %d torn lines", end, tu, dups, torn)
	}

	before := srv.Stats().Requests
	again := runBin(t, a.dir, nil, args...)
	wantCode(t, again, 0)
	wantStderr(t, again, "already completed, nothing to do")
	if srv.Stats().Requests != before {
		t.Fatal("a re-run of the completed top-up asked the API")
	}
}
