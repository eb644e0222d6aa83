package mcas_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas"
	"siem-recovery/recovery/mcas/mcastest"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func TestThrottlingAndServerErrorsLoseNothing(t *testing.T) {
	t.Parallel()
	const n, pageSize = 6000, 500
	acts, want := generate(n, 300, pageSize-150)
	// A budget of 4 requests a second, every 5th request a 500, every 7th
	// a malformed answer, the very first a 429 asking for 1 s and the
	// 11th a 429 too: throttled twice at least, however slowly a loaded
	// machine sends, so the budget need not be reached.
	srv := mcastest.New(t, mcastest.Options{Activities: acts, RequestsPerMinute: 4, BudgetPeriod: time.Second})
	srv.FailNext(1, mcastest.Fault{Status: 429, RetryAfter: "1"})
	srv.FailEvery(5, mcastest.Fault{Status: 500})
	srv.FailEvery(7, mcastest.Fault{Malformed: true})
	srv.FailEvery(11, mcastest.Fault{Status: 429, RetryAfter: "0"})
	src, logs := newSource(t, srv, func(c *mcas.Config) { c.PageSize, c.MaxCriticalErrors = pageSize, 3 })

	d := drainAll(t, src, 60*time.Second, want, func() string { return "log:\n" + logs.String() })

	stats := srv.Stats()
	if stats.Throttled < 2 || stats.Faults < 5 {
		t.Errorf("stats %+v: the test did not throttle or fail enough", stats)
	}
	if d.requests != stats.Requests {
		t.Errorf("pages counted %d requests, the API received %d", d.requests, stats.Requests)
	}
	reqs := srv.Requests()
	if reqs[0].Status != 429 {
		t.Fatalf("first request answered %d, want the injected 429", reqs[0].Status)
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap < time.Second {
		t.Errorf("retried %v after a 429 with Retry-After: 1", gap)
	}
	// One line per reason and streak, not one per retry.
	for _, reason := range []string{`reason="throttled (429)"`, `reason="HTTP 500"`, `reason="malformed answer"`} {
		if !strings.Contains(logs.String(), reason) {
			t.Errorf("no %s in the log", reason)
		}
	}
}

func TestThrottlingIsNotCritical(t *testing.T) {
	acts, want := generate(700, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	srv.FailNext(6, mcastest.Fault{Status: 429, RetryAfter: "0"})
	src, logs := newSource(t, srv, func(c *mcas.Config) { c.MaxCriticalErrors = 2 })
	drainAll(t, src, 30*time.Second, want, func() string { return "6 throttled requests with MaxCriticalErrors 2" })
	if got := strings.Count(logs.String(), "level=WARN msg=\"API request failed; retrying\""); got != 1 {
		t.Errorf("%d warnings for one streak of 429s, want 1:\n%s", got, logs)
	}
}

func TestCriticalErrorsAreCountedInARow(t *testing.T) {
	t.Parallel()
	// Every other request fails: never two in a row, so MaxCriticalErrors
	// 2 is never reached, across pages too.
	acts, want := generate(3000, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	srv.FailEvery(2, mcastest.Fault{Status: 503})
	src, _ := newSource(t, srv, func(c *mcas.Config) { c.MaxCriticalErrors, c.PageSize = 2, 500 })
	drainAll(t, src, 30*time.Second, want, nil)
}

func TestTooManyCriticalErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fault    mcastest.Fault
		reason   string
		requests int
	}{
		{"500", mcastest.Fault{Status: 500}, "HTTP 500", 3},
		{"502", mcastest.Fault{Status: 502}, "HTTP 502", 3},
		// The same broken answer to the same request twice: no retry
		// mends it, so the run stops at the second.
		{"malformed", mcastest.Fault{Malformed: true}, "the same malformed answer", 2},
		{"slow", mcastest.Fault{Delay: 20 * time.Second}, "timeout", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acts, _ := generate(10, 0, 0)
			srv := mcastest.New(t, mcastest.Options{Activities: acts})
			srv.FailNext(100, tc.fault)
			src, logs := newSource(t, srv, func(c *mcas.Config) {
				c.MaxCriticalErrors = 3
				c.RequestTimeout = 150 * time.Millisecond
			})
			_, err := src.Fetch(ctxFor(t, 30*time.Second), recovery.Cursor{})
			if !errors.Is(err, recovery.ErrTooManyCriticalErrors) {
				t.Fatalf("error %v, want ErrTooManyCriticalErrors", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("%d consecutive API requests", tc.requests)) || !strings.Contains(msg, tc.reason) || !strings.Contains(msg, srv.Endpoint()) {
				t.Errorf("message %q does not name the count, the endpoint and the last cause %q", msg, tc.reason)
			}
			var perr *recovery.Error
			if !errors.As(err, &perr) || perr.Remedy == "" {
				t.Errorf("error %#v has no remedy", err)
			}
			if got := srv.Stats().Requests; got != tc.requests {
				t.Errorf("%d requests, want %d", got, tc.requests)
			}
			if got := strings.Count(logs.String(), "level=WARN"); got != 1 {
				t.Errorf("%d warnings for one streak, want 1:\n%s", got, logs)
			}
		})
	}
}

func TestWrongTokenIsInvalidToken(t *testing.T) {
	const wrong = "wrong-token-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQR"
	acts, _ := generate(10, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	for _, tc := range []struct {
		name  string
		token string
		fault *mcastest.Fault
		code  string
	}{
		{"401", wrong, nil, "401"},
		{"403", srv.Token(), &mcastest.Fault{Status: 403}, "403"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault != nil {
				srv.FailNext(1, *tc.fault)
			}
			src, logs := newSource(t, srv, func(c *mcas.Config) { c.Token = recovery.NewToken(tc.token) })
			before := srv.Stats().Requests
			_, err := src.Fetch(ctxFor(t, 10*time.Second), recovery.Cursor{})
			if !errors.Is(err, recovery.ErrInvalidToken) {
				t.Fatalf("error %v, want ErrInvalidToken", err)
			}
			if !strings.Contains(err.Error(), "answered "+tc.code+" for "+srv.Endpoint()) || !strings.Contains(err.Error(), "generate a new one") {
				t.Errorf("message %q does not name the answer, the URL and the remedy", err)
			}
			if got := srv.Stats().Requests - before; got != 1 {
				t.Errorf("%d requests, want 1: a wrong token is not retried", got)
			}
			assertNoSecret(t, tc.token, err.Error(), logs.String())
			perr := new(recovery.Error)
			if errors.As(err, &perr) {
				assertNoSecret(t, tc.token, perr.Detail, perr.Remedy)
			}
		})
	}
}

func TestMalformedTokenIsRefusedBeforeAnyRequest(t *testing.T) {
	srv := mcastest.New(t, mcastest.Options{})
	for name, token := range map[string]string{
		"empty":       "",
		"short":       "abc123secretvalue",
		"space":       strings.Repeat("a", 40) + " " + strings.Repeat("b", 40),
		"other chars": strings.Repeat("a", 60) + "!#$%&secret",
		"two dots":    "x.y",
	} {
		t.Run(name, func(t *testing.T) {
			logs := &logBuffer{}
			_, err := mcas.New(mcas.Config{BaseURL: srv.URL, Token: recovery.NewToken(token), Window: testWindow,
				Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if !errors.Is(err, recovery.ErrInvalidToken) {
				t.Fatalf("error %v, want ErrInvalidToken", err)
			}
			if token != "" {
				assertNoSecret(t, token, err.Error(), logs.String())
				assertNoSecret(t, "secret", err.Error())
			}
		})
	}
	if got := srv.Stats().Requests; got != 0 {
		t.Errorf("%d requests with malformed tokens", got)
	}
}

func TestJWTIsSentAsBearer(t *testing.T) {
	jwt := mcastest.MakeJWT("siem-recovery-test")
	acts, want := generate(600, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts, Token: jwt})
	src, _ := newSource(t, srv, nil)
	drainAll(t, src, 10*time.Second, want, nil)
	for _, r := range srv.Requests() {
		if r.Auth != "Bearer" {
			t.Fatalf("auth scheme %q, want Bearer", r.Auth)
		}
	}
}

func TestRefusedRequests(t *testing.T) {
	acts, _ := generate(10, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	for _, tc := range []struct {
		fault mcastest.Fault
		kind  error
		text  string
	}{
		{mcastest.Fault{Status: 400}, recovery.ErrUsage, "answered 400 Bad Request"},
		{mcastest.Fault{Status: 404}, recovery.ErrUsage, "not the activities API"},
		{mcastest.Fault{Status: 302}, recovery.ErrUsage, "redirect"},
		// An answer no API should give: the agent's "Internal error".
		{mcastest.Fault{Status: 418}, recovery.ErrInternal, "answered 418"},
	} {
		srv.FailNext(1, tc.fault)
		src, _ := newSource(t, srv, func(c *mcas.Config) { c.Paging = mcas.PagingPlain })
		before := srv.Stats().Requests
		_, err := src.Fetch(ctxFor(t, 10*time.Second), recovery.Cursor{})
		if err == nil || tc.kind != nil && !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%d: error %v, want %v containing %q", tc.fault.Status, err, tc.kind, tc.text)
		}
		if errors.Is(err, recovery.ErrTooManyCriticalErrors) {
			t.Errorf("%d counted as critical", tc.fault.Status)
		}
		if got := srv.Stats().Requests - before; got != 1 {
			t.Errorf("%d: %d requests, want 1 (not retried)", tc.fault.Status, got)
		}
	}
}

func TestCancelStopsRetriesAndWaits(t *testing.T) {
	acts, _ := generate(10, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	srv.FailNext(1000, mcastest.Fault{Status: 429, RetryAfter: "60"})
	src, _ := newSource(t, srv, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := src.Fetch(ctx, recovery.Cursor{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the context's", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Fetch returned %v after its context ended", took)
	}
}

func TestRateLimitSpacesEveryRequest(t *testing.T) {
	acts, want := generate(450, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	// 1200 a minute: one every 50 ms, the probe included.
	src, _ := newSource(t, srv, func(c *mcas.Config) { c.RateLimit, c.Paging = 1200, mcas.PagingPlain })
	ctx := ctxFor(t, 20*time.Second)
	if err := src.Probe(ctx); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	d, err := drain(ctx, t, src, recovery.Cursor{}, 0)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	assertExactlyOnce(t, d.ids, want)
	reqs := srv.Requests()
	if len(reqs) != 6 {
		t.Fatalf("%d requests, want the probe and 5 pages", len(reqs))
	}
	if span := reqs[len(reqs)-1].At.Sub(reqs[0].At); span < 5*50*time.Millisecond-10*time.Millisecond {
		t.Errorf("6 requests within %v at 1200 a minute", span)
	}
}

func TestProbe(t *testing.T) {
	acts, _ := generate(10, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	ctx := ctxFor(t, 10*time.Second)

	src, _ := newSource(t, srv, nil)
	if err := src.Probe(ctx); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if b := bodyOf(t, srv.Requests()[0]); b.Limit != 1 || b.IsScan {
		t.Errorf("probe body %s, want one activity without scan", srv.Requests()[0].Body)
	}

	wrong, _ := newSource(t, srv, func(c *mcas.Config) { c.Token = recovery.NewToken(strings.Repeat("x", 64)) })
	if err := wrong.Probe(ctx); !errors.Is(err, recovery.ErrInvalidToken) {
		t.Errorf("Probe with a wrong token: %v", err)
	}

	srv.FailNext(1, mcastest.Fault{Status: 503})
	if err := src.Probe(ctx); err == nil || errors.Is(err, recovery.ErrTooManyCriticalErrors) || !strings.Contains(err.Error(), "HTTP 503") {
		t.Errorf("Probe against a 503: %v", err)
	}
	if got := srv.Stats().Requests; got != 3 {
		t.Errorf("%d requests, want 3: Probe does not retry", got)
	}
}
