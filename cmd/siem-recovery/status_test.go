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
		golden(t, "status/completed/"+format, strings.ReplaceAll(stamps.ReplaceAllString(s.stdout, "TIME"), dir, "DIR"))
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
		dead        bool // no run holds the checkpoint: the last one died
		want        string
	}{
		{recovery.StatePending, 0, 30 * time.Hour, false, "pending"},
		{recovery.StateCompleted, 30 * time.Hour, 40 * time.Hour, false, "completed"},
		{recovery.StateFailed, time.Minute, time.Hour, false, "failed"},
		{recovery.StateRunning, time.Minute, time.Hour, false, "running"},
		{recovery.StateStopped, time.Hour, 2 * time.Hour, false, "stopped"},
		{recovery.StateStopped, 0, time.Minute, false, "stopped"},
		{recovery.StateStopped, 2*time.Hour + time.Second, 3 * time.Hour, false, "connection_error"},
		{recovery.StateRunning, 2*time.Hour + time.Second, 3 * time.Hour, false, "connection_error"},
		{recovery.StateRunning, 0, 3 * time.Hour, false, "connection_error"},
		{recovery.StateStopped, 12*time.Hour + time.Second, 13 * time.Hour, false, "disconnected"},
		// A running state no run holds: the run died (kill -9), and the
		// recovery is stopped, not running; old, it is disconnected still.
		{recovery.StateRunning, time.Minute, time.Hour, true, "stopped"},
		{recovery.StateRunning, 12*time.Hour + time.Second, 13 * time.Hour, true, "disconnected"},
		// Waiting for the window's end is no silence, however long.
		{recovery.StateWaiting, 30 * time.Hour, 40 * time.Hour, true, "waiting"},
	}
	for _, tt := range tests {
		st := recovery.State{Pass: recovery.Pass{State: tt.stored}, CreatedAt: now.Add(-tt.created)}
		if tt.lastSuccess > 0 {
			st.LastSuccessAt = now.Add(-tt.lastSuccess)
		}
		if got := displayState(st, now, !tt.dead); got != tt.want {
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

// TestStatusOfATopUp: while a top-up is unfinished its state is the
// checkpoint's, aged from its own start (not the recovery's, days ago);
// the recovery's own figures stay as they were.
func TestStatusOfATopUp(t *testing.T) {
	now := time.Date(2024, 5, 14, 12, 0, 0, 0, time.UTC)
	total := int64(100)
	st := recovery.State{CreatedAt: now.Add(-30 * time.Hour), Total: &total,
		Pass: recovery.Pass{State: recovery.StateCompleted, Sent: 100, LastSuccessAt: now.Add(-29 * time.Hour), CompletedAt: now.Add(-29 * time.Hour)},
		TopUps: []recovery.Pass{{State: recovery.StateRunning, StartedAt: now.Add(-time.Minute), IDsFile: "siem.txt", Skipped: 40, Sent: 2,
			Lane: recovery.Lane{Reached: 1715673600000}}}}
	r := newStatusReport(st, true, now)
	if r.State != "running" || r.Percent != 100 || r.Sent != 100 || r.TopUp == nil || r.TopUp.State != "running" ||
		r.TopUp.Percent != 42 || r.TopUp.Position != "2024-05-14T08:00:00.000Z" || r.TopUp.IDsFile != "siem.txt" {
		t.Fatalf("%+v %+v", r, r.TopUp)
	}
	st.TopUps[0].State, st.TopUps[0].CompletedAt = recovery.StateCompleted, now
	if r := newStatusReport(st, false, now); r.State != "completed" || r.TopUp.State != "completed" || r.TopUp.Percent != 100 {
		t.Fatalf("after the top-up: %+v %+v", r, r.TopUp)
	}
}

// TestStatusOfScanLanes: a recovery read in scan lanes shows where each
// lane stands, how much of its planned share it has done, and the pass
// stands where its slowest lane does.
func TestStatusOfScanLanes(t *testing.T) {
	now := time.Date(2024, 5, 15, 12, 0, 0, 0, time.UTC)
	total := int64(30000)
	w := recovery.Window{Start: 1715673600000, End: 1715673600000 + 24*3600*1000}
	hour := int64(3600 * 1000)
	st := recovery.State{Window: w, Source: "https://contoso.eu2.portal.cloudappsecurity.com", Total: &total, CreatedAt: now.Add(-time.Hour),
		UpdatedAt: now.Add(-time.Minute), APIRequests: 9,
		Pass: recovery.Pass{State: recovery.StateStopped, Scope: recovery.Scope{Window: w}, Sent: 12400, LastSuccessAt: now.Add(-time.Minute),
			Lane: recovery.Lane{Reached: w.Start + 9*hour + 120000, Progress: 0.41},
			Lanes: []recovery.ScanLane{
				{Window: recovery.Window{Start: w.Start, End: w.Start + 9*hour}, State: recovery.StateCompleted, Planned: 10000, Sent: 10000,
					Lane: recovery.Lane{Progress: 1, Reached: w.Start + 9*hour - 5}},
				{Window: recovery.Window{Start: w.Start + 9*hour, End: w.Start + 10*hour}, State: recovery.StateStopped, Planned: 10000, Sent: 1900,
					Lane: recovery.Lane{Progress: 0.03, Reached: w.Start + 9*hour + 120000, InFlight: recovery.InFlight{Activities: 500}, Cursor: recovery.Cursor{Token: []byte(`{"next_filters":{"x":1}}`)}}},
				{Window: recovery.Window{Start: w.Start + 10*hour, End: w.End}, State: recovery.StateStopped, Planned: 10000, Sent: 500,
					Lane: recovery.Lane{Progress: 0.1, Reached: w.Start + 11*hour}},
			}}}
	r := newStatusReport(st, false, now)
	if r.Position != "2024-05-14T17:02:00.000Z (the slowest of 3 lanes)" || r.InFlight != 500 || len(r.Lanes) != 3 ||
		r.Lanes[1].Percent != 19 || r.Lanes[0].Percent != 100 || r.Percent != 41.3 {
		t.Fatalf("%+v", r)
	}
	var text strings.Builder
	if err := r.writeText(&text); err != nil {
		t.Fatal(err)
	}
	golden(t, "status/lanes/text", text.String())
}
