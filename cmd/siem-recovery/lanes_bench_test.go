package main

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas/mcastest"
)

// BenchmarkLanes measures what scan lanes are for: a window recovered at
// the tenant's quota whatever the API's answer time. Against the emulator
// answering every request in a fixed time, it runs the binary with
// --parallel 1 and with the default (auto), side by side in one run, and
// reports both against the quota-bound ideal: the requests the window
// needs (its activities over the page size) over the rate limit. It also
// reports the requests each used, and those of a dry run and of a
// count-only verify. scripts/bench.sh prints its figures as a table.
//
// SIEM_RECOVERY_BENCH_LANES=N (activities, e.g. 200000) turns it on;
// SIEM_RECOVERY_BENCH_ANSWERS (default "2s,5s") and
// SIEM_RECOVERY_BENCH_RATE (requests a minute, default 30) set the rest.
func BenchmarkLanes(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("SIEM_RECOVERY_BENCH_LANES"))
	if n <= 0 {
		b.Skip("set SIEM_RECOVERY_BENCH_LANES to a number of activities (scripts/bench.sh does)")
	}
	rate := 30
	if r, err := strconv.Atoi(os.Getenv("SIEM_RECOVERY_BENCH_RATE")); err == nil && r > 0 {
		rate = r
	}
	answers := os.Getenv("SIEM_RECOVERY_BENCH_ANSWERS")
	if answers == "" {
		answers = "2s,5s"
	}
	const pageSize = 5000
	window := recovery.Window{Start: 1715673600000, End: 1715673600000 + 24*3600*1000}
	for _, a := range strings.Split(answers, ",") {
		answer, err := time.ParseDuration(a)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("answer="+a, func(b *testing.B) {
			for b.Loop() {
				srv := mcastest.New(b, mcastest.Options{
					Generated:  mcastest.GenerateOptions{Window: window, Count: n},
					AnswerTime: answer,
				})
				dir := b.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "token.txt"), []byte(srv.Token()), 0o600); err != nil {
					b.Fatal(err)
				}
				args := []string{"--start", strconv.FormatInt(window.Start, 10), "--end", strconv.FormatInt(window.End, 10),
					"--source", srv.URL, "--token-file", "token.txt", "--rate-limit", strconv.Itoa(rate), "--page-size", strconv.Itoa(pageSize)}
				measure := func(name string, extra ...string) (time.Duration, int) {
					before := srv.Stats().Requests
					start := time.Now()
					benchRun(b, dir, append(append([]string{}, extra...), args...)...)
					took := time.Since(start)
					requests := srv.Stats().Requests - before
					b.Logf("%s: %v, %d requests", name, took.Round(10*time.Millisecond), requests)
					return took, requests
				}
				_, dry := measure("dry run", "run", "--dry-run")
				one, oneReq := measure("--parallel 1", parallelArgs(b, "1", "run", "--checkpoint", "one.db", "--sink", "file:one.out")...)
				auto, autoReq := measure("default", "run", "--checkpoint", "auto.db", "--sink", "file:auto.out")
				_, verify := measure("verify", "verify", "--checkpoint", "auto.db")

				needed := math.Ceil(float64(n) / pageSize)
				ideal := time.Duration(needed / float64(rate) * float64(time.Minute))
				b.ReportMetric(ideal.Seconds(), "ideal-s")
				b.ReportMetric(one.Seconds(), "parallel1-s")
				b.ReportMetric(auto.Seconds(), "default-s")
				b.ReportMetric(ideal.Seconds()/one.Seconds(), "parallel1/ideal")
				b.ReportMetric(ideal.Seconds()/auto.Seconds(), "default/ideal")
				b.ReportMetric(needed, "ideal-requests")
				b.ReportMetric(float64(oneReq), "parallel1-requests")
				b.ReportMetric(float64(autoReq), "default-requests")
				b.ReportMetric(float64(dry), "dryrun-requests")
				b.ReportMetric(float64(verify), "verify-requests")
			}
		})
	}
}

// parallelArgs adds --parallel N to args where the binary has the flag.
func parallelArgs(b *testing.B, lanes string, args ...string) []string {
	b.Helper()
	help, _ := exec.Command(binary, "run", "--help").CombinedOutput()
	if !strings.Contains(string(help), "--parallel") {
		return args
	}
	return append(args, "--parallel", lanes)
}

// benchRun runs the binary in dir and fails the benchmark unless it
// exits 0; a run is bounded by 30 minutes.
func benchRun(b *testing.B, dir string, args ...string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, lastLines(string(out), 20))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
