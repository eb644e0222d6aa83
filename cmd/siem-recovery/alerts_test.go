package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas/mcastest"
)

// Alerts through the binary (issue 25): run --data alerts delivers each
// alert of the window once, in the agent's alert CEF; --data
// activities,alerts delivers both into one sink, each data type with its
// own pass in the one checkpoint.

// TestRunDataAlertsInTheAgentsCEF: each alert of the window once, as the
// agent's alert line (severity 3, no rt, cn1, cs3 relatedAudits).
func TestRunDataAlertsInTheAgentsCEF(t *testing.T) {
	t.Parallel()
	alerts := mcastest.GenerateAlerts(mcastest.GenerateOptions{Window: apiWindow, Count: 330})
	srv := mcastest.New(t, mcastest.Options{GeneratedAlerts: mcastest.GenerateOptions{Window: apiWindow, Count: 330},
		Activities: mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 50})})
	a := newAPIRun(t, srv, srv.Token())
	r := a.run(t, nil, "--data", "alerts", "--format", "cef", "--sink", "file:alerts.cef")
	wantCode(t, r, 0)
	data, err := os.ReadFile(filepath.Join(a.dir, "alerts.cef"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	seen := map[string]bool{}
	for _, l := range lines {
		id := between(l, "externalId=", " start=")
		if seen[id] {
			t.Fatalf("alert %s twice", id)
		}
		seen[id] = true
		if !strings.Contains(l, "CEF:0|MCAS|SIEM_Agent|") || !strings.Contains(l, "|3|externalId=") || strings.Contains(l, " rt=") ||
			!strings.Contains(l, " cn1Label=riskScore cn1=") || !strings.Contains(l, " cs3Label=relatedAudits cs3=") {
			t.Fatalf("not the agent's alert line: %s", l)
		}
	}
	for _, raw := range alerts {
		al, err := recovery.DecodeAlert(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !seen[al.ID] {
			t.Fatalf("alert %s not delivered (%d lines)", al.ID, len(lines))
		}
	}
	if len(lines) != len(alerts) {
		t.Fatalf("%d lines for %d alerts", len(lines), len(alerts))
	}
	if st := srv.Stats(); st.AlertRequests == 0 || st.Requests != st.AlertRequests {
		t.Errorf("%d requests, %d of them for alerts: activities were asked for", st.Requests, st.AlertRequests)
	}
}

// TestRunActivitiesAndAlertsOnceAcrossKills: both data types of a window
// into one file, exactly once each, across kill -9 in either pass; status
// shows both, and a re-run of the completed checkpoint does nothing.
func TestRunActivitiesAndAlertsOnceAcrossKills(t *testing.T) {
	t.Parallel()
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 3000})
	alerts := mcastest.GenerateAlerts(mcastest.GenerateOptions{Window: apiWindow, Count: 700})
	srv := mcastest.New(t, mcastest.Options{Activities: acts, Alerts: alerts})
	srv.FailEvery(1, mcastest.Fault{Delay: 30 * time.Millisecond}) // kills land mid-run
	a := newAPIRun(t, srv, srv.Token())
	args := append(slices.Clone(a.args), "--data", "activities,alerts", "--page-size", "100")
	out := filepath.Join(a.dir, "out.jsonl")
	var actsBytes, alertsBytes int64
	for _, raw := range acts {
		actsBytes += int64(len(raw)) + 1
	}
	for _, raw := range alerts {
		alertsBytes += int64(len(raw)) + 1
	}
	// Twice in the activities' pass, once in the alerts'.
	for _, at := range []int64{200 << 10, actsBytes / 2, actsBytes + alertsBytes/3} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd, stderr, done := startBinIn(ctx, t, a.dir, nil, args...)
		waitForSize(t, out, at, done)
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		cancel()
		if t.Failed() {
			t.Fatal(stderr.String())
		}
	}
	srv.ClearFaults()
	r := runBin(t, a.dir, nil, args...)
	wantCode(t, r, 0)
	assertDelivered(t, out, slices.Concat(acts, alerts))

	st := statusJSON(t, a.dir, "cp.db")
	if st.State != "completed" || st.Data != "activities" || st.Sent != 3000 || len(st.Streams) != 1 ||
		st.Streams[0].Data != "alerts" || st.Streams[0].State != "completed" || st.Streams[0].Sent != 700 {
		t.Fatalf("status: %s %s %d, streams %+v", st.State, st.Data, st.Sent, st.Streams)
	}
	again := runBin(t, a.dir, nil, args...)
	wantCode(t, again, 0)
	wantStderr(t, again, "already completed, nothing to do")
}

// TestCheckpointOfOtherDataNamesTheFlag: a checkpoint made for activities
// and alerts, resumed with activities only, names --data as the fix.
func TestCheckpointOfOtherDataNamesTheFlag(t *testing.T) {
	t.Parallel()
	srv := mcastest.New(t, mcastest.Options{Activities: mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 10}),
		GeneratedAlerts: mcastest.GenerateOptions{Window: apiWindow, Count: 5}})
	a := newAPIRun(t, srv, srv.Token())
	wantCode(t, a.run(t, nil, "--data", "activities,alerts"), 0)
	r := a.run(t, nil)
	wantCode(t, r, exitCheckpointUnusable)
	wantStderr(t, r, "data activities,alerts, but this run asks for", "re-run with --data activities,alerts: the checkpoint was made for it")
}

// between is the text of s between the first from and the next to.
func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return s
}

// An export of alerts (--data alerts --source file:): the bundled
// example's 12 alerts of the window, each once, in the agent's alert
// lines; an export holds one data type, so --data activities,alerts on one
// is a usage error that says so.
func TestExportOfAlerts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root := repoRoot(t)
	r := runBin(t, dir, nil, "run", "--alert", filepath.Join(root, "docs/examples/alert.json"), "--data", "alerts",
		"--source", "file:"+filepath.Join(root, "docs/examples/alerts.jsonl"), "--checkpoint", "cp.db", "--sink", "file:out.cef")
	wantCode(t, r, 0)
	data, err := os.ReadFile(filepath.Join(dir, "out.cef"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	ids := map[string]bool{}
	for _, l := range lines {
		ids[between(l, "externalId=", " start=")] = true
		if !strings.Contains(l, "|3|externalId=") {
			t.Errorf("not an alert line: %s", l)
		}
	}
	if len(lines) != 12 || len(ids) != 12 {
		t.Fatalf("%d lines, %d alerts; want 12 of each", len(lines), len(ids))
	}
	r = runBin(t, dir, nil, "run", "--alert", filepath.Join(root, "docs/examples/alert.json"), "--data", "activities,alerts",
		"--source", "file:"+filepath.Join(root, "docs/examples/alerts.jsonl"), "--checkpoint", "cp2.db")
	wantCode(t, r, exitUsage)
	wantStderr(t, r, "Usage error: --data activities,alerts: an export holds one data type; an export holds activities or alerts: give --data activities or --data alerts")
}

// verify checks each data type of a recovery: the alerts' count with the
// alerts' state, and with --received the alerts the SIEM lacks.
func TestVerifyActivitiesAndAlerts(t *testing.T) {
	t.Parallel()
	alerts := mcastest.GenerateAlerts(mcastest.GenerateOptions{Window: apiWindow, Count: 60})
	srv := mcastest.New(t, mcastest.Options{Activities: mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 200}), Alerts: alerts})
	a := newAPIRun(t, srv, srv.Token())
	wantCode(t, a.run(t, nil, "--data", "activities,alerts"), 0)
	r := runBin(t, a.dir, nil, append([]string{"verify"}, append(slices.Clone(a.args[1:]), "--data", "activities,alerts")...)...)
	wantCode(t, r, 0)
	wantStderr(t, r, "data=activities", "data=alerts", "at_source=60")
	// The SIEM lost three alerts: verify lists them, and exits 10.
	data, err := os.ReadFile(filepath.Join(a.dir, "out.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	lost := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if al, err := recovery.DecodeAlert([]byte(l)); err == nil && strings.HasPrefix(al.ID, "6571c0ffee0d") && len(lost) < 3 {
			lost[al.ID] = true
			continue
		}
		kept = append(kept, l)
	}
	writeFile(t, a.dir, "siem.jsonl", strings.Join(kept, "\n")+"\n")
	r = runBin(t, a.dir, nil, append([]string{"verify"}, append(slices.Clone(a.args[1:]), "--data", "activities,alerts", "--received", "siem.jsonl")...)...)
	wantCode(t, r, exitMissing)
	for id := range lost {
		if !strings.Contains(r.stdout, id+"\n") {
			t.Errorf("verify does not list the lost alert %s:\n%s", id, r.stdout)
		}
	}
	wantStderr(t, r, "3 of the window's 60 alerts are not in siem.jsonl")
}
