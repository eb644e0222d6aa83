package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"siem-recovery/recovery/mcas/mcastest"
)

// TestVerifyFindsRemovedIDs runs the example recovery, removes three
// events from what "the SIEM received", and checks that verify names
// exactly those ids, exits 10, and prints a command that, run as printed,
// sends exactly those three (a top-up pass of the completed checkpoint);
// the same command once more does nothing, and verify then exits 0.
func TestVerifyFindsRemovedIDs(t *testing.T) {
	dir := t.TempDir()
	root := repoRoot(t)
	args := func(cmd string, extra ...string) []string {
		return append([]string{cmd, "--alert", "docs/examples/alert.json", "--source", "file:docs/examples/activities.jsonl",
			"--checkpoint", filepath.Join(dir, "cp.db")}, extra...)
	}
	run := runBin(t, root, nil, args("run")...)
	wantCode(t, run, 0)

	all := runBin(t, root, nil, args("verify")...)
	wantCode(t, all, 0)
	wantStderr(t, all, "verified against the checkpoint", "at_source=102", "sent=102")

	lines := strings.Split(strings.TrimSuffix(run.stdout, "\n"), "\n")
	ids := cefIDs(t, run.stdout)
	removed := []string{ids[0], ids[50], ids[101]}
	kept := slices.Concat(lines[1:50], lines[51:101])
	received := writeFile(t, dir, "received.cef", strings.Join(kept, "\n")+"\n")
	resend := filepath.Join(dir, "resend.cef")
	// verify takes run's sink flags, so that its advice is complete.
	r := runBin(t, root, nil, args("verify", "--received", received, "--sink", "file:"+resend)...)
	wantCode(t, r, exitMissing)
	if got := strings.Fields(r.stdout); !slices.Equal(got, removed) {
		t.Fatalf("verify listed %v, want %v", got, removed)
	}
	advice := "siem-recovery run --alert docs/examples/alert.json --source file:docs/examples/activities.jsonl --sink file:" + resend +
		" --checkpoint " + filepath.Join(dir, "cp.db") + " --exclude-ids " + received
	golden(t, "verify/missing/stderr", strings.ReplaceAll(lastLine(r.stderr), dir, "DIR"))
	wantStderr(t, r, "Activities missing: 3 of the window's 102 activities are not in "+received,
		"; send just those with a top-up pass of the completed recovery: "+advice+"\n")

	// The advice, run as printed (from the same directory), sends just
	// those, into the same checkpoint.
	fix := runShell(t, root, nil, strings.Replace(advice, "siem-recovery", binary, 1))
	wantCode(t, fix, 0)
	got, _ := os.ReadFile(resend)
	if sent := cefIDs(t, string(got)); !slices.Equal(sent, removed) {
		t.Fatalf("the top-up sent %v, want %v", sent, removed)
	}
	wantStderr(t, fix, "the window was completed; sweeping it again to send what the SIEM lacks (top-up)",
		"top-up completed: the window is complete again", "sent_this_run=3 skipped_this_run=99", "pass=top-up")
	s := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
	if s.State != "completed" || s.Sent != 102 || s.TopUp == nil || s.TopUp.State != "completed" || s.TopUp.Sent != 3 ||
		s.TopUp.Skipped != 99 || s.TopUp.IDsFile != received || s.TopUp.Percent != 100 {
		t.Fatalf("status after the top-up: %+v %+v", s, s.TopUp)
	}

	// The same command again: nothing to do, nothing sent.
	again := runShell(t, root, nil, strings.Replace(advice, "siem-recovery", binary, 1))
	wantCode(t, again, 0)
	wantStderr(t, again, "already completed, nothing to do", "top_up_sent=3")
	if after, _ := os.ReadFile(resend); string(after) != string(got) {
		t.Fatal("the second top-up sent again")
	}
	// The SIEM now holds everything.
	whole := writeFile(t, dir, "whole.cef", string(got)+strings.Join(kept, "\n")+"\n")
	wantCode(t, runBin(t, root, nil, args("verify", "--received", whole)...), 0)
}

func TestVerifyIncompleteCheckpoint(t *testing.T) {
	dir := t.TempDir()
	writeBigExport(t, filepath.Join(dir, "big.jsonl"), 200_000)
	r := runBin(t, dir, nil, bigArgs(dir, "--max-duration", "200ms", "--page-size", "1000")...)
	wantCode(t, r, exitStopped)
	v := runBin(t, dir, nil, "verify", "--start", "1715673600000", "--end", "1715677200000",
		"--source", "file:"+filepath.Join(dir, "big.jsonl"), "--checkpoint", filepath.Join(dir, "cp.db"))
	wantCode(t, v, exitMissing)
	// How far the stopped run got varies; the wording does not.
	sent := regexp.MustCompile(`sent \d+ and skipped 0 \(state stopped\): at least \d+`)
	golden(t, "verify/incomplete/stderr", sent.ReplaceAllString(lastLine(v.stderr), "sent N and skipped 0 (state stopped): at least 198000-N"))
}

// TestVerifyWithNothingToCompare: no checkpoint and no --received used to
// warn "only the source was counted" and exit 0, which a script reads as
// "nothing missing". Nothing compared is exit 6, naming both.
func TestVerifyWithNothingToCompare(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "alert.json", goodAlert)
	writeFile(t, dir, "export.jsonl", goodExport)
	r := runBin(t, dir, nil, "verify", "--alert", "alert.json", "--source", "file:export.jsonl")
	wantCode(t, r, exitCheckpointUnusable)
	// Without --checkpoint, the recovery's default one in the state directory.
	golden(t, "verify/nothing-to-compare/stderr", strings.ReplaceAll(lastLine(r.stderr), os.Getenv("XDG_STATE_HOME"), "$XDG_STATE_HOME"))
}

// TestAPICountOnlyVerifyAndDryRun: counting a window of 15,000 activities
// (three pages) costs one request (the API's total), for a dry run and for
// verify without --received; a dry run says what a run will cost, by the
// page size the first page shows (one more request).
func TestAPICountOnlyVerifyAndDryRun(t *testing.T) {
	t.Parallel()
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 15_000})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	a := newAPIRun(t, srv, srv.Token())

	dry := a.run(t, nil, "--dry-run", "--rate-limit", "20")
	wantCode(t, dry, 0)
	wantStderr(t, dry, "dry run: nothing sent, no checkpoint written", "activities=15000 api_requests=2 page_size=5000 run_needs_requests=3 run_takes_at_rate_limit=9s")
	if n := srv.Stats().Requests; n > 2 {
		t.Fatalf("the dry run made %d API requests", n)
	}
	if _, err := os.Stat(filepath.Join(a.dir, "cp.db")); err == nil {
		t.Fatal("the dry run wrote a checkpoint")
	}

	run := a.run(t, nil)
	wantCode(t, run, 0)
	before := srv.Stats().Requests
	// verify takes run's flags as they are.
	v := runBin(t, a.dir, nil, append([]string{"verify"}, a.args[1:]...)...)
	wantCode(t, v, 0)
	// The requests it reports are those it made: the window's count, and
	// the count of what MCAS saved after the pass's horizon.
	n := srv.Stats().Requests - before
	if n > 2 {
		t.Fatalf("verify made %d API requests", n)
	}
	wantStderr(t, v, "verified against the checkpoint", fmt.Sprintf("at_source=15000 api_requests=%d sent=15000 skipped=0 state=completed", n))
	s := statusJSON(t, a.dir, "cp.db")
	if s.Total == nil || *s.Total != 15_000 || s.PercentOf != "activities" || s.Percent != 100 {
		t.Fatalf("status: total %v, percent %v of %s", s.Total, s.Percent, s.PercentOf)
	}
}

// TestVerifyAdviceHidesTheProxyPassword: the command verify prints for a
// top-up repeats run's flags, but never the password of --proxy (shown
// nowhere else either); it says the command needs it.
func TestVerifyAdviceHidesTheProxyPassword(t *testing.T) {
	dir := t.TempDir()
	const secret = "Pr0xy-S3cret-pass"
	run := runBin(t, dir, nil, exampleArgs(t, dir)...)
	wantCode(t, run, 0)
	lines := strings.Split(strings.TrimSuffix(run.stdout, "\n"), "\n")
	received := writeFile(t, dir, "received.cef", strings.Join(lines[1:], "\n")+"\n")
	args := append(exampleArgs(t, dir, "--received", received, "--proxy", "http://siem:"+secret+"@127.0.0.1:3128")[1:], "--sink", "file:out.cef")
	r := runBin(t, dir, nil, append([]string{"verify"}, args...)...)
	wantCode(t, r, exitMissing)
	if at := strings.Index(r.stderr+r.stdout, secret); at >= 0 {
		// Say where, without printing the password.
		t.Fatalf("verify printed the proxy's password at byte %d of its output", at)
	}
	wantStderr(t, r, " --proxy http://xxxxx@127.0.0.1:3128 ", "(give --proxy with its user and password)")
}
