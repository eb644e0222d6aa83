package main

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// TestCheck runs the doctor on good and bad setups; its report (stdout) is
// compared with testdata/check/<case>/stdout, and its exit code is that of
// the first failure.
func TestCheck(t *testing.T) {
	base := []string{"check", "--alert", "alert.json", "--source", "file:export.jsonl", "--checkpoint", "cp.db"}
	tests := []struct {
		name  string
		args  []string
		setup func(t *testing.T, dir string)
		code  int
	}{
		{name: "all-ok", args: append(base, "--sink", "file:out.cef"), code: 0},
		// check used to pass a window of 21 seconds in 1970.
		{name: "window-epoch-seconds", args: []string{"check", "--start", "1715673600", "--end", "1715677200", "--source", "file:export.jsonl", "--sink", "file:out.cef"}, code: exitUsage},
		{name: "bad-alert", args: []string{"check", "--alert", "nope.json", "--source", "file:export.jsonl"}, code: exitUsage},
		{name: "bad-source-and-sink", args: []string{"check", "--alert", "alert.json", "--source", "file:nope.jsonl", "--sink", "file:no/such/dir/out", "--checkpoint", "cp.db"}, code: exitUsage},
		{name: "checkpoint-other-window", args: base, code: exitCheckpointUnusable, setup: func(t *testing.T, dir string) {
			r := runBin(t, dir, nil, "run", "--start", "2024-05-14T07:00:00Z", "--end", "2024-05-14T09:00:00Z", "--source", "file:export.jsonl", "--checkpoint", "cp.db")
			wantCode(t, r, 0)
		}},
		{name: "checkpoint-held", args: base, code: exitCheckpointUnusable, setup: func(t *testing.T, dir string) {
			r := runBin(t, dir, nil, "run", "--alert", "alert.json", "--source", "file:export.jsonl", "--checkpoint", "cp.db", "--max-duration", "1ns")
			wantCode(t, r, exitStopped)
			holdLock(t, filepath.Join(dir, "cp.db.lock"), 4242)
		}},
		// A bad --source is shown redacted, and the checkpoint, whose
		// identity needs the source, is not compared (no false mismatch).
		{name: "source-token-in-url", args: []string{"check", "--alert", "alert.json", "--source", "https://contoso.example/?token=SECRETQ", "--sink", "file:out.cef", "--checkpoint", "cp.db"}, code: exitUsage,
			setup: func(t *testing.T, dir string) {
				r := runBin(t, dir, nil, "run", "--alert", "alert.json", "--source", "file:export.jsonl", "--checkpoint", "cp.db")
				wantCode(t, r, 0)
			}},
		// --exclude-ids on a completed window makes a run a top-up pass.
		{name: "checkpoint-completed-top-up", args: append(base, "--exclude-ids", "siem-ids.txt"), code: 0, setup: func(t *testing.T, dir string) {
			r := runBin(t, dir, nil, "run", "--alert", "alert.json", "--source", "file:export.jsonl", "--checkpoint", "cp.db")
			wantCode(t, r, 0)
			writeFile(t, dir, "siem-ids.txt", "a\n")
		}},
		{name: "checkpoint-completed", args: base, code: 0, setup: func(t *testing.T, dir string) {
			r := runBin(t, dir, nil, "run", "--alert", "alert.json", "--source", "file:export.jsonl", "--checkpoint", "cp.db")
			wantCode(t, r, 0)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "alert.json", goodAlert)
			writeFile(t, dir, "export.jsonl", goodExport)
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			r := runBin(t, dir, nil, tt.args...)
			wantCode(t, r, tt.code)
			golden(t, filepath.Join("check", tt.name, "stdout"), r.stdout)
			if r.stderr != "" {
				t.Fatalf("check wrote to stderr: %s", r.stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "out.cef")); err == nil {
				info, _ := os.Stat(filepath.Join(dir, "out.cef"))
				if info.Size() != 0 {
					t.Fatal("check sent something")
				}
			}
		})
	}
}

// TestRunCost: the requests and the time a run needs, for counts up to the
// largest total the source takes and page sizes down to 1, never an
// overflowed (negative) duration (issue 22); a page size or rate limit of
// 0 is the default's, not a division by zero.
func TestRunCost(t *testing.T) {
	for _, tc := range []struct {
		n                   int64
		pageSize, perMinute int
		requests            int64
		took                string
	}{
		{0, 5000, 20, 1, "3s"},
		{10, 5000, 6000, 1, "0s"},
		{5000, 5000, 20, 1, "3s"},
		{5001, 5000, 20, 2, "6s"},
		{200_000, 5000, 30, 40, "1m20s"},
		{7000, 0, 0, 2, "6s"},
		{1_000_000_000_000, 5000, 20, 200_000_000, "166666h40m0s"},
		{1_000_000_000_000, 1, 20, 1_000_000_000_000, "more than 100 years"},
		{math.MaxInt64, 1, 1, math.MaxInt64, "more than 100 years"},
		{1_000_000_000, 100, 20, 10_000_000, "8333h20m0s"},
	} {
		requests, took := runCost(tc.n, tc.pageSize, tc.perMinute)
		if requests != tc.requests || took != tc.took {
			t.Errorf("runCost(%d, %d, %d) = %d, %s; want %d, %s", tc.n, tc.pageSize, tc.perMinute, requests, took, tc.requests, tc.took)
		}
	}
}
