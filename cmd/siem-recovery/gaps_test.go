package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas/mcastest"
)

// The gaps command, and the part by part comparison verify shares with it
// (issue 26): without Microsoft's alert, the tool finds which parts of a
// span the SIEM lacks from what the SIEM exported, and prints the run
// commands that send exactly those.

// gapsSpan is the span of these tests: 08:00–09:00 UTC, cut into twelve
// parts of 5 minutes.
var gapsSpan = apiWindow

// deletedSpans are what the SIEM lost: all of 08:10–08:20 (two parts),
// and 08:40–08:47:30 (one part whole, half of the next).
var deletedSpans = []recovery.Window{
	{Start: gapsSpan.Start + 10*60_000, End: gapsSpan.Start + 20*60_000},
	{Start: gapsSpan.Start + 40*60_000, End: gapsSpan.Start + 47*60_000 + 30_000},
}

// siemExport is what the SIEM holds of acts: all but those whose time
// falls in deletedSpans, as JSON lines (an export of the SIEM's store),
// and the ids it lacks, in time order.
func siemExport(t *testing.T, acts []json.RawMessage) (lines string, lacks []string) {
	t.Helper()
	var b strings.Builder
	for _, raw := range acts {
		a, err := recovery.ParseActivity(raw)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(deletedSpans, func(w recovery.Window) bool { return w.Contains(a.Timestamp) }) {
			lacks = append(lacks, a.ID)
			continue
		}
		b.Write(raw)
		b.WriteByte('\n')
	}
	return b.String(), lacks
}

// commandLines are the run commands gaps printed, one a window.
func commandLines(t *testing.T, stdout string) []string {
	t.Helper()
	var cmds []string
	for _, l := range strings.Split(stdout, "\n") {
		if c, ok := strings.CutPrefix(l, "  siem-recovery run "); ok {
			cmds = append(cmds, strings.Replace("siem-recovery run "+c, "siem-recovery", binary, 1))
		}
	}
	return cmds
}

// jsonIDs are the _id of each line of a json-format sink file, in order.
func jsonIDs(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var a struct {
			ID string `json:"_id"`
		}
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		ids = append(ids, a.ID)
	}
	return ids
}

// sameIDs fails unless got and want hold the same ids, each once.
func sameIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Fatalf("%s: %d ids, want the %d deleted ones\n got: %.600v\nwant: %.600v", what, len(got), len(want), g, w)
	}
}

// TestGapsOnAnExport: the SIEM's export (the CEF it received) lacks two
// spans of the window; gaps, reading the activities' export once, names
// both as windows (the second merged from a part it lacks whole and one it
// lacks half of), exits 10, and its printed commands, run as printed, send
// exactly the deleted activities. Its stdout is what an operator reads.
func TestGapsOnAnExport(t *testing.T) {
	dir := t.TempDir()
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: gapsSpan, Count: 600, First: 26_000})
	var export strings.Builder
	for _, a := range acts {
		export.Write(a)
		export.WriteByte('\n')
	}
	writeFile(t, dir, "export.jsonl", export.String())
	span := []string{"--start", "2024-05-14T08:00:00Z", "--end", "2024-05-14T09:00:00Z", "--source", "file:export.jsonl"}
	all := runBin(t, dir, nil, append(append([]string{"run"}, span...), "--checkpoint", "all.db", "--sink", "file:all.cef")...)
	wantCode(t, all, 0)
	// The SIEM holds the CEF lines the recovery sent, but for the two spans.
	cef, err := os.ReadFile(filepath.Join(dir, "all.cef"))
	if err != nil {
		t.Fatal(err)
	}
	_, lacks := siemExport(t, acts)
	var kept []string
	for _, l := range strings.Split(strings.TrimSuffix(string(cef), "\n"), "\n") {
		if !slices.Contains(lacks, externalID.FindStringSubmatch(l)[1]) {
			kept = append(kept, l)
		}
	}
	writeFile(t, dir, "siem.cef", strings.Join(kept, "\n")+"\n")

	r := runBin(t, dir, nil, append(append([]string{"gaps", "--received", "siem.cef", "--bucket", "5m"}, span...), "--sink", "file:resend.cef")...)
	wantCode(t, r, exitMissing)
	golden(t, "gaps/export/stdout", r.stdout)
	golden(t, "gaps/export/stderr", lastLine(r.stderr))
	wantStderr(t, r, "buckets=12 buckets_listed=12", "count_requests=0 list_requests=0")

	cmds := commandLines(t, r.stdout)
	if len(cmds) != 2 {
		t.Fatalf("%d commands, want one for each deleted span:\n%s", len(cmds), r.stdout)
	}
	for _, cmd := range cmds {
		wantCode(t, runShell(t, dir, nil, cmd), 0)
	}
	resent, err := os.ReadFile(filepath.Join(dir, "resend.cef"))
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "the printed commands sent", cefIDs(t, string(resent)), lacks)

	// The SIEM now holds everything: nothing missing, exit 0.
	writeFile(t, dir, "siem.cef", strings.Join(kept, "\n")+"\n"+string(resent))
	whole := runBin(t, dir, nil, append(append([]string{"gaps", "--received", "siem.cef", "--bucket", "5m"}, span...), "--sink", "file:resend.cef")...)
	wantCode(t, whole, 0)
	golden(t, "gaps/export-complete/stdout", whole.stdout)
}

// gapsAPI is an emulator holding 1,200 activities of the span, and a
// directory with its token.
func gapsAPI(t *testing.T, opts mcastest.Options) (*mcastest.Server, []json.RawMessage, string) {
	t.Helper()
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: gapsSpan, Count: 1200})
	opts.Activities = acts
	srv := mcastest.New(t, opts)
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", srv.Token()+"\n")
	return srv, acts, dir
}

// apiSpan are the flags of a gaps or verify over gapsSpan at srv.
func apiSpan(srv *mcastest.Server) []string {
	return []string{"--start", "2024-05-14T08:00:00Z", "--end", "2024-05-14T09:00:00Z", "--source", srv.URL, "--token-file", "token.txt",
		"--rate-limit", "6000", "--bucket", "5m"}
}

// TestGapsAgainstTheAPI: the same against the API, where counting a part
// costs one request: a complete export costs exactly one request a part
// and exits 0; one that lacks two spans costs a request a part, and a
// listing of only the parts whose counts disagree (three of twelve); the
// printed commands, run as printed, send exactly the deleted activities.
// The token is never printed.
func TestGapsAgainstTheAPI(t *testing.T) {
	t.Parallel()
	srv, acts, dir := gapsAPI(t, mcastest.Options{})
	var all strings.Builder
	for _, a := range acts {
		all.Write(a)
		all.WriteByte('\n')
	}
	writeFile(t, dir, "complete.jsonl", all.String())
	complete := runBin(t, dir, nil, append([]string{"gaps", "--received", "complete.jsonl"}, apiSpan(srv)...)...)
	wantCode(t, complete, 0)
	if n := srv.Stats().Requests; n != 12 {
		t.Fatalf("gaps on a complete export made %d API requests, want one for each of the 12 parts", n)
	}
	golden(t, "gaps/api-complete/stdout", complete.stdout)

	siem, lacks := siemExport(t, acts)
	writeFile(t, dir, "siem.jsonl", siem)
	before := srv.Stats().Requests
	r := runBin(t, dir, nil, append(append([]string{"gaps", "--received", "siem.jsonl"}, apiSpan(srv)...), "--sink", "file:resend.jsonl", "--format", "json")...)
	wantCode(t, r, exitMissing)
	// Parts 2, 3 and 8 lack all their activities, 9 half: four listings of
	// one page each, beside the twelve counts.
	if n := srv.Stats().Requests - before; n != 12+4 {
		t.Errorf("gaps made %d API requests, want 12 counts and 4 listings", n)
	}
	wantStderr(t, r, "buckets=12 buckets_listed=4 count_requests=12 list_requests=4")
	out := normalize(r.stdout, hostPort(srv.URL))
	golden(t, "gaps/api/stdout", out)
	golden(t, "gaps/api/stderr", normalize(lastLine(r.stderr), hostPort(srv.URL)))
	if at, shown := mcastest.ShowsSecret(r.stdout+r.stderr, srv.Token()); shown {
		t.Fatalf("gaps printed the token at byte %d of its output", at)
	}

	cmds := commandLines(t, r.stdout)
	if len(cmds) != 2 {
		t.Fatalf("%d commands, want one for each deleted span:\n%s", len(cmds), r.stdout)
	}
	for _, cmd := range cmds {
		wantCode(t, runShell(t, dir, nil, cmd), 0)
	}
	sameIDs(t, "the printed commands sent", jsonIDs(t, filepath.Join(dir, "resend.jsonl")), lacks)

	// --json: the same windows, for scripts.
	js := runBin(t, dir, nil, append(append([]string{"gaps", "--received", "siem.jsonl", "--json"}, apiSpan(srv)...), "--sink", "file:resend.jsonl", "--format", "json")...)
	wantCode(t, js, exitMissing)
	var rep gapsReport
	if err := json.Unmarshal([]byte(js.stdout), &rep); err != nil {
		t.Fatalf("gaps --json: %v\n%s", err, js.stdout)
	}
	golden(t, "gaps/api-json/stdout", normalize(js.stdout, hostPort(srv.URL)))
	if len(rep.Windows) != 2 || rep.Missing != int64(len(lacks)) || rep.Buckets != 12 || rep.BucketsListed != 4 ||
		rep.Windows[0].Command != strings.Replace(cmds[0], binary, "siem-recovery", 1) {
		t.Fatalf("gaps --json: %+v", rep)
	}
}

// TestGapsWhereTheTotalIsALowerBound: where the API's total for a part is
// only a lower bound, gaps does not take it for a count: it lists that
// part, whatever the SIEM holds of it, and decides on what it lists.
func TestGapsWhereTheTotalIsALowerBound(t *testing.T) {
	t.Parallel()
	srv, acts, dir := gapsAPI(t, mcastest.Options{TotalCap: 50})
	var all strings.Builder
	for _, a := range acts {
		all.Write(a)
		all.WriteByte('\n')
	}
	writeFile(t, dir, "complete.jsonl", all.String())
	// A part holds 100; its total says "more than 50", which the SIEM's
	// 100 would not contradict if it were taken for a count.
	r := runBin(t, dir, nil, append([]string{"gaps", "--received", "complete.jsonl"}, apiSpan(srv)...)...)
	wantCode(t, r, 0)
	wantStderr(t, r, "at_source=1200 in_siem=1200 missing=0 gaps=0", "buckets=12 buckets_listed=12 count_requests=12 list_requests=12")
}

// TestVerifyReceivedListsOnlyWhatCountsCannotSettle: verify --received
// compares part by part as gaps does: it lists the ids of the parts whose
// counts disagree, not the whole window (issue 26: it re-read the whole
// window, as long as the recovery itself), prints exactly the missing ids,
// and says what it cost.
func TestVerifyReceivedListsOnlyWhatCountsCannotSettle(t *testing.T) {
	t.Parallel()
	srv, acts, dir := gapsAPI(t, mcastest.Options{AnswerCap: 100})
	siem, lacks := siemExport(t, acts)
	writeFile(t, dir, "siem.jsonl", siem)
	r := runBin(t, dir, nil, append([]string{"verify", "--received", "siem.jsonl"}, apiSpan(srv)...)...)
	wantCode(t, r, exitMissing)
	if got := strings.Fields(r.stdout); !slices.Equal(got, lacks) {
		t.Fatalf("verify listed %d ids, want the %d deleted, in time order", len(got), len(lacks))
	}
	// Twelve counts and a page for each of the four parts listed; a whole
	// read would take twelve pages of 100.
	if n := srv.Stats().Requests; n != 12+4 {
		t.Errorf("verify made %d API requests, want 16", n)
	}
	wantStderr(t, r, "at_source=1200 api_requests=16 received_ids=850 missing=350 buckets=12 buckets_listed=4 count_requests=12 list_requests=4")
	golden(t, "verify/received-by-buckets/stderr", normalize(lastLine(r.stderr), hostPort(srv.URL)))
}

// logLines are the log lines of stderr without what changes from run to
// run (the time of each line, how long the run took).
func logLines(s string, addrs ...string) string {
	s = regexp.MustCompile(`(?m)^time=\S+ `).ReplaceAllString(s, "")
	s = regexp.MustCompile(` took=\S+`).ReplaceAllString(s, "")
	return normalize(s, addrs...)
}

// TestDryRunSaysTheTotalIsALowerBound: a total the API says is a lower
// bound (it stops counting at 10,000 here) is printed as one, and so is
// what is reckoned from it (issue 26: the dry run printed activities=10000
// run_needs_requests=2 for a window of 12,000 and more).
func TestDryRunSaysTheTotalIsALowerBound(t *testing.T) {
	t.Parallel()
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 12_000})
	srv := mcastest.New(t, mcastest.Options{Activities: acts, TotalCap: 10_000})
	a := newAPIRun(t, srv, srv.Token())
	r := a.run(t, nil, "--dry-run", "--rate-limit", "20")
	wantCode(t, r, 0)
	golden(t, "run/dry-run-lower-bound/stderr", logLines(r.stderr, hostPort(srv.URL)))
}

// TestDryRunSeesCappedAnswers: answers capped at 100 activities whatever
// the limit (Microsoft documents that for API-token requests): the dry
// run reads the first page, sees it, and reckons the requests by it: at
// least 150 for 20,000 activities (issue 26: it promised 5 requests and
// 15 s for a run that took 209).
func TestDryRunSeesCappedAnswers(t *testing.T) {
	t.Parallel()
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 20_000})
	srv := mcastest.New(t, mcastest.Options{Activities: acts, AnswerCap: 100})
	a := newAPIRun(t, srv, srv.Token())
	r := a.run(t, nil, "--dry-run", "--rate-limit", "30")
	wantCode(t, r, 0)
	m := regexp.MustCompile(`run_needs_requests=(\d+)`).FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no estimate:\n%s", r.stderr)
	}
	if n, _ := strconv.Atoi(m[1]); n < 150 {
		t.Errorf("the dry run estimates %d requests for 20,000 activities in answers of 100, want at least 150", n)
	}
	golden(t, "run/dry-run-capped-answers/stderr", logLines(r.stderr, hostPort(srv.URL)))
	if n := srv.Stats().Requests; n != 2 {
		t.Errorf("the dry run made %d requests, want the count and the first page", n)
	}
}

// TestVerifyCountOnLowerBound: verify without --received compares the
// source's count with the checkpoint's. A total that is a lower bound
// neither passes (issue 26: at_source=10000 against sent=100304 exited 0,
// and would have had half the window been lost) nor makes verify claim
// missing activities it did not list: it counts the window in parts, and
// lists where the counts cannot settle it.
func TestVerifyCountOnLowerBound(t *testing.T) {
	t.Parallel()
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 12_000})
	srv := mcastest.New(t, mcastest.Options{Activities: acts, TotalCap: 10_000})
	a := newAPIRun(t, srv, srv.Token())
	wantCode(t, a.run(t, nil), 0)
	s := statusJSON(t, a.dir, "cp.db")
	if s.Total == nil || *s.Total != 10_000 || !s.TotalAtLeast || s.PercentOf != "window" || s.Percent != 100 || s.Sent != 12_000 {
		t.Fatalf("status: total %v (at least: %v), %v%% of %s, %d sent", s.Total, s.TotalAtLeast, s.Percent, s.PercentOf, s.Sent)
	}
	st := runBin(t, a.dir, nil, "status", "--checkpoint", "cp.db")
	wantCode(t, st, 0)
	if !strings.Contains(st.stdout, "percent:       100.0% of the window (by time: the source counted more than 10000 activities, a lower bound)\n") {
		t.Errorf("status does not show the count as a lower bound:\n%s", st.stdout)
	}
	chk := runBin(t, a.dir, nil, append([]string{"check"}, a.args[1:]...)...)
	if !strings.Contains(chk.stdout, "more than 10000 activities in the window (one more request; the API counts no further); a run needs at least 3 request(s) of 5000") {
		t.Errorf("check does not show the count as a lower bound:\n%s", chk.stdout)
	}
	verify := append([]string{"verify"}, a.args[1:]...)

	// In parts of 10 minutes, each under the API's count limit: exact
	// counts that match what was sent.
	before := srv.Stats().Requests
	r := runBin(t, a.dir, nil, append(verify, "--bucket", "10m")...)
	wantCode(t, r, 0)
	wantStderr(t, r, "the source's total is a lower bound (more than 10000): counting the window in 6 part(s) of --bucket",
		`at_source=12000 total="more than 10000" buckets=6 buckets_listed=0 count_requests=6 list_requests=0 api_requests=8`)
	if n := srv.Stats().Requests - before; n != 1+6+1 {
		t.Errorf("verify made %d requests, want the window's count, 6 part counts and the late arrivals' count", n)
	}

	// In one part of an hour, whose count is a lower bound again: listed.
	r = runBin(t, a.dir, nil, verify...)
	wantCode(t, r, 0)
	wantStderr(t, r, `at_source=12000 total="more than 10000" buckets=1 buckets_listed=1 count_requests=1 list_requests=3`)

	// MCAS saved 50 more in the window since: the source holds more than
	// the recovery sent, which only a listing shows; verify lists and then
	// says how many were not delivered, never 0.
	srv.Add(t, mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 50, First: 500_000})...)
	r = runBin(t, a.dir, nil, append(verify, "--bucket", "10m")...)
	wantCode(t, r, exitMissing)
	wantStderr(t, r, "listing the window at the source to count them exactly")
	golden(t, "verify/lower-bound-missing/stderr", lastLine(r.stderr))
}
