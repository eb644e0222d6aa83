package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/graph"
	"siem-recovery/recovery/graph/graphtest"
)

// now is the tests' clock: advanced hunting holds the last 30 days, so
// the windows lie in the days before it.
var now = time.Now()

// testWindow is the recovery window of most tests: one hour, two days ago,
// starting on a whole second.
var testWindow = func() recovery.Window {
	start := now.Add(-48 * time.Hour).Truncate(time.Hour).UnixMilli()
	return recovery.Window{Start: start, End: start + 3600_000}
}()

const testTenant = "5f3e2d1c-0b9a-4877-8665-544332211000"

// rowsFor makes n rows in testWindow with a burst of burst rows sharing
// one millisecond from position at, plus rows just outside the window
// that must never be delivered; it returns them all, and the ids of the
// window's in the order the source pages them.
func rowsFor(n, burst, at int) (all []graphtest.Row, inWindow []string) {
	rows := graphtest.Generate(graphtest.GenerateOptions{Window: testWindow, Count: n, Burst: burst, BurstIndex: at})
	graphtest.Sort(rows)
	before := graphtest.Generate(graphtest.GenerateOptions{Window: recovery.Window{Start: testWindow.Start - 5000, End: testWindow.Start}, Count: 3, First: 1_000_000})
	after := graphtest.Generate(graphtest.GenerateOptions{Window: recovery.Window{Start: testWindow.End, End: testWindow.End + 5000}, Count: 3, First: 2_000_000})
	// The last row before the window lies in its last tick; the first one
	// after it on its end.
	before[2].Timestamp = graph.TicksOfMillis(testWindow.Start) - 1
	after[0].Timestamp = graph.TicksOfMillis(testWindow.End)
	return slices.Concat(before, rows, after), graphtest.IDs(rows)
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

// bearer is the Authorization callback of a token given by hand.
func bearer(token string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return "Bearer " + token, nil }
}

// newSource builds a Source for srv with fast retries, a generous rate
// limit and a debug logger; edit adjusts the config.
func newSource(t *testing.T, srv *graphtest.Server, edit func(*graph.Config)) (*graph.Source, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg := graph.Config{
		BaseURL:        srv.URL,
		Authorization:  bearer(graphtest.DefaultToken),
		TenantID:       testTenant,
		Window:         testWindow,
		RateLimit:      600_000, // 100 µs apart: the rate limit is not what these tests are about
		RetryInitial:   time.Millisecond,
		RetryMax:       5 * time.Millisecond,
		RequestTimeout: time.Minute,
		TLSConfig:      srv.TLSConfig(),
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&cfg)
	}
	src, err := graph.New(cfg)
	if err != nil {
		t.Fatalf("graph.New: %v", err)
	}
	return src, logs
}

// drained is what fetching page by page gave.
type drained struct {
	acts     []recovery.Activity
	pages    int
	requests int
	next     recovery.Cursor
	last     bool
}

func (d drained) ids() []string {
	ids := make([]string, len(d.acts))
	for i, a := range d.acts {
		ids[i] = a.ID
	}
	return ids
}

// drain fetches from cur until the last page, or until maxPages pages (0:
// no limit). Each cursor passes through JSON, as a checkpoint stores it.
func drain(ctx context.Context, t *testing.T, src recovery.Source, cur recovery.Cursor, maxPages int) (drained, error) {
	t.Helper()
	d := drained{next: cur}
	prev := -1.0
	for maxPages == 0 || d.pages < maxPages {
		if d.pages > 100_000 {
			t.Fatal("drain: no last page after 100000 pages")
		}
		page, err := src.Fetch(ctx, d.next)
		d.requests += page.Requests
		if err != nil {
			return d, err
		}
		d.pages++
		d.acts = append(d.acts, page.Activities...)
		if page.Progress < prev || page.Progress > 1 {
			t.Errorf("page %d: progress %v after %v", d.pages, page.Progress, prev)
		}
		prev = page.Progress
		if page.Last {
			d.last = true
			return d, nil
		}
		d.next = roundTrip(t, page.Next)
	}
	return d, nil
}

// roundTrip is cur as a checkpoint gives it back.
func roundTrip(t *testing.T, cur recovery.Cursor) recovery.Cursor {
	t.Helper()
	b, err := json.Marshal(cur)
	if err != nil {
		t.Fatal(err)
	}
	var back recovery.Cursor
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	return back
}

// drainAll fetches the whole window within a minute, failing the test on
// any error, and checks that want came exactly once, in order.
func drainAll(t *testing.T, src recovery.Source, want []string) drained {
	t.Helper()
	d, err := drain(ctxFor(t, time.Minute), t, src, recovery.Cursor{}, 0)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	assertInOrder(t, d.ids(), want)
	return d
}

// assertInOrder checks that got is want: each id once, in order.
func assertInOrder(t *testing.T, got, want []string) {
	t.Helper()
	seen := make(map[string]int, len(got))
	for i, id := range got {
		if j, dup := seen[id]; dup {
			t.Fatalf("id %s delivered twice, at %d and %d", id, j, i)
		}
		seen[id] = i
	}
	if len(got) != len(want) {
		missing := 0
		for _, id := range want {
			if _, ok := seen[id]; !ok {
				missing++
			}
		}
		t.Fatalf("%d rows delivered, want %d (%d of them missing)", len(got), len(want), missing)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("row %d is %s, want %s: not in the order of (Timestamp, ReportId)", i, got[i], want[i])
		}
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// showsToken reports whether text shows the token or a long piece of it.
func showsToken(text, token string) bool {
	text, token = strings.ToLower(text), strings.ToLower(token)
	for i := 0; i+recovery.RedactedRun <= len(token); i++ {
		if strings.Contains(text, token[i:i+recovery.RedactedRun]) {
			return true
		}
	}
	return false
}

// countAll counts all of c's scope: a window that holds any other.
func countAll(ctx context.Context, c recovery.Counter) (activities int64, requests int, err error) {
	t, err := c.Count(ctx, recovery.Window{Start: 0, End: math.MaxInt64})
	return t.Activities, t.Requests, err
}
