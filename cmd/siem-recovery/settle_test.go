package main

import (
	"context"
	"encoding/json"
	"fmt"
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

// The window's two times (--by) and the activities MCAS saves late
// (--settle), on the binary against the emulator: docs/time-semantics.md.

// savedBetween returns those of acts that MCAS saved in w.
func savedBetween(t *testing.T, w recovery.Window, acts ...[]json.RawMessage) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	for _, list := range acts {
		for _, raw := range list {
			a, err := recovery.ParseActivity(raw)
			if err != nil {
				t.Fatal(err)
			}
			if w.Contains(a.Created) {
				out = append(out, raw)
			}
		}
	}
	return out
}

var externalIDAndRT = regexp.MustCompile(`externalId=(\S+) rt=(\d+) `)

// TestByCreatedDeliversWhatMCASSavedInTheWindow: with --by created the run
// sends exactly the activities MCAS saved in the window, once, including
// some that happened the day before; none saved after it; CEF rt stays
// the time the activity happened. The checkpoint is then that recovery's
// only: --by date on it is exit 6 with both shown.
func TestByCreatedDeliversWhatMCASSavedInTheWindow(t *testing.T) {
	day := int64(24 * 3600_000)
	happened := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 600})
	dayBefore := recovery.Window{Start: apiWindow.Start - day, End: apiWindow.Start}
	caughtUp := mcastest.Generate(mcastest.GenerateOptions{Window: dayBefore, Count: 400, First: 600, SavedAt: apiWindow.Start + 1800_000})
	atEnd := mcastest.Generate(mcastest.GenerateOptions{Window: dayBefore, Count: 20, First: 1000, SavedAt: apiWindow.End})
	all := append(append(append([]json.RawMessage(nil), happened...), caughtUp...), atEnd...)
	want := savedBetween(t, apiWindow, all)
	if len(want) >= len(happened)+len(caughtUp) || len(want) <= len(caughtUp) {
		t.Fatalf("%d of the window's activities saved in it: the test needs some saved after it", len(want))
	}
	srv := mcastest.New(t, mcastest.Options{Activities: all})
	a := newAPIRun(t, srv, srv.Token())

	r := a.run(t, nil, "--by", "created")
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(a.dir, "out.jsonl"), want)
	for i, req := range srv.Requests() {
		var body struct {
			Filters   map[string]map[string]int64 `json:"filters"`
			SortField string                      `json:"sortField"`
		}
		if err := json.Unmarshal(req.Body, &body); err != nil {
			t.Fatal(err)
		}
		if body.SortField != "created" || body.Filters["date"] != nil || body.Filters["created"]["lt"] != apiWindow.End {
			t.Errorf("request %d: %s, want the window on created", i, req.Body)
		}
	}

	// CEF: rt, start and end are when the activity happened.
	r = a.run(t, nil, "--by", "created", "--checkpoint", "cef.db", "--format", "cef", "--sink", "file:out.cef")
	wantCode(t, r, 0)
	cef, err := os.ReadFile(filepath.Join(a.dir, "out.cef"))
	if err != nil {
		t.Fatal(err)
	}
	happenedAt := map[string]int64{}
	for _, raw := range want {
		act, _ := recovery.ParseActivity(raw)
		happenedAt[act.ID] = act.Timestamp
	}
	lines := externalIDAndRT.FindAllStringSubmatch(string(cef), -1)
	for _, m := range lines {
		if rt, _ := strconv.ParseInt(m[2], 10, 64); happenedAt[m[1]] != rt {
			t.Fatalf("%s: rt=%s, want when it happened, %d", m[1], m[2], happenedAt[m[1]])
		}
	}
	if len(lines) != len(want) {
		t.Fatalf("%d CEF lines, want %d", len(lines), len(want))
	}

	r = a.run(t, nil, "--by", "date")
	wantCode(t, r, exitCheckpointUnusable)
	golden(t, "api/checkpoint-other-by/stderr", normalize(lastLine(r.stderr), hostPort(srv.URL)))
}

// settleRun is a run of the binary with --settle and no margin, so that
// what the test saves right after a run is the next run's to find.
func (a apiRun) settle(t *testing.T, settle string, extra ...string) result {
	t.Helper()
	return a.run(t, nil, append([]string{"--settle", settle, "--settle-margin", "0s"}, extra...)...)
}

// saveNow has the emulator save n activities of the window now, numbered
// from first: late arrivals.
func saveNow(t *testing.T, srv *mcastest.Server, n, first int) []json.RawMessage {
	t.Helper()
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: n, First: first, SavedAt: time.Now().UnixMilli()})
	srv.Add(t, acts...)
	return acts
}

// TestSettleSendsLateArrivalsOnceThenGoesQuiet follows a recovery with
// --settle through its runs: the pass; a run that finds what MCAS saved
// since and sends exactly that; a run with nothing new that sends nothing;
// the first run after the deadline (moved to now by --settle 0s) sends
// what is left and completes; a run after that asks the API nothing. status,
// verify and check tell each stage.
func TestSettleSendsLateArrivalsOnceThenGoesQuiet(t *testing.T) {
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 300})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	a := newAPIRun(t, srv, srv.Token())
	out := filepath.Join(a.dir, "out.jsonl")

	r := a.settle(t, "1h")
	wantCode(t, r, 0)
	wantStderr(t, r, "msg=\"settling: re-run to send what MCAS saves late for the window, until the deadline\"")
	assertDelivered(t, out, acts)
	st := statusJSON(t, a.dir, filepath.Join(a.dir, "cp.db"))
	if st.State != "settling" || st.Percent != 100 || st.Settle == nil || st.Settle.Deadline == "" || st.Settle.Sweeps != 0 || st.Settle.For != "1h0m0s" {
		t.Fatalf("status after the pass: %+v %+v", st, st.Settle)
	}

	// Settling is not completed: status says when the pass was done, not
	// "completed at" (issue 28).
	text := runBin(t, a.dir, nil, "status", "--checkpoint", "cp.db")
	if strings.Contains(text.stdout, "completed at:") || !strings.Contains(text.stdout, "pass done at:") || st.CompletedAt != "" || st.PassCompletedAt == "" {
		t.Errorf("status of a settling recovery:\n%s", text.stdout)
	}

	late := saveNow(t, srv, 40, 1000)
	r = a.settle(t, "1h")
	wantCode(t, r, 0)
	// sent_before is the recovery's, not the new sweep's 0 (issue 28).
	wantStderr(t, r, "msg=\"sweeping for activities saved late\"", "sent_before=300 ", "late_sent_before=0 ", "sweeps_this_run=1", "late_sent_total=40")
	assertDelivered(t, out, append(append([]json.RawMessage(nil), acts...), late...))
	st = statusJSON(t, a.dir, filepath.Join(a.dir, "cp.db"))
	if st.State != "settling" || st.Sent != 340 || st.Settle.Sweeps != 1 || st.Settle.LateSent != 40 || st.Settle.Sweep == nil || st.Settle.Sweep.Sent != 40 {
		t.Fatalf("status after a sweep: %+v %+v", st, st.Settle)
	}
	text = runBin(t, a.dir, nil, "status", "--checkpoint", "cp.db")
	if !strings.Contains(text.stdout, "settle:        until "+st.Settle.Deadline+" (--settle 1h0m0s): 40 activities saved late sent by 1 sweeps; the next reads what MCAS saved from ") {
		t.Errorf("status:\n%s", text.stdout)
	}
	check := runBin(t, a.dir, nil, append([]string{"check"}, a.args[1:]...)...)
	if !strings.Contains(check.stdout, "cp.db: settling until "+st.Settle.Deadline+" (340 sent, 40 of them saved late); a run will send what MCAS saved since its last sweep") {
		t.Errorf("check:\n%s", check.stdout)
	}
	v := runBin(t, a.dir, nil, append([]string{"verify"}, a.args[1:len(a.args)-4]...)...)
	wantCode(t, v, 0)
	wantStderr(t, v, "at_source=340 ", "saved_late=40 ", "late_sent=40 ", "state=settling")

	// Nothing new: one request, nothing sent.
	before := srv.Stats().Requests
	r = a.settle(t, "1h")
	wantCode(t, r, 0)
	wantStderr(t, r, "sent_this_run=0 ")
	if n := srv.Stats().Requests - before; n != 1 {
		t.Errorf("a sweep with nothing new made %d requests, want 1", n)
	}

	// --settle 0s: the deadline was the pass's completion, so this run
	// makes the final sweep, and the recovery is over.
	last := saveNow(t, srv, 3, 2000)
	r = a.settle(t, "0s")
	wantCode(t, r, 0)
	wantStderr(t, r, "window recovered: checkpoint completed and disabled")
	all := append(append(append([]json.RawMessage(nil), acts...), late...), last...)
	assertDelivered(t, out, all)
	st = statusJSON(t, a.dir, filepath.Join(a.dir, "cp.db"))
	if st.State != "completed" || st.Settle.Sweeps != 3 || st.Settle.LateSent != 43 || !st.Settle.Sweep.Final || st.Settle.Sweep.SavedBefore != "" {
		t.Fatalf("status after the final sweep: %+v %+v %+v", st, st.Settle, st.Settle.Sweep)
	}

	before = srv.Stats().Requests
	saveNow(t, srv, 5, 3000)
	r = a.settle(t, "1h")
	wantCode(t, r, 0)
	wantStderr(t, r, "already completed, nothing to do")
	assertDelivered(t, out, all)
	if n := srv.Stats().Requests - before; n != 0 {
		t.Errorf("a run after completion made %d requests", n)
	}
}

// TestSettleSweepStopsAndResumes: a planned stop in the middle of a sweep
// (the API slow to answer, --max-duration) exits 75, status says stopped,
// and the next run finishes that sweep: each late arrival once.
func TestSettleSweepStopsAndResumes(t *testing.T) {
	t.Parallel()
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 50})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	a := newAPIRun(t, srv, srv.Token())
	wantCode(t, a.settle(t, "1h"), 0)
	late := saveNow(t, srv, 30, 1000)
	srv.FailNext(1, mcastest.Fault{Delay: time.Minute})
	r := a.settle(t, "1h", "--max-duration", "1s")
	wantCode(t, r, exitStopped)
	wantStderr(t, r, "of the sweep for activities saved late done")
	st := statusJSON(t, a.dir, filepath.Join(a.dir, "cp.db"))
	if st.State != "stopped" || st.Settle.Sweep == nil || st.Settle.Sweep.State != "stopped" {
		t.Fatalf("status after the stop: %+v %+v", st, st.Settle)
	}
	r = a.settle(t, "1h")
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(a.dir, "out.jsonl"), append(acts, late...))
	if st := statusJSON(t, a.dir, filepath.Join(a.dir, "cp.db")); st.State != "settling" || st.Settle.Sweeps != 1 || st.Settle.LateSent != 30 {
		t.Fatalf("status after the resumed sweep: %+v %+v", st, st.Settle)
	}
}

// TestKill9MidSweepResendsOneBatch kills the binary while it is blocked
// sending the second batch of a sweep of 12,000 late arrivals (its receiver
// stopped reading): the next run finishes the sweep, and nothing is lost or
// sent twice but that batch.
func TestKill9MidSweepResendsOneBatch(t *testing.T) {
	t.Parallel()
	const n, batch = 12000, 5000
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 100})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	a := newAPIRun(t, srv, srv.Token())
	wantCode(t, a.settle(t, "1h"), 0)
	late := saveNow(t, srv, n, 1000)

	half := 0
	for _, raw := range late {
		half += len(raw) + 1
	}
	fifo := filepath.Join(a.dir, "siem.fifo")
	recv := startFIFOReceiver(t, fifo, half/2, 2)
	args := append(append([]string(nil), a.args...), "--settle", "1h", "--settle-margin", "0s", "--sink", "file:"+fifo)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir, cmd.Env = a.dir, cleanEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-recv.paused:
	case <-ctx.Done():
		t.Fatal("the receiver never got half the late arrivals")
	}
	mid := awaitStatus(ctx, t, a.dir, filepath.Join(a.dir, "cp.db"), func(s statusReport) bool {
		return s.Settle != nil && s.Settle.Sweep != nil && s.Settle.Sweep.InFlight > 0
	})
	// A scan page ends before its final millisecond: a batch is a little
	// under the page size.
	inFlight := mid.Settle.Sweep.InFlight
	if mid.State != "running" || mid.Settle.Sweep.Sent == 0 || mid.Settle.Sweep.Sent >= n/2 || inFlight > batch {
		t.Fatalf("status during the sweep: %+v %+v", mid, mid.Settle.Sweep)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	recv.readOnAfterKill()

	r := runBin(t, a.dir, nil, args...)
	wantCode(t, r, 0)
	wantStderr(t, r, "the previous run stopped before the sink confirmed its last batch; that batch is sent again", fmt.Sprintf("activities=%d", inFlight))
	recv.wait(t)
	counts := map[string]int{}
	torn := 0
	for _, line := range strings.Split(strings.TrimSuffix(recv.out.String(), "\n"), "\n") {
		a, err := recovery.ParseActivity([]byte(line))
		if err != nil {
			torn++
			continue
		}
		counts[a.ID]++
	}
	dups := 0
	for _, id := range mcastest.IDs(late) {
		if counts[id] == 0 {
			t.Fatalf("%s was lost", id)
		}
		dups += counts[id] - 1
	}
	end := statusJSON(t, a.dir, filepath.Join(a.dir, "cp.db"))
	t.Logf("killed with %d in flight: %d sent again, %d torn lines", inFlight, dups, torn)
	if len(counts) != n || dups == 0 || dups > int(inFlight) || torn > 1 || end.Settle.LateSent != n || end.SentAgain != inFlight || end.Settle.Sweeps != 1 {
		t.Fatalf("%d distinct, %d sent again, %d torn; status %+v %+v", len(counts), dups, torn, end, end.Settle)
	}
}

// TestVersion1CheckpointResumes resumes, with this build, a checkpoint an
// earlier siem-recovery (state version 1, before --by) left when its sink
// failed in the middle of the example export: 20 sent, the third batch of
// 10 in flight, the cursor after line 25. The run sends exactly the
// window's activities after those 20, reports the batch in flight, and
// leaves a completed checkpoint.
func TestVersion1CheckpointResumes(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	for src, dst := range map[string]string{
		"docs/examples/activities.jsonl":          "activities.jsonl",
		"docs/examples/alert.json":                "alert.json",
		"checkpoint/testdata/v1-export-failed.db": "v1.db",
	} {
		data, err := os.ReadFile(filepath.Join(root, src))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, dir, dst, string(data))
	}
	args := func(cp, out string) []string {
		return []string{"run", "--alert", "alert.json", "--source", "file:activities.jsonl", "--checkpoint", cp,
			"--sink", "file:" + out, "--format", "json", "--page-size", "10"}
	}
	whole := runBin(t, dir, nil, args("fresh.db", "whole.jsonl")...)
	wantCode(t, whole, 0)
	all, err := os.ReadFile(filepath.Join(dir, "whole.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(all), "\n")

	r := runBin(t, dir, nil, args("v1.db", "rest.jsonl")...)
	wantCode(t, r, 0)
	wantStderr(t, r, "the previous run stopped before the sink confirmed its last batch; that batch is sent again", "activities=10", "sent_before=20")
	rest, err := os.ReadFile(filepath.Join(dir, "rest.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if string(rest) != strings.Join(lines[20:], "") {
		t.Fatalf("the resumed run sent %d bytes, want the %d activities after the first 20 (%d bytes)", len(rest), len(lines)-21, len(strings.Join(lines[20:], "")))
	}
	st := statusJSON(t, dir, "v1.db")
	if st.State != "completed" || st.Sent != int64(len(lines)-1) || st.SentAgain != 10 || st.By != "date" {
		t.Fatalf("status: %+v", st)
	}
}

// TestSettleOnAnExportIsIgnored: a schedule made for the API runs on an
// export as it is: --settle is ignored with a word, and the recovery
// completes after its pass.
func TestSettleOnAnExportIsIgnored(t *testing.T) {
	dir := t.TempDir()
	root := repoRoot(t)
	r := runBin(t, dir, nil, "run", "--alert", filepath.Join(root, "docs/examples/alert.json"), "--source", "file:"+filepath.Join(root, "docs/examples/activities.jsonl"),
		"--checkpoint", "cp.db", "--sink", "file:out.cef", "--settle", "24h", "--settle-margin", "1m")
	wantCode(t, r, 0)
	wantStderr(t, r, "--settle and --settle-margin are ignored: an export gains no activity once written, so nothing arrives late in it", "msg=completed")
	if st := statusJSON(t, dir, "cp.db"); st.State != "completed" || st.Settle != nil {
		t.Fatalf("status: %+v", st)
	}
}
