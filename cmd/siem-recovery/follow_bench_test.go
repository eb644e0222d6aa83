package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"siem-recovery/internal/activitygen"
	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas/mcastest"
	"siem-recovery/sink/rsyslogtest"
)

// BenchmarkFollow measures what issue 24 asks of a feed (follow), against
// the emulator holding a live tenant: activities saved every second, a
// third of them dated hours before they were saved (a connector's late
// ones), and an alert every 10 seconds. Two runs of the binary, both with
// activities and alerts (follow's default), into a file:
//
//   - live: the shipped build, --poll 1s --settle-margin 1s, for
//     SIEM_RECOVERY_BENCH_FOLLOW_LIVE (default 60s). The lag is measured
//     on each record, from when MCAS saved it (created; an alert's date) to
//     when its line appeared in the file, against margin + poll + one
//     cycle; every record must arrive once. Then the feed idles: the API
//     requests of an idle cycle, by data type.
//   - cycles: SIEM_RECOVERY_BENCH_FOLLOW cycles (e.g. 10000) of a build
//     whose shortest poll is 1 ms (-tags followbench: the same code, only
//     the floor of --poll lowered), --poll 1ms --settle-margin 1s, over the
//     same live feed. At 10, 100, 1,000 and every further 1,000 cycles it
//     notes the process's RSS and Go heap (its own /metrics) and the
//     checkpoint file's size: a feed that runs for months must not grow
//     with its cycles. At the shipped floor (100 ms) 10,000 cycles take
//     17 minutes and more; at 1 ms they take what the cycles' own work
//     (an API request and a few checkpoint transactions a data type) takes.
//
// scripts/bench.sh prints its figures as rows of its table.
func BenchmarkFollow(b *testing.B) {
	cycles, _ := strconv.Atoi(os.Getenv("SIEM_RECOVERY_BENCH_FOLLOW"))
	if cycles <= 0 {
		b.Skip("set SIEM_RECOVERY_BENCH_FOLLOW to a number of cycles, e.g. 10000 (scripts/bench.sh does)")
	}
	live := time.Minute
	if d, err := time.ParseDuration(os.Getenv("SIEM_RECOVERY_BENCH_FOLLOW_LIVE")); err == nil && d > 0 {
		live = d
	}
	fast := filepath.Join(b.TempDir(), "siem-recovery-followbench")
	build := exec.Command("go", "build", "-tags", "followbench", "-o", fast, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build with -tags followbench: %v\n%s", err, out)
	}
	for b.Loop() {
		feed := newBenchFeed(b)
		feed.start(b)
		benchFollowLive(b, feed, live)
		benchFollowCycles(b, feed, fast, cycles)
		feed.stop()
	}
}

// benchFeed is the live tenant: the emulator, and what it saved when.
type benchFeed struct {
	srv     *mcastest.Server
	mu      sync.Mutex
	saved   map[string]benchRecord // by id
	seq     int
	alerts  int
	halt    chan struct{}
	stopped chan struct{}
}

type benchRecord struct {
	at      int64 // when MCAS saved it (created; an alert's date), Unix ms
	listed  int64 // when the emulator listed it first, Unix ms
	older   bool  // an activity that happened hours before it was saved
	isAlert bool
}

func newBenchFeed(b *testing.B) *benchFeed {
	return &benchFeed{srv: mcastest.New(b, mcastest.Options{}), saved: map[string]benchRecord{}}
}

// start saves 10 activities every second, a third of them dated up to 6
// hours back, and an alert every 10 seconds, until stop.
func (f *benchFeed) start(b *testing.B) {
	f.halt, f.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(f.stopped)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for n := 0; ; n++ {
			f.save(b, 10, n%10 == 0)
			select {
			case <-f.halt:
				return
			case <-tick.C:
			}
		}
	}()
}

func (f *benchFeed) stop() {
	close(f.halt)
	<-f.stopped
}

func (f *benchFeed) save(b *testing.B, n int, alert bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now().UnixMilli()
	batch := make([]json.RawMessage, n)
	older := make([]bool, n)
	for i := range batch {
		date := now
		if older[i] = f.seq%3 == 0; older[i] {
			date -= int64(f.seq%(6*3600)) * 1000
		}
		a := activitygen.New(f.seq, date)
		a.Created = now
		batch[i] = a.Append(nil)
		f.seq++
	}
	f.srv.Add(b, batch...)
	listed := time.Now().UnixMilli()
	for i, id := range mcastest.IDs(batch) {
		f.saved[id] = benchRecord{at: now, listed: listed, older: older[i]}
	}
	if alert {
		raw := activitygen.AppendAlert(nil, f.alerts, now)
		f.srv.AddAlerts(b, raw)
		f.saved[mcastest.AlertIDs([]json.RawMessage{raw})[0]] = benchRecord{at: now, listed: time.Now().UnixMilli(), isAlert: true}
		f.alerts++
	}
}

func (f *benchFeed) savedSince(from int64) map[string]benchRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]benchRecord{}
	for id, r := range f.saved {
		if r.at >= from {
			out[id] = r
		}
	}
	return out
}

// benchFollower is a follow process of the benchmark.
type benchFollower struct {
	cmd     *exec.Cmd
	done    chan struct{}
	dir     string
	metrics string // its /metrics URL
	stderr  *countingWriter
}

// startBenchFollower starts a feed of feed's tenant from start (Unix ms),
// named name (its checkpoint and its file).
func startBenchFollower(b *testing.B, program string, feed *benchFeed, name string, start int64, extra ...string) *benchFollower {
	b.Helper()
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token.txt"), []byte(feed.srv.Token()), 0o600); err != nil {
		b.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(rsyslogtest.FreePort(b, "tcp"))
	args := append([]string{"follow", "--source", feed.srv.URL, "--token-file", "token.txt", "--checkpoint", name + ".db",
		"--start", strconv.FormatInt(start, 10), "--rate-limit", "60000", "--settle-margin", "1s",
		"--sink", "file:" + name + ".jsonl", "--format", "json", "--metrics-addr", addr, "--log-format", "json"}, extra...)
	f := &benchFollower{cmd: exec.Command(program, args...), done: make(chan struct{}), dir: dir, metrics: "http://" + addr + "/metrics",
		stderr: &countingWriter{}}
	f.cmd.Dir, f.cmd.Env, f.cmd.Stderr = dir, cleanEnv(), f.stderr
	if err := f.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { f.cmd.Wait(); close(f.done) }()
	b.Cleanup(func() {
		f.cmd.Process.Kill()
		<-f.done
	})
	return f
}

// scrape reads the follower's metrics; nil while it does not answer.
func (f *benchFollower) scrape() map[string]float64 {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(f.metrics)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if v, err := strconv.ParseFloat(value, 64); ok && err == nil {
			out[name] = v
		}
	}
	return out
}

// quiet scrapes the follower's metrics and the emulator's counts at a
// moment of its sleep between cycles: the last request 200 ms ago at
// least and none during the scrape, so that no cycle is half counted.
func (f *benchFollower) quiet(b *testing.B, feed *benchFeed) (map[string]float64, mcastest.Stats) {
	b.Helper()
	for range 600 {
		reqs := feed.srv.Requests()
		if len(reqs) > 0 && time.Since(reqs[len(reqs)-1].At) > 200*time.Millisecond {
			before := feed.srv.Stats()
			m := f.scrape()
			if after := feed.srv.Stats(); m != nil && after.Requests == before.Requests {
				return m, after
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatal("the feed never paused between cycles")
	return nil, mcastest.Stats{}
}

// feedCycles are the cycles every data type completed.
func feedCycles(m map[string]float64) float64 {
	return min(m[`siem_recovery_cycles_total{data="activities"}`], m[`siem_recovery_cycles_total{data="alerts"}`])
}

func (f *benchFollower) stopFollower(b *testing.B) {
	b.Helper()
	f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.done:
	case <-time.After(time.Minute):
		b.Fatal("the feed did not stop within a minute of SIGTERM")
	}
	if code := f.cmd.ProcessState.ExitCode(); code != exitStopped {
		b.Fatalf("exit %d after SIGTERM, want 75\n%s", code, f.stderr.tail())
	}
}

// benchFollowLive runs the shipped build over the live feed for d, then
// idle, and reports the lag of each record and the requests of an idle
// cycle.
func benchFollowLive(b *testing.B, feed *benchFeed, d time.Duration) {
	const poll, margin = time.Second, time.Second
	from := time.Now().UnixMilli()
	f := startBenchFollower(b, binary, feed, "live", from, "--poll", poll.String())
	out := filepath.Join(f.dir, "live.jsonl")
	tail := newLineTail(out)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		tail.read(b)
		time.Sleep(20 * time.Millisecond)
	}
	feed.stop()
	// What was saved last is listed a margin later, read within a poll.
	settle := time.Now().Add(margin + poll + 2*time.Second)
	for time.Now().Before(settle) {
		tail.read(b)
		time.Sleep(20 * time.Millisecond)
	}
	// Idle: nothing new. The requests of 30 cycles or so, by data type,
	// counted between two moments in the feed's sleep.
	m0, s0 := f.quiet(b, feed)
	time.Sleep(30 * (poll + 100*time.Millisecond))
	m1, s1 := f.quiet(b, feed)
	tail.read(b)
	f.stopFollower(b)
	saved := feed.savedSince(from)
	feed.start(b) // the live feed goes on for the cycles' run

	var delays, older []time.Duration
	for id, r := range saved {
		seen, n := tail.seen[id], tail.count[id]
		if n != 1 {
			b.Fatalf("record %s (alert %v) saved at %s, listed %d ms later, arrived %d times, want once; the feed's log:\n%s",
				id, r.isAlert, recovery.FormatMillis(r.at), r.listed-r.at, n, f.stderr.all())
		}
		lag := seen.Sub(time.UnixMilli(r.at))
		delays = append(delays, lag)
		if r.older {
			older = append(older, lag)
		}
	}
	if len(tail.count) != len(saved) {
		b.Fatalf("%d records in the file, %d saved", len(tail.count), len(saved))
	}
	slices.Sort(delays)
	slices.Sort(older)
	actCycles := m1[`siem_recovery_cycles_total{data="activities"}`] - m0[`siem_recovery_cycles_total{data="activities"}`]
	alertCycles := m1[`siem_recovery_cycles_total{data="alerts"}`] - m0[`siem_recovery_cycles_total{data="alerts"}`]
	actReq := float64((s1.Requests - s1.AlertRequests) - (s0.Requests - s0.AlertRequests))
	alertReq := float64(s1.AlertRequests - s0.AlertRequests)
	b.Logf("live: %d records over %v (%d activities dated up to 6 h back), lag p50 %v, max %v (dated back: max %v), margin + poll = %v",
		len(saved), d, len(older), delays[len(delays)/2], delays[len(delays)-1], older[len(older)-1], margin+poll)
	b.Logf("idle: %.0f cycles of activities, %.0f requests; %.0f of alerts, %.0f requests", actCycles, actReq, alertCycles, alertReq)
	b.ReportMetric(float64(len(saved)), "live-records")
	b.ReportMetric(delays[len(delays)/2].Seconds(), "lag-p50-s")
	b.ReportMetric(delays[len(delays)-1].Seconds(), "lag-max-s")
	b.ReportMetric(older[len(older)-1].Seconds(), "lag-max-older-s")
	b.ReportMetric((margin + poll).Seconds(), "margin+poll-s")
	b.ReportMetric(actReq/actCycles, "idle-requests/activities-cycle")
	b.ReportMetric(alertReq/alertCycles, "idle-requests/alerts-cycle")
}

// benchFollowCycles runs n cycles of the fast build over the live feed
// and reports its memory and checkpoint at 10 cycles and after.
func benchFollowCycles(b *testing.B, feed *benchFeed, program string, n int) {
	f := startBenchFollower(b, program, feed, "cycles", time.Now().UnixMilli(), "--poll", "1ms")
	type mark struct {
		cycles          float64
		rss, heap       float64 // bytes
		checkpoint      int64   // bytes; the most since the mark before
		requests, sent  float64
		logBytes        int64
		at              time.Duration
		maxRSS, maxHeap float64 // since the mark before
	}
	began := time.Now()
	var marks []mark
	next := 10
	var maxRSS, maxHeap float64
	var maxCP int64
	for next <= n {
		select {
		case <-f.done:
			b.Fatalf("the feed ended: exit %d\n%s", f.cmd.ProcessState.ExitCode(), f.stderr.tail())
		case <-time.After(50 * time.Millisecond):
		}
		m := f.scrape()
		if m == nil {
			continue
		}
		info, err := os.Stat(filepath.Join(f.dir, "cycles.db"))
		if err != nil {
			continue // before the first cycle delivered
		}
		maxRSS, maxHeap, maxCP = max(maxRSS, m["process_resident_memory_bytes"]), max(maxHeap, m["go_memstats_heap_inuse_bytes"]), max(maxCP, info.Size())
		c := feedCycles(m)
		if c < float64(next) {
			continue
		}
		marks = append(marks, mark{cycles: c, rss: m["process_resident_memory_bytes"], heap: m["go_memstats_heap_inuse_bytes"],
			checkpoint: maxCP, requests: m["siem_recovery_api_requests_total"],
			sent:     m[`siem_recovery_events_sent_total{data="activities"}`] + m[`siem_recovery_events_sent_total{data="alerts"}`],
			logBytes: f.stderr.bytes(), at: time.Since(began), maxRSS: maxRSS, maxHeap: maxHeap})
		maxRSS, maxHeap, maxCP = 0, 0, 0
		switch {
		case next < 1000:
			next *= 10
		default:
			next += 1000
		}
	}
	f.stopFollower(b)
	mib := func(v float64) float64 { return v / (1 << 20) }
	var table strings.Builder
	for _, m := range marks {
		fmt.Fprintf(&table, "\ncycles %6.0f at %8v: RSS %5.1f MiB (most since the last mark %5.1f), Go heap in use %5.1f MiB (most %5.1f), checkpoint %6d bytes, %6.0f requests, %7.0f sent, %8d bytes of log",
			m.cycles, m.at.Round(time.Second), mib(m.rss), mib(m.maxRSS), mib(m.heap), mib(m.maxHeap), m.checkpoint, m.requests, m.sent, m.logBytes)
	}
	// On stderr: go test cuts a benchmark's log after ten lines.
	fmt.Fprintf(os.Stderr, "the cycles of %s (BenchmarkFollow):%s\n", filepath.Base(program), table.String())
	first, last := marks[0], marks[len(marks)-1]
	b.ReportMetric(last.cycles, "cycles")
	b.ReportMetric(last.at.Seconds(), "cycles-s")
	b.ReportMetric(mib(first.rss), "rss-at-10-MiB")
	b.ReportMetric(mib(last.rss), "rss-at-end-MiB")
	b.ReportMetric(last.rss/first.rss, "rss-ratio")
	b.ReportMetric(float64(first.checkpoint), "checkpoint-at-10-bytes")
	b.ReportMetric(float64(last.checkpoint), "checkpoint-at-end-bytes")
	b.ReportMetric(float64(last.checkpoint)/float64(first.checkpoint), "checkpoint-ratio")
	b.ReportMetric((last.requests-first.requests)/(last.cycles-first.cycles)/2, "requests/data-type-cycle")
	b.ReportMetric(float64(last.logBytes-first.logBytes)/(last.cycles-first.cycles), "log-bytes/cycle")
	b.ReportMetric(last.sent, "cycles-sent")
}

// lineTail reads the records a feed writes into its file as they come,
// noting when each id first appeared and how many times.
type lineTail struct {
	path   string
	off    int64
	rest   []byte
	seen   map[string]time.Time
	count  map[string]int
	record struct {
		ID string `json:"_id"`
	}
}

func newLineTail(path string) *lineTail {
	return &lineTail{path: path, seen: map[string]time.Time{}, count: map[string]int{}}
}

func (t *lineTail) read(b *testing.B) {
	f, err := os.Open(t.path)
	if err != nil {
		return // not yet created
	}
	defer f.Close()
	data, err := io.ReadAll(io.NewSectionReader(f, t.off, 1<<40))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	t.off += int64(len(data))
	data = append(t.rest, data...)
	for {
		i := strings.IndexByte(string(data), '\n')
		if i < 0 {
			break
		}
		if err := json.Unmarshal(data[:i], &t.record); err != nil {
			b.Fatalf("a line of the sink file: %v: %.200s", err, data[:i])
		}
		if t.count[t.record.ID] == 0 {
			t.seen[t.record.ID] = now
		}
		t.count[t.record.ID]++
		data = data[i+1:]
	}
	t.rest = slices.Clone(data)
}

// countingWriter keeps a follower's stderr: its size and its last lines.
type countingWriter struct {
	mu   sync.Mutex
	n    int64
	last []byte
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += int64(len(p))
	w.last = append(w.last, p...)
	if len(w.last) > 1<<20 {
		w.last = slices.Clone(w.last[len(w.last)-1<<19:])
	}
	return len(p), nil
}

func (w *countingWriter) bytes() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

func (w *countingWriter) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.last)
}

func (w *countingWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return lastLines(string(w.last), 20)
}
