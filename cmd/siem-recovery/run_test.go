package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// exampleActivity is what the tests read back from the bundled export.
type exampleActivity struct {
	ID        string `json:"_id"`
	Timestamp int64  `json:"timestamp"`
	AppID     int    `json:"appId"`
}

const (
	exampleStart = 1715673600000 // docs/examples/alert.json startDate
	exampleEnd   = 1715677200000 // endDate
)

// exampleLines returns the export's lines whose activity is in the
// example window and passes keep.
func exampleLines(t *testing.T, keep func(exampleActivity) bool) (ids, lines []string) {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "docs/examples/activities.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var a exampleActivity
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatal(err)
		}
		if exampleStart <= a.Timestamp && a.Timestamp < exampleEnd && (keep == nil || keep(a)) {
			ids = append(ids, a.ID)
			lines = append(lines, sc.Text())
		}
	}
	return ids, lines
}

var externalID = regexp.MustCompile(`externalId=(\S+)`)

func cefIDs(t *testing.T, out string) []string {
	t.Helper()
	var ids []string
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		m := externalID.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("no externalId in line %q", line)
		}
		ids = append(ids, m[1])
	}
	return ids
}

// exampleArgs is the README's first command, with the checkpoint in dir.
func exampleArgs(t *testing.T, dir string, extra ...string) []string {
	root := repoRoot(t)
	return append([]string{"run",
		"--alert", filepath.Join(root, "docs/examples/alert.json"),
		"--source", "file:" + filepath.Join(root, "docs/examples/activities.jsonl"),
		"--checkpoint", filepath.Join(dir, "cp.db"),
	}, extra...)
}

func TestRunExampleToStdoutThenAlreadyCompleted(t *testing.T) {
	dir := t.TempDir()
	r := runBin(t, dir, nil, exampleArgs(t, dir)...)
	wantCode(t, r, 0)
	wantIDs, _ := exampleLines(t, nil)
	if len(wantIDs) != 102 {
		t.Fatalf("the example has %d activities in its window, want 102", len(wantIDs))
	}
	if got := cefIDs(t, r.stdout); !slices.Equal(got, wantIDs) {
		t.Fatalf("stdout ids differ from the window's:\n got %v\nwant %v", got, wantIDs)
	}
	for _, line := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
		if !regexp.MustCompile(`^2024-05-14T0[89]:\d\d:\d\d\.\d{3}Z CEF:0\|MCAS\|SIEM_Agent\|` + regexp.QuoteMeta(version) + `\|`).MatchString(line) {
			t.Fatalf("not a CEF line of the window: %q", line)
		}
	}
	wantStderr(t, r, "completed", "sent_total=102")
	info, err := os.Stat(filepath.Join(dir, "cp.db"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("checkpoint mode: %v %v", info.Mode(), err)
	}

	again := runBin(t, dir, nil, exampleArgs(t, dir)...)
	wantCode(t, again, 0)
	if again.stdout != "" {
		t.Fatalf("a completed re-run sent: %q", again.stdout)
	}
	wantStderr(t, again, "already completed, nothing to do")
}

func TestRunExampleJSONWithFilterToFile(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	r := runBin(t, dir, nil, exampleArgs(t, dir,
		"--filter", filepath.Join(repoRoot(t), "docs/examples/filter.json"),
		"--format", "json", "--sink", "file:"+out)...)
	wantCode(t, r, 0)
	_, lines := exampleLines(t, func(a exampleActivity) bool {
		return a.AppID == 11161 || a.AppID == 20893 || a.AppID == 14509
	})
	if len(lines) < 20 || len(lines) > 90 {
		t.Fatalf("the example filter keeps %d activities: make the example exercise it", len(lines))
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Join(lines, "\n") + "\n"; string(got) != want {
		t.Fatalf("file sink holds\n%s\nwant the export's lines exactly\n%s", got, want)
	}
}

func TestRunEnvironmentVariables(t *testing.T) {
	dir := t.TempDir()
	root := repoRoot(t)
	r := runBin(t, dir, []string{
		"SIEM_RECOVERY_START=2024-05-14T08:00:00Z",
		"SIEM_RECOVERY_END=1715677200000",
		"SIEM_RECOVERY_SOURCE=file:" + filepath.Join(root, "docs/examples/activities.jsonl"),
		"SIEM_RECOVERY_CHECKPOINT=" + filepath.Join(dir, "env.db"),
		"SIEM_RECOVERY_FORMAT=json",
		"SIEM_RECOVERY_SINK=-",
	}, "run", "--format", "cef") // flags win over the environment
	wantCode(t, r, 0)
	wantIDs, _ := exampleLines(t, nil)
	if got := cefIDs(t, r.stdout); !slices.Equal(got, wantIDs) {
		t.Fatalf("ids %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "env.db")); err != nil {
		t.Fatalf("SIEM_RECOVERY_CHECKPOINT ignored: %v", err)
	}
}

func TestDryRunCountsAndWritesNothing(t *testing.T) {
	dir := t.TempDir()
	r := runBin(t, dir, nil, exampleArgs(t, dir, "--dry-run", "--sink", "file:"+filepath.Join(dir, "out"))...)
	wantCode(t, r, 0)
	wantStderr(t, r, "dry run: nothing sent, no checkpoint written", "activities=102")
	for _, name := range []string{"cp.db", "cp.db.lock", "out"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("the dry run created %s", name)
		}
	}
	if r.stdout != "" {
		t.Fatalf("the dry run sent %q", r.stdout)
	}
}

// TestHelpExplainsEachCommand: every command's --help says what it does,
// how to call it, and (for the working commands) the exit codes.
func TestHelpExplainsEachCommand(t *testing.T) {
	for cmd, want := range map[string][]string{
		"run": {"USAGE:", "siem-recovery run --alert ALERT.json", "Exit codes: 0 completed", "75 stopped", "--exclude-ids FILE", "[$SIEM_RECOVERY_PAGE_SIZE]"},
		"status": {"siem-recovery status [--checkpoint PATH]", "the only checkpoint in the state directory", "pending (no run yet)", "running (in progress", "stopped (the last run stopped before the end date, exit 75:", "waiting (the window has not ended",
			"connection_error (running or stopped, and nothing delivered for over 2 h)", "disconnected (the same for over 12 h)", "completed (window delivered", "failed (the last run ended on an error", "--json"},
		"verify":  {"step 2 of the MCAS recovery procedure", "--received FILE", "10 activities missing", "--bucket D"},
		"gaps":    {"--received FILE --start T --end T", "--bucket D", "--json", "10 activities missing", "never a secret"},
		"check":   {"OK or FAIL", "Nothing is sent", "--proxy URL"},
		"version": {"version field of every CEF header"},
		"follow":  {"--once", "--poll D", "--metrics-addr HOST:PORT", "48 h ago", "exit 75 after the batch in flight"},
	} {
		r := runBin(t, t.TempDir(), nil, cmd, "--help")
		wantCode(t, r, 0)
		for _, w := range want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("%s --help lacks %q", cmd, w)
			}
		}
	}
	top := runBin(t, t.TempDir(), nil, "--help")
	for _, w := range []string{"original SIEM", "disables itself", "retired SIEM agent", "run ", "follow ", "status ", "verify ", "gaps ", "check "} {
		if !strings.Contains(top.stdout, w) {
			t.Errorf("--help lacks %q", w)
		}
	}
}

// TestMovedExportResumes: the checkpoint knows an export by its content,
// so the same export reached by another path is the same recovery.
func TestMovedExportResumes(t *testing.T) {
	dir := t.TempDir()
	r := runBin(t, dir, nil, exampleArgs(t, dir)...)
	wantCode(t, r, 0)
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "docs/examples/activities.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	moved := writeFile(t, dir, "moved.jsonl", string(data))
	again := runBin(t, dir, nil, "run", "--alert", filepath.Join(repoRoot(t), "docs/examples/alert.json"),
		"--source", "file:"+moved, "--checkpoint", filepath.Join(dir, "cp.db"))
	wantCode(t, again, 0)
	wantStderr(t, again, "already completed, nothing to do")
}
