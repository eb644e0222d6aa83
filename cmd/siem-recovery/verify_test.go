package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestVerifyFindsRemovedIDs runs the example recovery, removes three
// events from what "the SIEM received", and checks that verify names
// exactly those ids and exits 10; with everything received it exits 0.
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
	r := runBin(t, root, nil, args("verify", "--received", received)...)
	wantCode(t, r, exitMissing)
	if got := strings.Fields(r.stdout); !slices.Equal(got, removed) {
		t.Fatalf("verify listed %v, want %v", got, removed)
	}
	wantStderr(t, r, "Activities missing: 3 of the window's 102 activities are not in "+received,
		"re-run the recovery with --exclude-ids "+received+" to send just those")

	// Sending just those completes the SIEM.
	resend := filepath.Join(dir, "resend.cef")
	fix := runBin(t, root, nil, "run", "--alert", "docs/examples/alert.json", "--source", "file:docs/examples/activities.jsonl",
		"--checkpoint", filepath.Join(dir, "fix.db"), "--exclude-ids", received, "--sink", "file:"+resend)
	wantCode(t, fix, 0)
	got, _ := os.ReadFile(resend)
	if sent := cefIDs(t, string(got)); !slices.Equal(sent, removed) {
		t.Fatalf("--exclude-ids sent %v, want %v", sent, removed)
	}
	wantStderr(t, fix, "skipped_this_run=99")
}

func TestVerifyIncompleteCheckpoint(t *testing.T) {
	dir := t.TempDir()
	writeBigExport(t, filepath.Join(dir, "big.jsonl"), 200_000)
	r := runBin(t, dir, nil, bigArgs(dir, "--max-duration", "200ms", "--page-size", "1000")...)
	wantCode(t, r, exitStopped)
	v := runBin(t, dir, nil, "verify", "--start", "1715673600000", "--end", "1715677200000",
		"--source", "file:"+filepath.Join(dir, "big.jsonl"), "--checkpoint", filepath.Join(dir, "cp.db"))
	wantCode(t, v, exitMissing)
	wantStderr(t, v, "Activities missing: the source has 198000 activities in the window; the recovery sent ", "(state stopped)")
}
