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
				var rss int64 // the peak RSS of the last run, KiB
				measure := func(name string, extra ...string) (time.Duration, int) {
					before := srv.Stats().Requests
					start := time.Now()
					rss = benchRun(b, dir, append(append([]string{}, extra...), args...)...)
					took := time.Since(start)
					requests := srv.Stats().Requests - before
					b.Logf("%s: %v, %d requests, peak RSS %d MiB", name, took.Round(10*time.Millisecond), requests, rss>>10)
					return took, requests
				}
				_, dry := measure("dry run", "run", "--dry-run")
				one, oneReq := measure("--parallel 1", parallelArgs(b, "1", "run", "--checkpoint", "one.db", "--sink", "file:one.out")...)
				oneRSS := rss
				auto, autoReq := measure("default", "run", "--checkpoint", "auto.db", "--sink", "file:auto.out")
				autoRSS := rss
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
				b.ReportMetric(float64(oneRSS>>10), "parallel1-peakrss-MiB")
				b.ReportMetric(float64(autoRSS>>10), "default-peakrss-MiB")
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
// exits 0; a run is bounded by 30 minutes. With SIEM_RECOVERY_BENCH_PEAKRSS
// naming scripts/benchtools/peakrss (bench.sh does), it runs the binary
// through it and returns the run's peak RSS in KiB; else 0. (The binary's
// own rusage would not do: Linux keeps the peak across fork and exec, so a
// child of this process, which holds the emulator, starts from its peak.)
func benchRun(b *testing.B, dir string, args ...string) int64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	program := binary
	if p := os.Getenv("SIEM_RECOVERY_BENCH_PEAKRSS"); p != "" {
		program, args = p, append([]string{binary}, args...)
	}
	cmd := exec.CommandContext(ctx, program, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, lastLines(string(out), 20))
	}
	var kib int64
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "peakrss_kib "); ok {
			kib, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return kib
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
