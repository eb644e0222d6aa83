package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas/mcastest"
)

// What an operator meets setting up a recovery (issue 28), on the binary:
// a window that has not ended, one in the future, a resume without
// --by created, the sink a recovery went to, JSON logs to the last line,
// and a failed first run that leaves nothing behind.

// openWindowRun is a run of the binary over a window of the API that
// began an hour ago and ends at end, into out.jsonl of dir.
type openWindowRun struct {
	dir    string
	window recovery.Window
	args   []string
}

func newOpenWindowRun(t *testing.T, srv *mcastest.Server, window recovery.Window) openWindowRun {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", srv.Token()+"\n")
	return openWindowRun{dir: dir, window: window, args: []string{"run",
		"--start", strconv.FormatInt(window.Start, 10), "--end", strconv.FormatInt(window.End, 10),
		"--source", srv.URL, "--token-file", "token.txt", "--rate-limit", "6000", "--parallel", "1", "--format", "json"}}
}

func (o openWindowRun) run(t *testing.T, extra ...string) result {
	t.Helper()
	return runBin(t, o.dir, nil, append(append([]string(nil), o.args...), extra...)...)
}

// millisStamp is a time with milliseconds as the messages print it, which
// the golden files cannot hold: it changes with the clock.
var millisStamp = regexp.MustCompile(`20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d\d\dZ`)

// normalizeWindow replaces the window's bounds and the time it can
// complete from (given) in s, then any other time, by names.
func normalizeWindow(s string, w recovery.Window, completes time.Time, addr string) string {
	s = strings.NewReplacer(recovery.FormatMillis(w.Start), "START", recovery.FormatMillis(w.End), "END",
		completes.UTC().Format(time.RFC3339), "END+MARGIN").Replace(s)
	s = stamps.ReplaceAllString(millisStamp.ReplaceAllString(s, "NOW-MARGIN"), "TIME")
	if addr != "" {
		s = normalize(s, addr)
	}
	return s
}

// TestWindowNotEndedWaits: a window whose end is still to come (by date
// and by created) does not "complete" when the pass reaches the present
// (issue 28: it did, exit 0, and what MCAS saved after was never sent).
// The run sends what MCAS saved so far and exits 75 with one line that
// says when the window ends, from when it can complete, and names follow;
// status says waiting and when it completes; check warns with the time; a
// re-run sends what was saved since, and waits again.
func TestWindowNotEndedWaits(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	w := recovery.Window{Start: now.Add(-time.Hour).Truncate(time.Minute).UnixMilli(), End: now.Add(2 * time.Hour).Truncate(time.Minute).UnixMilli()}
	completes := time.UnixMilli(w.End).Add(recovery.DefaultSettleMargin)
	// What happened so far, saved a quarter of an hour ago: before the
	// run's horizon.
	sofar := mcastest.Generate(mcastest.GenerateOptions{Window: recovery.Window{Start: w.Start, End: now.Add(-20 * time.Minute).UnixMilli()},
		Count: 50, SavedAt: now.Add(-15 * time.Minute).UnixMilli()})
	srv := mcastest.New(t, mcastest.Options{Activities: sofar})
	o := newOpenWindowRun(t, srv, w)
	for _, by := range []string{"date", "created"} {
		cp := "cp-" + by + ".db"
		out := filepath.Join(o.dir, "out-"+by+".jsonl")
		r := o.run(t, "--by", by, "--checkpoint", cp, "--sink", "file:"+out)
		wantCode(t, r, exitStopped)
		golden(t, "run/window-not-ended-by-"+by+"/stderr", normalizeWindow(lastLine(r.stderr), w, completes, hostPort(srv.URL)))
		assertDelivered(t, out, sofar)
		st := statusJSON(t, o.dir, cp)
		if st.State != "waiting" || st.CompletesFrom != completes.UTC().Format(time.RFC3339) || st.Percent >= 100 || st.Sent != 50 || st.CompletedAt != "" {
			t.Fatalf("status of the open window by %s: %+v", by, st)
		}
	}

	text := runBin(t, o.dir, nil, "status", "--checkpoint", "cp-date.db")
	wantCode(t, text, 0)
	if want := "waiting:       the window ends at " + recovery.FormatMillis(w.End) + ", after the pass reached the present; a run from " +
		completes.UTC().Format(time.RFC3339) + " reads the rest and completes it"; !strings.Contains(text.stdout, want) ||
		!strings.Contains(text.stdout, "state:         waiting\n") || strings.Contains(text.stdout, "completed at:") {
		t.Fatalf("status text of the open window lacks %q:\n%s", want, text.stdout)
	}
	check := runBin(t, o.dir, nil, append([]string{"check", "--checkpoint", "cp-date.db", "--sink", "file:out-date.jsonl"}, o.args[1:]...)...)
	wantCode(t, check, 0)
	golden(t, "check/window-not-ended/stdout", normalizeWindow(check.stdout, w, completes, hostPort(srv.URL)))

	// A quarter of an hour of MCAS later: the next run sends what was saved
	// since, and waits again.
	late := mcastest.Generate(mcastest.GenerateOptions{Window: recovery.Window{Start: now.Add(-10 * time.Minute).UnixMilli(), End: now.UnixMilli()},
		Count: 7, First: 1000, SavedAt: now.Add(-time.Minute).UnixMilli()})
	srv.Add(t, late...)
	r := o.run(t, "--checkpoint", "cp-date.db", "--sink", "file:out-date.jsonl", "--settle-margin", "0s")
	wantCode(t, r, exitStopped)
	wantStderr(t, r, "msg=\"sweeping for activities saved late\"", "sent_before=50 ", "late_sent_before=0 ")
	assertDelivered(t, filepath.Join(o.dir, "out-date.jsonl"), append(append([]json.RawMessage(nil), sofar...), late...))
	if st := statusJSON(t, o.dir, "cp-date.db"); st.State != "waiting" || st.Sent != 57 {
		t.Fatalf("status after the second run: %+v", st)
	}
}

// TestWindowNotEndedCompletesAtItsEnd: the first run from the window's
// end (plus --settle-margin, 0 here) reads the rest and completes: each
// activity once, what was saved between the runs included.
func TestWindowNotEndedCompletesAtItsEnd(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	end := now.Add(15 * time.Second)
	w := recovery.Window{Start: now.Add(-time.Hour).UnixMilli(), End: end.UnixMilli()}
	sofar := mcastest.Generate(mcastest.GenerateOptions{Window: recovery.Window{Start: w.Start, End: now.Add(-time.Minute).UnixMilli()},
		Count: 30, SavedAt: now.Add(-30 * time.Second).UnixMilli()})
	srv := mcastest.New(t, mcastest.Options{Activities: sofar})
	o := newOpenWindowRun(t, srv, w)
	args := []string{"--checkpoint", "cp.db", "--sink", "file:out.jsonl", "--settle-margin", "0s"}
	r := o.run(t, args...)
	if r.code == 0 && time.Now().After(end) {
		t.Fatalf("the first run took more than the 15 s the window had left: the test needs it shorter\n%s", r.stderr)
	}
	wantCode(t, r, exitStopped)
	// Saved after the first run, in the window's last seconds.
	late := mcastest.Generate(mcastest.GenerateOptions{Window: recovery.Window{Start: now.UnixMilli(), End: w.End}, Count: 5, First: 1000,
		SavedAt: time.Now().UnixMilli()})
	srv.Add(t, late...)
	time.Sleep(time.Until(end.Add(time.Second))) // the window ends: the clock is the condition
	r = o.run(t, args...)
	wantCode(t, r, 0)
	wantStderr(t, r, "window recovered: checkpoint completed and disabled")
	assertDelivered(t, filepath.Join(o.dir, "out.jsonl"), append(append([]json.RawMessage(nil), sofar...), late...))
	if st := statusJSON(t, o.dir, "cp.db"); st.State != "completed" || st.CompletesFrom != "" || st.CompletedAt == "" {
		t.Fatalf("status once the window ended: %+v", st)
	}
	r = o.run(t, args...)
	wantCode(t, r, 0)
	wantStderr(t, r, "already completed, nothing to do")
}

// TestWindowInTheFuture: a window wholly in the future is a usage error
// for the API, naming follow; check fails it. An export is a fixed file:
// its window, whatever it is, completes as it always did.
func TestWindowInTheFuture(t *testing.T) {
	dir := t.TempDir()
	start := time.Now().Add(24 * time.Hour).Truncate(time.Hour)
	w := recovery.Window{Start: start.UnixMilli(), End: start.Add(6 * time.Hour).UnixMilli()}
	bounds := []string{"--start", strconv.FormatInt(w.Start, 10), "--end", strconv.FormatInt(w.End, 10)}
	// Nothing listens there: a run that got as far as a request would fail
	// otherwise, and no test may reach a public host.
	api := append([]string{"--source", "http://" + mcastest.DeadAddr(t), "--token", strings.Repeat("t", 64), "--checkpoint", "cp.db"}, bounds...)
	r := runBin(t, dir, nil, append([]string{"run"}, api...)...)
	wantCode(t, r, exitUsage)
	golden(t, "run/window-in-the-future/stderr", normalizeWindow(r.stderr, w, time.Time{}, ""))
	wantNoCheckpoint(t, filepath.Join(dir, "cp.db"))
	c := runBin(t, dir, nil, append([]string{"check"}, api...)...)
	wantCode(t, c, exitUsage)
	golden(t, "check/window-in-the-future/stdout", normalizeWindow(c.stdout, w, time.Time{}, ""))

	writeFile(t, dir, "export.jsonl", goodExport)
	r = runBin(t, dir, nil, append([]string{"run", "--source", "file:export.jsonl", "--checkpoint", "export.db"}, bounds...)...)
	wantCode(t, r, 0)
	wantStderr(t, r, "window recovered: checkpoint completed and disabled")
}

// TestResumeWithoutByCreated: a recovery by created resumed without --by
// is told what to add, not to delete its checkpoint (issue 28), whether the
// checkpoint is the default one (named for the recovery by created) or
// given; verify without --by finds and reads it; status without
// --checkpoint takes the only one.
func TestResumeWithoutByCreated(t *testing.T) {
	state := t.TempDir()
	env := []string{"XDG_STATE_HOME=" + state}
	dir := t.TempDir()
	args := exampleArgs(t, "")
	args = args[:len(args)-2] // the default checkpoint
	stopped := runBin(t, dir, env, append(args, "--by", "created", "--max-duration", "1ns")...)
	wantCode(t, stopped, exitStopped)

	r := runBin(t, dir, env, args...)
	wantCode(t, r, exitCheckpointUnusable)
	golden(t, "run/by-forgotten/stderr", strings.ReplaceAll(r.stderr, state, "$XDG_STATE_HOME"))
	if entries, _ := os.ReadDir(filepath.Join(state, "siem-recovery")); len(entries) != 2 { // the checkpoint and its lock
		t.Fatalf("the refused run left %d files in the state directory, want the recovery's 2", len(entries))
	}
	c := runBin(t, dir, env, append([]string{"check"}, args[1:]...)...)
	wantCode(t, c, exitCheckpointUnusable)
	if !strings.Contains(c.stdout, "re-run with --by created to resume it") {
		t.Fatalf("check without --by:\n%s", c.stdout)
	}

	// verify reads the window as the recovery did, and says so.
	v := runBin(t, dir, env, append([]string{"verify"}, args[1:]...)...)
	wantCode(t, v, exitMissing) // the recovery is stopped at its start
	wantStderr(t, v, "msg=\"the checkpoint was made --by created: verify reads the window by created too\"", "state=stopped")
	if strings.Contains(v.stderr, "no checkpoint at") {
		t.Fatalf("verify without --by did not find the recovery by created:\n%s", v.stderr)
	}
	st := runBin(t, dir, env, "status", "--json")
	wantCode(t, st, 0)
	if !strings.Contains(st.stdout, `"by": "created"`) || !strings.Contains(st.stderr, "the only checkpoint in "+filepath.Join(state, "siem-recovery")) {
		t.Fatalf("status without --checkpoint:\n%s%s", st.stdout, st.stderr)
	}

	// The same with --checkpoint: the mismatch names --by.
	given := append(exampleArgs(t, dir), "--max-duration", "1ns")
	wantCode(t, runBin(t, dir, nil, append(given, "--by", "created")...), exitStopped)
	r = runBin(t, dir, nil, exampleArgs(t, dir)...)
	wantCode(t, r, exitCheckpointUnusable)
	golden(t, "run/checkpoint-by-forgotten/stderr", strings.ReplaceAll(strings.ReplaceAll(lastLine(r.stderr), dir, "DIR"), repoRoot(t), "REPO"))
	v = runBin(t, dir, nil, append([]string{"verify"}, exampleArgs(t, dir)[1:]...)...)
	wantCode(t, v, exitMissing)
	wantStderr(t, v, "verify reads the window by created too")
	// With --by given, it is not second-guessed.
	r = runBin(t, dir, env, append(args, "--by", "date", "--max-duration", "1ns")...)
	wantCode(t, r, exitStopped)
}

// TestCheckpointRecordsTheSink: the checkpoint records where the recovery
// delivered (issue 28: a run to another sink on a completed checkpoint
// said "already completed" and nothing else, and status never said where
// the events went). status shows it; a run to another sink on a completed
// recovery says where the window went and how to send it to a second SIEM;
// a recovery that moves to another SIEM on the way is told so, and status
// shows both.
func TestCheckpointRecordsTheSink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := filepath.Join(dir, "first.cef")
	r := runBin(t, dir, nil, exampleArgs(t, dir, "--sink", "file:first.cef")...)
	wantCode(t, r, 0)
	st := statusJSON(t, dir, "cp.db")
	text := runBin(t, dir, nil, "status", "--checkpoint", "cp.db")
	if st.Sink != "file:"+first || !strings.Contains(text.stdout, "\nsink:          file:"+first+"\n") {
		t.Fatalf("status of a recovery into %s: sink %q\n%s", first, st.Sink, text.stdout)
	}
	r = runBin(t, dir, nil, exampleArgs(t, dir, "--sink", "tcp://siem2.example:514")...)
	wantCode(t, r, 0)
	wantStderr(t, r, "already completed, nothing to do",
		`level=WARN msg="the window was delivered to another sink; to send it to a second SIEM, run the same command with another --checkpoint" delivered_to=file:`+first+" sink=tcp://siem2.example:514 sent=102")

	// A recovery that moves on the way: a window still open, so that the
	// second run has something to send.
	now := time.Now().UTC()
	w := recovery.Window{Start: now.Add(-time.Hour).UnixMilli(), End: now.Add(time.Hour).UnixMilli()}
	srv := mcastest.New(t, mcastest.Options{Activities: mcastest.Generate(mcastest.GenerateOptions{Window: recovery.Window{Start: w.Start, End: now.Add(-30 * time.Minute).UnixMilli()},
		Count: 10, SavedAt: now.Add(-20 * time.Minute).UnixMilli()})})
	o := newOpenWindowRun(t, srv, w)
	wantCode(t, o.run(t, "--checkpoint", "cp.db", "--sink", "file:old.jsonl"), exitStopped)
	srv.Add(t, mcastest.Generate(mcastest.GenerateOptions{Window: recovery.Window{Start: now.Add(-5 * time.Minute).UnixMilli(), End: now.UnixMilli()},
		Count: 3, First: 100, SavedAt: now.UnixMilli()})...)
	r = o.run(t, "--checkpoint", "cp.db", "--sink", "file:new.jsonl", "--settle-margin", "0s")
	wantCode(t, r, exitStopped)
	old, moved := "file:"+filepath.Join(o.dir, "old.jsonl"), "file:"+filepath.Join(o.dir, "new.jsonl")
	wantStderr(t, r, `msg="this recovery delivered to another sink so far; this run sends the rest to this one, so the two SIEMs hold the window between them `+
		`(to send all of it here, run the same command with another --checkpoint)" delivered_to=`+old+" sink="+moved+" sent=10")
	text = runBin(t, o.dir, nil, "status", "--checkpoint", "cp.db")
	if st := statusJSON(t, o.dir, "cp.db"); st.Sink != moved || len(st.Sinks) != 2 || st.Sinks[0] != old ||
		!strings.Contains(text.stdout, "\nsink:          "+moved+" (before it: "+old+")\n") {
		t.Fatalf("status after the move: %+v\n%s", st, text.stdout)
	}
}

// TestJSONLogsToTheLastLine: with --log-format json every line on stderr
// is JSON, the one that ends the command too (issue 28: it was plain
// text, and a log shipper reading JSON dropped the error), with the
// error's name, exit code, detail, remedy and checkpoint. Text logs keep
// their last line.
func TestJSONLogsToTheLastLine(t *testing.T) {
	dir := t.TempDir()
	r := runBin(t, dir, nil, append(exampleArgs(t, dir, "--max-duration", "1ns"), "--log-format", "json")...)
	wantCode(t, r, exitStopped)
	wantJSONLines(t, r.stderr)
	var last struct {
		Level, Msg, Error, Detail, Remedy, Checkpoint string
		ExitCode                                      int `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(lastLine(r.stderr)), &last); err != nil {
		t.Fatal(err)
	}
	if last.Level != "ERROR" || last.Error != "Stopped before the end date" || last.ExitCode != exitStopped || last.Checkpoint != filepath.Join(dir, "cp.db") ||
		!strings.HasPrefix(last.Detail, "stopped at the start of the window") || last.Remedy != "re-run the same command to resume" ||
		last.Msg != "Stopped before the end date: "+last.Detail+"; "+last.Remedy+" (checkpoint "+last.Checkpoint+")" {
		t.Fatalf("the last line: %+v", last)
	}
	// A flag that does not parse, as SIEM_RECOVERY_LOG_FORMAT asks for JSON.
	r = runBin(t, dir, []string{"SIEM_RECOVERY_LOG_FORMAT=json"}, "run", "--alrt", "alert.json")
	wantCode(t, r, exitUsage)
	wantJSONLines(t, r.stderr)
	golden(t, "run/unknown-flag-json/stderr", jsonTime.ReplaceAllString(r.stderr, `"time":"TIME"`))
	// Text logs: the last line as ever.
	r = runBin(t, dir, nil, exampleArgs(t, t.TempDir(), "--max-duration", "1ns")...)
	wantCode(t, r, exitStopped)
	if !strings.HasPrefix(lastLine(r.stderr), "Stopped before the end date: stopped at the start of the window") {
		t.Fatalf("the text log's last line: %s", lastLine(r.stderr))
	}
}

// TestCheckReportsARefusedFilterOnItsLine: a filter the API refuses (400,
// an unknown field) fails the filter's line of check, not the source's,
// which answered (issue 28: "FAIL source" beside "OK filter").
func TestCheckReportsARefusedFilterOnItsLine(t *testing.T) {
	srv := mcastest.New(t, mcastest.Options{})
	srv.FailNext(1, mcastest.Fault{Status: 400, Body: `{"error":"Invalid filter: unknown field nosuchfield"}`})
	a := newAPIRun(t, srv, srv.Token())
	writeFile(t, a.dir, "filter.json", `{"nosuchfield":{"eq":[1]}}`)
	r := runBin(t, a.dir, nil, append([]string{"check", "--filter", "filter.json"}, a.args[1:]...)...)
	wantCode(t, r, exitUsage)
	golden(t, "check/api-filter-refused/stdout", normalize(r.stdout, hostPort(srv.URL)))
}

// TestTopUpProgressCountsWhatItReads: a top-up skips most of what it
// reads; its rate counts what it read (issue 28: per_second=0 for a whole
// top-up that sent little).
func TestTopUpProgressCountsWhatItReads(t *testing.T) {
	dir := t.TempDir()
	ids := writeBigExport(t, filepath.Join(dir, "big.jsonl"), 20_000)
	wantCode(t, runBin(t, dir, nil, bigArgs(dir, "--page-size", "1000")...), 0)
	// The SIEM lacks one activity, the last.
	var held strings.Builder
	last := ""
	for id := range ids {
		last = max(last, id)
	}
	for id := range ids {
		if id != last {
			held.WriteString(id + "\n")
		}
	}
	writeFile(t, dir, "siem-ids.txt", held.String())
	r := runBin(t, dir, nil, bigArgs(dir, "--page-size", "1000", "--exclude-ids", "siem-ids.txt", "--progress-interval", "1ns")...)
	wantCode(t, r, 0)
	rates := regexp.MustCompile(`msg=progress percent=\S+ sent=(\d+) per_second=(\d+) `).FindAllStringSubmatch(r.stderr, -1)
	if len(rates) < 5 {
		t.Fatalf("%d progress lines:\n%s", len(rates), r.stderr)
	}
	for _, m := range rates {
		if m[2] == "0" {
			t.Fatalf("the top-up's progress says per_second=0 (sent=%s): it reads, skipping what the SIEM holds\n%s", m[1], r.stderr)
		}
	}
	wantStderr(t, r, "top-up completed: the window is complete again\" sent=1 skipped=19799 ")
}
