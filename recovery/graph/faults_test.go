package graph_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/graph"
	"siem-recovery/recovery/graph/graphtest"
)

// TestHeavyQueriesAreCutInTwo: a query the API stops (its 3-minute
// timeout as 504, or its resource limits as 400) is asked again over half
// its time span, and a result over the size limit for half its rows;
// every row still comes once, in order, and the streak of failures never
// reaches the limit of critical errors.
func TestHeavyQueriesAreCutInTwo(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   graphtest.Options
		reason string
	}{
		{"timeout", graphtest.Options{MaxScanRows: 500}, "query timeout (504)"},
		{"stopped", graphtest.Options{MaxScanRows: 500, Heavy: &graphtest.FaultStopped}, "query stopped by the API"},
		{"too large", graphtest.Options{MaxResultBytes: 1_000_000}, "result too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all, want := rowsFor(3_000, 200, 1_450)
			tc.opts.Rows = all
			srv := graphtest.New(t, tc.opts)
			src, logs := newSource(t, srv, func(c *graph.Config) { c.PageSize = 1000 })
			d := drainAll(t, src, want)
			st := srv.Stats()
			if st.Heavy == 0 {
				t.Fatalf("no query was too heavy (stats %+v): the test proves nothing", st)
			}
			if d.requests != st.Requests {
				t.Errorf("the pages counted %d requests, the server %d", d.requests, st.Requests)
			}
			if !strings.Contains(logs.String(), `msg="the API found a query too heavy; asking for less"`) ||
				!strings.Contains(logs.String(), `reason="`+tc.reason+`"`) {
				t.Errorf("no cut logged with reason %q:\n%.2000s", tc.reason, logs)
			}
		})
	}
}

// TestHeavinessCuttingCannotMend: rows in one tick that the API cannot
// scan however narrow the query end the run with too many critical
// errors, not a loop.
func TestHeavinessCuttingCannotMend(t *testing.T) {
	all, _ := rowsFor(300, 200, 50)
	srv := graphtest.New(t, graphtest.Options{Rows: all, MaxScanRows: 50})
	src, _ := newSource(t, srv, func(c *graph.Config) { c.PageSize = 1000; c.MaxCriticalErrors = 6 })
	_, err := drain(ctxFor(t, time.Minute), t, src, recovery.Cursor{}, 0)
	if !errors.Is(err, recovery.ErrTooManyCriticalErrors) || !strings.Contains(err.Error(), "6 consecutive API requests to "+srv.URL+graphtest.Path+" failed; the last: query timeout (504)") {
		t.Fatalf("got %v, want ErrTooManyCriticalErrors after 6 timeouts", err)
	}
}

// TestThrottlingHonoursRetryAfter: 429 answers wait for their Retry-After
// and are not critical errors (one critical error would end this run).
func TestThrottlingHonoursRetryAfter(t *testing.T) {
	all, want := rowsFor(1_500, 0, 0)
	srv := graphtest.New(t, graphtest.Options{Rows: all})
	srv.FailNext(2, graphtest.Fault{Status: 429, RetryAfter: "1", Body: `{"error":{"code":"TooManyRequests","message":"You have exceeded processing resources allocated to this tenant. You can run queries again in 00:00:01."}}`})
	src, logs := newSource(t, srv, func(c *graph.Config) { c.PageSize = 1000; c.MaxCriticalErrors = 1 })
	d := drainAll(t, src, want)
	st := srv.Stats()
	if st.Throttled != 2 || d.requests != 4 || st.Requests != 4 {
		t.Errorf("stats %+v, %d requests counted; want 2 throttled of 4", st, d.requests)
	}
	reqs := srv.Requests()
	for i := 1; i <= 2; i++ {
		if gap := reqs[i].At.Sub(reqs[i-1].At); gap < time.Second {
			t.Errorf("request %d came %v after the 429 before it, which asked for 1s", i+1, gap)
		}
	}
	if !strings.Contains(logs.String(), `reason="throttled (429)"`) || !strings.Contains(logs.String(), "retry_after=1s") {
		t.Errorf("no throttling logged:\n%s", logs)
	}
}

// TestServerErrorsAreRetried: 5xx answers are critical errors, retried
// until MaxCriticalErrors fail in a row.
func TestServerErrorsAreRetried(t *testing.T) {
	all, want := rowsFor(500, 0, 0)
	srv := graphtest.New(t, graphtest.Options{Rows: all})
	srv.FailNext(3, graphtest.Fault{Status: 503})
	src, _ := newSource(t, srv, func(c *graph.Config) { c.MaxCriticalErrors = 4 })
	drainAll(t, src, want)
	if st := srv.Stats(); st.Requests != 4 {
		t.Errorf("%d requests, want 3 failed and 1 answered", st.Requests)
	}

	srv.FailNext(3, graphtest.Fault{Status: 503})
	src, _ = newSource(t, srv, func(c *graph.Config) { c.MaxCriticalErrors = 3 })
	_, err := src.Fetch(ctxFor(t, time.Minute), recovery.Cursor{})
	want503 := "3 consecutive API requests to " + srv.URL + graphtest.Path + ` failed; the last: HTTP 503: the API answered 503 (UnknownError: Service Unavailable); run again later: the recovery resumes where it stopped; if it keeps failing, check the tenant's advanced hunting quotas`
	if !errors.Is(err, recovery.ErrTooManyCriticalErrors) || err.Error() != want503 {
		t.Fatalf("got %v\nwant %s", err, want503)
	}
}

// TestMalformedAnswers: an answer cut short, one with more rows than
// asked for, and one out of order are critical errors, asked again; the
// same malformed answer twice ends the run.
func TestMalformedAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  graphtest.Fault
		reason string
	}{
		{"cut short", graphtest.Fault{Malformed: true}, "the answer is not the expected JSON"},
		{"overfilled", graphtest.Fault{Overfill: 3}, "the answer holds more rows than the 400 asked for"},
		{"out of order", graphtest.Fault{Reversed: true}, "out of the order (Timestamp, ReportId) asked for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all, want := rowsFor(1_000, 0, 0)
			srv := graphtest.New(t, graphtest.Options{Rows: all})
			srv.FailNext(1, tc.fault)
			src, logs := newSource(t, srv, func(c *graph.Config) { c.PageSize = 400 })
			drainAll(t, src, want)
			if !strings.Contains(logs.String(), `reason="malformed answer"`) || !strings.Contains(logs.String(), tc.reason) {
				t.Errorf("no malformed answer logged (%s):\n%.3000s", tc.reason, logs)
			}

			srv.FailNext(2, tc.fault)
			_, err := src.Fetch(ctxFor(t, time.Minute), recovery.Cursor{})
			if !errors.Is(err, recovery.ErrTooManyCriticalErrors) || !strings.Contains(err.Error(), "the last two got the same malformed answer, which retrying does not mend") {
				t.Fatalf("the same malformed answer twice: %v", err)
			}
		})
	}
}

// TestAnswerOverTheCap: an answer larger than the API could send is
// malformed, whatever it holds.
func TestAnswerOverTheCap(t *testing.T) {
	all, _ := rowsFor(200, 0, 0)
	srv := graphtest.New(t, graphtest.Options{Rows: all})
	src, _ := newSource(t, srv, nil)
	graph.SetMaxAnswer(src, 100_000)
	_, err := src.Fetch(ctxFor(t, time.Minute), recovery.Cursor{})
	if !errors.Is(err, recovery.ErrTooManyCriticalErrors) || !strings.Contains(err.Error(), "the last two got the same malformed answer, which retrying does not mend: the answer is larger than 100000 bytes") {
		t.Fatalf("got %v", err)
	}
}

// TestRowsListedTwice: a row the API lists twice in one answer is sent
// once.
func TestRowsListedTwice(t *testing.T) {
	all, want := rowsFor(1_000, 100, 350)
	srv := graphtest.New(t, graphtest.Options{Rows: all})
	srv.FailNext(2, graphtest.Fault{Repeated: true})
	src, logs := newSource(t, srv, func(c *graph.Config) { c.PageSize = 400 })
	d := drainAll(t, src, want)
	if d.pages != 4 {
		t.Errorf("%d pages, want 2 of 200 rows (repeated), one of 400 and the last of 200", d.pages)
	}
	if !strings.Contains(logs.String(), `msg="the API listed rows twice in one answer; dropped the repeats" count=200`) {
		t.Errorf("no repeats logged:\n%s", logs)
	}
}

// TestRateLimitSpacesRequests: requests are spaced evenly by the rate
// limit, 45 a minute unless configured.
func TestRateLimitSpacesRequests(t *testing.T) {
	all, want := rowsFor(400, 0, 0)
	srv := graphtest.New(t, graphtest.Options{Rows: all})
	if src, _ := newSource(t, srv, func(c *graph.Config) { c.RateLimit = 0 }); src.RateLimit() != 45 {
		t.Errorf("default rate limit %v, want 45", src.RateLimit())
	}
	src, _ := newSource(t, srv, func(c *graph.Config) { c.PageSize = 100; c.RateLimit = 600 })
	if got := src.RateLimit(); got != 600 {
		t.Fatalf("RateLimit %v, want 600", got)
	}
	start := time.Now()
	drainAll(t, src, want)
	took := time.Since(start)
	if n := srv.Stats().Requests; n != 5 {
		t.Fatalf("%d requests, want 5", n)
	}
	// 600 a minute: 100 ms apart (a little less for the timer's grain).
	if took < 390*time.Millisecond {
		t.Errorf("5 requests in %v: the rate limit of 600 a minute spaces them 100 ms apart", took)
	}
}
