package main

import (
	"context"
	"encoding/json"
	"math/rand/v2"
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

// follow (issue 24) through the binary, against the emulator holding a
// live tenant: activities saved as the test goes, read by when MCAS saved
// them.

// liveTenant is the emulator and the activities it saved so far.
type liveTenant struct {
	srv  *mcastest.Server
	mu   sync.Mutex
	acts []json.RawMessage
	seq  int
}

func newLiveTenant(t *testing.T) *liveTenant {
	t.Helper()
	return &liveTenant{srv: mcastest.New(t, mcastest.Options{})}
}

// save saves n activities now (created: now, happened up to an hour
// before, as late ones do).
func (l *liveTenant) save(t *testing.T, n int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now().UnixMilli()
	batch := make([]json.RawMessage, n)
	for i := range batch {
		a := activitygen.New(l.seq, now-int64(l.seq%3600)*1000)
		a.Created = now
		batch[i] = a.Append(nil)
		l.seq++
	}
	l.srv.Add(t, batch...)
	l.acts = append(l.acts, batch...)
}

func (l *liveTenant) saved() []json.RawMessage {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acts)
}

// followArgs are a feed of the live tenant into out.jsonl, a fast one: a
// poll of 100 ms, a margin of 1 s.
func followArgs(l *liveTenant, start time.Time, extra ...string) []string {
	return append([]string{"follow", "--source", l.srv.URL, "--token-file", "token.txt", "--checkpoint", "feed.db",
		"--start", strconv.FormatInt(start.UnixMilli(), 10), "--data", "activities", "--poll", "100ms", "--settle-margin", "1s",
		"--rate-limit", "60000", "--sink", "file:out.jsonl", "--format", "json"}, extra...)
}

// The "done when": a feed killed -9 three times over a live feed,
// then --once, holds every activity saved before the feed stopped exactly
// once; a second --once sends only what is new.
func TestFollowLiveFeedOnceAcrossKills(t *testing.T) {
	t.Parallel()
	l := newLiveTenant(t)
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", l.srv.Token()+"\n")
	start := time.Now().Add(-time.Hour)
	l.save(t, 500) // the backlog a first start finds
	args := followArgs(l, start, "--page-size", "100")

	// Saved while the feed runs, every 50 ms, for the three runs it is
	// killed in.
	stopSaving := make(chan struct{})
	saving := make(chan struct{})
	go func() {
		defer close(saving)
		for {
			select {
			case <-stopSaving:
				return
			case <-time.After(50 * time.Millisecond):
				l.save(t, 7)
			}
		}
	}()
	rnd := rand.New(rand.NewPCG(24, 1))
	for kill := 1; kill <= 3; kill++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd, stderr, done := startBinIn(ctx, t, dir, nil, args...)
		select {
		case <-done:
			cancel()
			t.Fatalf("the feed ended on its own: %s", stderr.String())
		case <-time.After(time.Duration(800+rnd.IntN(1200)) * time.Millisecond):
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		cancel()
	}
	close(stopSaving)
	<-saving
	time.Sleep(1100 * time.Millisecond) // past the margin: all of it is listed
	r := runBin(t, dir, nil, append(args, "--once")...)
	wantCode(t, r, 0)
	wantStderr(t, r, "caught up")
	assertDelivered(t, filepath.Join(dir, "out.jsonl"), l.saved())

	// Once more, after a few more were saved: only those go out.
	l.save(t, 11)
	time.Sleep(1100 * time.Millisecond)
	r = runBin(t, dir, nil, append(args, "--once")...)
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(dir, "out.jsonl"), l.saved())
	st := statusJSON(t, dir, "feed.db")
	if !st.Feed || st.Sent != int64(len(l.saved())) || st.State != recovery.StateStopped && st.State != recovery.FeedRunning {
		t.Errorf("status: feed %v, state %s, %d sent of %d", st.Feed, st.State, st.Sent, len(l.saved()))
	}
}

// SIGTERM stops a feed with exit 75 (after the batch in flight), and
// status says stopped; while it ran, status said running with its lag,
// and the metrics and /healthz answered.
func TestFollowStatusMetricsAndStop(t *testing.T) {
	t.Parallel()
	l := newLiveTenant(t)
	l.save(t, 40)
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", l.srv.Token()+"\n")
	port := rsyslogtest.FreePort(t, "tcp")
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd, stderr, done := startBinIn(ctx, t, dir, nil, followArgs(l, time.Now().Add(-time.Hour), "--metrics-addr", addr)...)
	time.Sleep(1100 * time.Millisecond) // past the margin
	// The page is recorded, then the cycle's end, then the metrics are
	// told: wait for the cycle's end.
	st := awaitStatus(ctx, t, dir, filepath.Join(dir, "feed.db"), func(s statusReport) bool { return s.Sent == 40 && s.RunActive && s.Cycles > 0 })
	if !st.Feed || st.State != recovery.FeedRunning || st.LagSeconds > 5 {
		t.Errorf("a feed caught up: state %s, lag %d s, %d cycles", st.State, st.LagSeconds, st.Cycles)
	}
	for {
		metrics, missing := httpGet(t, "http://"+addr+"/metrics"), ""
		for _, want := range []string{`siem_recovery_events_sent_total{data="activities"} 40`, `siem_recovery_state{state="running"} 1`,
			"siem_recovery_lag_seconds{data=\"activities\"}", "siem_recovery_api_requests_total", "siem_recovery_cycles_total"} {
			if !strings.Contains(metrics, want) {
				missing = want
			}
		}
		if missing == "" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("metrics lack %q:\n%.2000s", missing, metrics)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if health := httpGet(t, "http://"+addr+"/healthz"); health != "ok\n" {
		t.Errorf("/healthz: %q", health)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	<-done
	if code := cmd.ProcessState.ExitCode(); code != exitStopped {
		t.Fatalf("exit %d, want 75\n%s", code, stderr.String())
	}
	if st := statusJSON(t, dir, "feed.db"); st.State != recovery.StateStopped || st.RunActive {
		t.Errorf("after SIGTERM: state %s, run active %v", st.State, st.RunActive)
	}
}

// A feed's checkpoint is no recovery's: run refuses it, and follow a
// recovery's (exit 6, both named).
func TestFollowAndRunRefuseEachOthersCheckpoint(t *testing.T) {
	t.Parallel()
	l := newLiveTenant(t)
	l.save(t, 5)
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", l.srv.Token()+"\n")
	time.Sleep(1100 * time.Millisecond)
	wantCode(t, runBin(t, dir, nil, append(followArgs(l, time.Now().Add(-time.Hour)), "--once")...), 0)
	r := runBin(t, dir, nil, "run", "--source", l.srv.URL, "--token-file", "token.txt", "--checkpoint", "feed.db",
		"--start", strconv.FormatInt(time.Now().Add(-time.Hour).UnixMilli(), 10), "--end", strconv.FormatInt(time.Now().Add(-time.Minute).UnixMilli(), 10))
	wantCode(t, r, exitCheckpointUnusable)
	wantStderr(t, r, "feed.db is the checkpoint of a feed (siem-recovery follow, from "+l.srv.URL+"), not of a recovery; give this recovery a --checkpoint of its own")

	a := newAPIRun(t, l.srv, l.srv.Token())
	wantCode(t, a.run(t, nil), 0)
	r = runBin(t, a.dir, nil, "follow", "--source", l.srv.URL, "--token-file", "token.txt", "--checkpoint", "cp.db", "--once")
	wantCode(t, r, exitCheckpointUnusable)
	wantStderr(t, r, "cp.db is the checkpoint of a recovery (siem-recovery run, window ", "not of a feed; give the feed a --checkpoint of its own")
}

// An idle feed asks the API once per cycle and data type: one page, empty.
func TestFollowIdleCycleIsOneRequest(t *testing.T) {
	t.Parallel()
	l := newLiveTenant(t)
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", l.srv.Token()+"\n")
	args := followArgs(l, time.Now().Add(-time.Hour))
	args[slices.Index(args, "activities")] = "activities,alerts"
	wantCode(t, runBin(t, dir, nil, append(args, "--once")...), 0)
	before := l.srv.Stats().Requests
	time.Sleep(1100 * time.Millisecond)
	wantCode(t, runBin(t, dir, nil, append(args, "--once")...), 0)
	if got := l.srv.Stats().Requests - before; got != 2 {
		t.Errorf("an idle cycle of two data types made %d requests, want 2", got)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	_, body := probe(t, url)
	return body
}

// --once catches up to the present of its start and exits, even when
// every cycle takes longer than --poll (here the API answers in 300 ms, a
// poll is 100 ms): a cycle then ends more than a poll behind the clock, and
// chasing it would never end.
func TestFollowOnceEndsWhenCyclesOutlastThePoll(t *testing.T) {
	t.Parallel()
	l := &liveTenant{srv: mcastest.New(t, mcastest.Options{AnswerTime: 300 * time.Millisecond})}
	l.save(t, 9)
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", l.srv.Token()+"\n")
	args := followArgs(l, time.Now().Add(-time.Hour), "--once")
	args[slices.Index(args, "activities")] = "activities,alerts"
	time.Sleep(1100 * time.Millisecond) // past the margin
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, stderr, done := startBinIn(ctx, t, dir, nil, args...)
	<-done
	if code := cmd.ProcessState.ExitCode(); code != exitCompleted {
		t.Fatalf("exit %d (-1: still cycling after 30 s), want 0\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "caught up") {
		t.Errorf("no caught up line:\n%s", stderr.String())
	}
	assertDelivered(t, filepath.Join(dir, "out.jsonl"), l.saved())
	// One cycle a data type: a request each.
	if got := l.srv.Stats().Requests; got != 2 {
		t.Errorf("%d requests, want 2 (a cycle of activities, one of alerts)", got)
	}
}

// A planned stop during a cycle says where the feed stands: its horizon
// and what it sent since it began, not the cycle's pass ("0.0% of the
// window done (0 sent in all)" of a feed that sent all along).
func TestFollowStopDuringACycleSaysWhereTheFeedStands(t *testing.T) {
	t.Parallel()
	l := newLiveTenant(t)
	l.save(t, 6)
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", l.srv.Token()+"\n")
	time.Sleep(1100 * time.Millisecond) // past the margin
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd, stderr, done := startBinIn(ctx, t, dir, nil, followArgs(l, time.Now().Add(-time.Hour))...)
	awaitStatus(ctx, t, dir, filepath.Join(dir, "feed.db"), func(s statusReport) bool { return s.Sent == 6 })
	// The API fails from now on: the next cycle retries, and is stopped
	// in a retry's wait.
	l.srv.FailNext(1000, mcastest.Fault{Status: 503})
	for !strings.Contains(stderr.String(), "API request failed; retrying") {
		select {
		case <-ctx.Done():
			t.Fatalf("no retry:\n%s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	<-done
	if code := cmd.ProcessState.ExitCode(); code != exitStopped {
		t.Fatalf("exit %d, want 75\n%s", code, stderr.String())
	}
	st := statusJSON(t, dir, "feed.db")
	want := "Stopped before the end date: stopped during a cycle of activities: everything before " + st.Horizon +
		" (by created) is delivered, 6 sent since the feed began; progress is saved; re-run the same command to go on from where it stands (checkpoint feed.db)\n"
	if lines := strings.SplitAfter(stderr.String(), "\n"); lines[len(lines)-2] != want {
		t.Errorf("the stop says\n%q\nwant\n%q", lines[len(lines)-2], want)
	}
	if st.State != recovery.StateStopped || st.Sent != 6 {
		t.Errorf("status: %s, %d sent", st.State, st.Sent)
	}
}

// status's text of a feed says where the feed stands (since when, by what,
// all delivered before when, the lag, the cycles) and none of a window's
// position or percent: a feed's window moves with the clock.
func TestFollowStatusText(t *testing.T) {
	t.Parallel()
	l := newLiveTenant(t)
	l.save(t, 5)
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", l.srv.Token()+"\n")
	time.Sleep(1100 * time.Millisecond)
	start := time.Now().Add(-time.Hour)
	wantCode(t, runBin(t, dir, nil, append(followArgs(l, start), "--once")...), 0)
	r := runBin(t, dir, nil, "status", "--checkpoint", "feed.db")
	wantCode(t, r, 0)
	lines := strings.Split(r.stdout, "\n")
	feed := ""
	for _, line := range lines {
		if strings.HasPrefix(line, "position:") || strings.HasPrefix(line, "percent:") || strings.HasPrefix(line, "window:") {
			t.Errorf("a feed's status has a window's line %q:\n%s", line, r.stdout)
		}
		if strings.HasPrefix(line, "feed:") {
			feed = strings.Join(strings.Fields(line), " ")
		}
	}
	want := "feed: since " + recovery.FormatMillis(start.UnixMilli()) + ", by created; all delivered before "
	if !strings.HasPrefix(feed, want) || !strings.Contains(feed, " 1 cycles, the last at ") {
		t.Errorf("feed line %q, want %q..., 1 cycles, the last at ...", feed, want)
	}
	if !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), " sent: 5 skipped: 0 ") {
		t.Errorf("status lacks sent 5:\n%s", r.stdout)
	}
}
