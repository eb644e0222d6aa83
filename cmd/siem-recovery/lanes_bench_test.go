package main

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
				lanes := len(benchStatus(b, dir, "auto.db").Lanes)

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
				b.ReportMetric(float64(lanes), "default-lanes")
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

// BenchmarkKillLoop measures what every start makes of its life when runs
// are killed again and again (a crash loop, an eviction storm): the binary
// is killed with SIGKILL after a random 0.6 to 1.2 s (seeded: the same
// times for both), start after start, until a start completes the window,
// with the default (lanes planned beside the first) and with --parallel 1.
// It reports the starts each needed, the activities a start delivered,
// and the requests made and recorded; the file holds each activity
// exactly once or the benchmark fails.
//
// SIEM_RECOVERY_BENCH_KILLS=N (activities, e.g. 40000) turns it on;
// SIEM_RECOVERY_BENCH_KILL_ANSWER (default 250ms) is the API's answer
// time. Pages of 500 and --rate-limit 6000, so that the start-up, not the
// quota, bounds a start.
func BenchmarkKillLoop(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("SIEM_RECOVERY_BENCH_KILLS"))
	if n <= 0 {
		b.Skip("set SIEM_RECOVERY_BENCH_KILLS to a number of activities (scripts/bench.sh does)")
	}
	answer := 250 * time.Millisecond
	if a, err := time.ParseDuration(os.Getenv("SIEM_RECOVERY_BENCH_KILL_ANSWER")); err == nil {
		answer = a
	}
	window := recovery.Window{Start: 1715673600000, End: 1715673600000 + 24*3600*1000}
	for b.Loop() {
		for _, mode := range []struct {
			name  string
			extra []string
		}{{"default", nil}, {"parallel1", parallelArgs(b, "1")}} {
			srv := mcastest.New(b, mcastest.Options{Generated: mcastest.GenerateOptions{Window: window, Count: n}, AnswerTime: answer})
			dir := b.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "token.txt"), []byte(srv.Token()), 0o600); err != nil {
				b.Fatal(err)
			}
			args := append([]string{"run", "--start", strconv.FormatInt(window.Start, 10), "--end", strconv.FormatInt(window.End, 10),
				"--source", srv.URL, "--token-file", "token.txt", "--checkpoint", "cp.db", "--page-size", "500",
				"--rate-limit", "6000", "--sink", "file:out.jsonl", "--format", "json"}, mode.extra...)
			rng := rand.New(rand.NewPCG(23, 0))
			starts, kills := killLoop(b, dir, args, func() time.Duration {
				return 600*time.Millisecond + time.Duration(rng.Int64N(int64(600*time.Millisecond)))
			})
			if got := uniqueLines(b, filepath.Join(dir, "out.jsonl")); got != n {
				b.Fatalf("%s: the file holds %d distinct activities in as many lines, want %d each once", mode.name, got, n)
			}
			st := benchStatus(b, dir, "cp.db")
			b.Logf("%s: %d starts (%d killed), %d requests made, %d recorded", mode.name, starts, kills, srv.Stats().Requests, st.APIRequests)
			b.ReportMetric(float64(starts), mode.name+"-starts")
			b.ReportMetric(float64(n)/float64(starts), mode.name+"-activities/start")
			b.ReportMetric(float64(srv.Stats().Requests), mode.name+"-requests")
			b.ReportMetric(float64(st.APIRequests), mode.name+"-recorded-requests")
		}
	}
}

// killLoop starts the binary in dir with args, kills it after after()
// unless it ended first, and starts it again until a start exits 0; it
// gives up after 2,000 starts. It returns the starts, and those killed.
func killLoop(b *testing.B, dir string, args []string, after func() time.Duration) (starts, kills int) {
	b.Helper()
	for starts = 1; starts <= 2000; starts++ {
		cmd := exec.Command(binary, args...)
		cmd.Dir, cmd.Env = dir, cleanEnv()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-exited:
		case <-time.After(after()):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
		}
		if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() {
			kills++
			continue
		}
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			b.Fatalf("start %d exited %d:\n%s", starts, code, lastLines(stderr.String(), 20))
		}
		return starts, kills
	}
	b.Fatalf("not complete after %d starts", starts-1)
	return 0, 0
}

// uniqueLines is how many lines path holds, each an activity, and fails
// the benchmark if an activity's id shows twice, or a line is not one.
func uniqueLines(b *testing.B, path string) int {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var a struct {
			ID string `json:"_id"`
		}
		if json.Unmarshal(sc.Bytes(), &a) != nil || a.ID == "" || seen[a.ID] {
			b.Fatalf("line %d of %s is torn, or repeats %q", len(seen)+1, path, a.ID)
		}
		seen[a.ID] = true
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return len(seen)
}

// benchStatus reads the checkpoint cp in dir through the status command.
func benchStatus(b *testing.B, dir, cp string) statusReport {
	b.Helper()
	cmd := exec.Command(binary, "status", "--checkpoint", cp, "--json")
	cmd.Dir, cmd.Env = dir, cleanEnv()
	out, err := cmd.Output()
	var s statusReport
	if err == nil {
		err = json.Unmarshal(out, &s)
	}
	if err != nil {
		b.Fatalf("status --json: %v\n%s", err, out)
	}
	return s
}
