package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
)

var stamps = regexp.MustCompile(`20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ`)

// TestStatusAfterRun checks status's text and JSON (golden files under
// testdata/status/) after the example recovery; the times of the run are
// replaced by a placeholder.
func TestStatusAfterRun(t *testing.T) {
	dir := t.TempDir()
	// Run from the repository root, as the README does, so the source reads
	// the same in the golden file on every machine.
	r := runBin(t, repoRoot(t), nil, "run", "--alert", "docs/examples/alert.json",
		"--source", "file:docs/examples/activities.jsonl", "--checkpoint", dir+"/cp.db", "--sink", "file:"+dir+"/out")
	wantCode(t, r, 0)
	for _, format := range []string{"text", "json"} {
		args := []string{"status", "--checkpoint", "cp.db"}
		if format == "json" {
			args = append(args, "--json")
		}
		s := runBin(t, dir, nil, args...)
		wantCode(t, s, 0)
		golden(t, "status/completed/"+format, stamps.ReplaceAllString(s.stdout, "TIME"))
	}
	missing := runBin(t, dir, nil, "status", "--checkpoint", "nope.db")
	wantCode(t, missing, exitCheckpointUnusable)
	golden(t, "status/missing/stderr", missing.stderr)
}

func TestDisplayState(t *testing.T) {
	now := time.Date(2024, 5, 14, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		stored      string
		lastSuccess time.Duration // before now; 0 for none
		created     time.Duration
		want        string
	}{
		{recovery.StatePending, 0, 30 * time.Hour, "pending"},
		{recovery.StateCompleted, 30 * time.Hour, 40 * time.Hour, "completed"},
		{recovery.StateFailed, time.Minute, time.Hour, "failed"},
		{recovery.StateRunning, time.Minute, time.Hour, "running"},
		{recovery.StateStopped, time.Hour, 2 * time.Hour, "stopped"},
		{recovery.StateStopped, 0, time.Minute, "stopped"},
		{recovery.StateStopped, 2*time.Hour + time.Second, 3 * time.Hour, "connection_error"},
		{recovery.StateRunning, 2*time.Hour + time.Second, 3 * time.Hour, "connection_error"},
		{recovery.StateRunning, 0, 3 * time.Hour, "connection_error"},
		{recovery.StateStopped, 12*time.Hour + time.Second, 13 * time.Hour, "disconnected"},
	}
	for _, tt := range tests {
		st := recovery.State{Pass: recovery.Pass{State: tt.stored}, CreatedAt: now.Add(-tt.created)}
		if tt.lastSuccess > 0 {
			st.LastSuccessAt = now.Add(-tt.lastSuccess)
		}
		if got := displayState(st, now); got != tt.want {
			t.Errorf("%s, last success %v ago: %s, want %s", tt.stored, tt.lastSuccess, got, tt.want)
		}
	}
}

func TestVersion(t *testing.T) {
	r := runBin(t, t.TempDir(), nil, "version")
	wantCode(t, r, 0)
	if !strings.HasPrefix(r.stdout, "siem-recovery "+version+" (go") {
		t.Fatalf("version printed %q", r.stdout)
	}
}
