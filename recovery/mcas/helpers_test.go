package mcas_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas"
	"siem-recovery/recovery/mcas/mcastest"
)

// testWindow is the recovery window of most tests: one day.
var testWindow = recovery.Window{Start: 1714521600000, End: 1714521600000 + 24*3600*1000}

// generate makes n activities in testWindow with a burst of burst
// activities sharing one millisecond from position at, plus activities
// just outside the window that must never be delivered.
func generate(n, burst, at int) (all []json.RawMessage, inWindow []string) {
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: testWindow, Count: n, Burst: burst, BurstIndex: at})
	inWindow = mcastest.IDs(acts)
	outside := mcastest.Generate(mcastest.GenerateOptions{Window: recovery.Window{Start: testWindow.Start - 5000, End: testWindow.Start}, Count: 3})
	after := mcastest.Generate(mcastest.GenerateOptions{Window: recovery.Window{Start: testWindow.End, End: testWindow.End + 5000}, Count: 3})
	// Their ids must differ from the window's: Generate's ids start with
	// the timestamp, and those lie outside the window.
	all = append(append(append(all, outside...), acts...), after...)
	return all, inWindow
}

// logBuffer is a slog destination a test can read, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// newSource builds a Source for srv with fast retries, a generous rate
// limit and a debug logger; edit adjusts the config.
func newSource(t *testing.T, srv *mcastest.Server, edit func(*mcas.Config)) (*mcas.Source, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg := mcas.Config{
		BaseURL:      srv.URL,
		Token:        recovery.NewToken(srv.Token()),
		Window:       testWindow,
		RateLimit:    600000, // 100 µs apart: the rate limit is tested on its own
		RetryInitial: 5 * time.Millisecond,
		RetryMax:     20 * time.Millisecond,
		// A page of 5,000 real-shaped activities is about 20 MB: under
		// the race detector on a loaded machine an answer has taken
		// more than 10 s, and the retry broke tests that count requests.
		RequestTimeout: time.Minute,
		TLSConfig:      srv.TLSConfig(),
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&cfg)
	}
	src, err := mcas.New(cfg)
	if err != nil {
		t.Fatalf("mcas.New: %v", err)
	}
	return src, logs
}

// drained is what fetching a window page by page gave.
type drained struct {
	ids      []string
	pages    []recovery.Page
	requests int // the sum of Page.Requests
	next     recovery.Cursor
}

// drainAll fetches the whole window from its start within timeout, fails
// the test on any error (adding what about says, when set), and checks that
// every wanted id came exactly once.
func drainAll(t *testing.T, src recovery.Source, timeout time.Duration, want []string, about func() string) drained {
	t.Helper()
	d, err := drain(ctxFor(t, timeout), t, src, recovery.Cursor{}, 0)
	if err != nil {
		extra := ""
		if about != nil {
			extra = "\n" + about()
		}
		t.Fatalf("Fetch: %v%s", err, extra)
	}
	assertExactlyOnce(t, d.ids, want)
	return d
}

// drain fetches from cur until the last page, or until maxPages pages
// (0: no limit) when a test wants to stop half way.
func drain(ctx context.Context, t *testing.T, src recovery.Source, cur recovery.Cursor, maxPages int) (drained, error) {
	t.Helper()
	var d drained
	prev := -1.0
	for i := 0; maxPages == 0 || i < maxPages; i++ {
		if i > 100000 {
			t.Fatal("drain: no last page after 100000 pages")
		}
		page, err := src.Fetch(ctx, cur)
		d.requests += page.Requests
		if err != nil {
			return d, err
		}
		if page.Requests < 1 {
			t.Errorf("page %d: Requests = %d, want ≥ 1", i, page.Requests)
		}
		if page.Progress < prev || page.Progress > 1 {
			t.Errorf("page %d: Progress %v after %v", i, page.Progress, prev)
		}
		prev = page.Progress
		for _, a := range page.Activities {
			// On one time or the other (--by date or created): the
			// tests check the exact ids.
			if !testWindow.Contains(a.Timestamp) && !testWindow.Contains(a.Created) {
				t.Errorf("activity %s at %d (saved %d) is outside the window", a.ID, a.Timestamp, a.Created)
			}
			d.ids = append(d.ids, a.ID)
		}
		page.Activities = nil
		d.pages = append(d.pages, page)
		cur = page.Next
		d.next = cur
		if page.Last {
			if page.Progress != 1 {
				t.Errorf("last page: Progress %v, want 1", page.Progress)
			}
			break
		}
	}
	return d, nil
}

// assertExactlyOnce fails unless got holds each of want exactly once and
// nothing else.
func assertExactlyOnce(t *testing.T, got, want []string) {
	t.Helper()
	count := make(map[string]int, len(got))
	for _, id := range got {
		count[id]++
	}
	wanted := make(map[string]bool, len(want))
	var missing, dup, extra int
	var example string
	for _, id := range want {
		wanted[id] = true
		switch count[id] {
		case 0:
			missing++
			example = "missing " + id
		case 1:
		default:
			dup++
			example = "repeated " + id
		}
	}
	for id := range count {
		if !wanted[id] {
			extra++
			example = "unexpected " + id
		}
	}
	if missing+dup+extra > 0 {
		t.Fatalf("delivered %d activities for %d wanted: %d missing, %d repeated, %d unexpected (e.g. %s)",
			len(got), len(want), missing, dup, extra, example)
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// assertNoSecret fails if any of texts shows secret, or a long piece of
// it, in any letter case (mcastest.ShowsSecret).
func assertNoSecret(t *testing.T, secret string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if at, shown := mcastest.ShowsSecret(s, secret); shown {
			// Say where, without printing the token itself.
			t.Fatalf("the token appears at byte %d of a %d-byte text that begins %q", at, len(s), s[:min(at, 60, len(s))])
		}
	}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// countAll counts all of c's scope: a window that holds any other.
func countAll(ctx context.Context, c recovery.Counter) (activities int64, requests int, err error) {
	t, err := c.Count(ctx, recovery.Window{Start: 0, End: math.MaxInt64})
	return t.Activities, t.Requests, err
}
