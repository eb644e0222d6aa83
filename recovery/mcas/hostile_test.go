package mcas_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas"
	"siem-recovery/recovery/mcas/mcastest"
)

// An API that answers as no API should: each answer is refused before
// any of its activities is delivered, and a fault that the same request
// meets again ends the fetch at the second request, not after minutes of
// backoff.

// fetchFails fetches the page at cur, which must fail with kind after
// exactly requests requests, delivering nothing; it returns the message.
func fetchFails(t *testing.T, srv *mcastest.Server, src recovery.Source, cur recovery.Cursor, kind error, requests int) string {
	t.Helper()
	before := srv.Stats().Requests
	page, err := src.Fetch(ctxFor(t, 20*time.Second), cur)
	if !errors.Is(err, kind) {
		t.Fatalf("error %v, want %v", err, kind)
	}
	if len(page.Activities) != 0 {
		t.Fatalf("%d activities delivered from a refused answer", len(page.Activities))
	}
	if got := srv.Stats().Requests - before; got != requests || page.Requests != got {
		t.Errorf("%d requests (page says %d), want %d", got, page.Requests, requests)
	}
	return err.Error()
}

func TestScanAnswerRepeatingItsFiltersIsMalformed(t *testing.T) {
	t.Parallel()
	acts, want := generate(1200, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	src, logs := newSource(t, srv, func(c *mcas.Config) { c.PageSize = 500 })

	// Once is a glitch: the retry gets a proper answer and the window is
	// delivered exactly once.
	srv.FailNext(1, mcastest.Fault{RepeatFilters: true})
	drainAll(t, src, 20*time.Second, want, logs.String)

	// Always: the first page, then an answer to the second request that
	// sends its page and points back at itself. Nothing of it is
	// delivered, and the fetch ends at the second such answer.
	first, err := src.Fetch(ctxFor(t, 10*time.Second), recovery.Cursor{})
	if err != nil || first.Last {
		t.Fatalf("first page: last %v, %v", first.Last, err)
	}
	srv.FailNext(100, mcastest.Fault{RepeatFilters: true})
	msg := fetchFails(t, srv, src, first.Next, recovery.ErrTooManyCriticalErrors, 2)
	for _, want := range []string{"2 consecutive API requests", "the same malformed answer", `"nextQueryFilters" are the filters it was asked with`} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestOverfullAnswerIsMalformedAndNotReadWhole(t *testing.T) {
	const pageSize, flood = 500, 4_000_000 // about 170 MB of activities
	acts, _ := generate(600, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	src, _ := newSource(t, srv, func(c *mcas.Config) { c.PageSize = pageSize })
	srv.FailNext(100, mcastest.Fault{Overfill: flood})

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	msg := fetchFails(t, srv, src, recovery.Cursor{}, recovery.ErrTooManyCriticalErrors, 2)
	runtime.ReadMemStats(&after)

	if !strings.Contains(msg, "the answer holds more activities than the 500 asked for") {
		t.Errorf("message %q does not say the answer exceeds the limit", msg)
	}
	// Reading two such answers whole would allocate gigabytes; reading
	// each up to the first activity too many allocates about a page (the
	// emulator's writing included).
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d KiB for two refused answers", alloc>>10)
	if alloc > 64<<20 {
		t.Errorf("allocated %d MiB for two refused answers of a 500-activity page", alloc>>20)
	}
}

func TestPlainCursorThatCannotAdvanceStops(t *testing.T) {
	// The API ignores the window's start and lists, from the earliest,
	// a full page of activities from before it: a date cursor taken from
	// them never moves.
	acts, _ := generate(150, 0, 0)
	early := mcastest.Generate(mcastest.GenerateOptions{Window: recovery.Window{Start: testWindow.Start - 3600_000, End: testWindow.Start - 1000}, Count: 300})
	srv := mcastest.New(t, mcastest.Options{Activities: append(early, acts...)})
	srv.FailEvery(1, mcastest.Fault{IgnoreStart: true})
	src, _ := newSource(t, srv, func(c *mcas.Config) { c.Paging = mcas.PagingPlain })
	msg := fetchFails(t, srv, src, recovery.Cursor{}, recovery.ErrTooManyCriticalErrors, 2)
	if !strings.Contains(msg, "a full page of 100 activities ends at") || !strings.Contains(msg, "the date cursor cannot advance") {
		t.Errorf("message %q does not say the cursor cannot advance", msg)
	}
}

func TestAnswerLargerThanTheCapIsMalformed(t *testing.T) {
	t.Parallel()
	// A page within the limit, but larger than the byte cap (lowered to
	// 1 MiB here from 64 MiB): nothing past the cap is read.
	acts, _ := generate(3000, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	src, _ := newSource(t, srv, nil)
	mcas.SetMaxAnswer(src, 1<<20)
	msg := fetchFails(t, srv, src, recovery.Cursor{}, recovery.ErrTooManyCriticalErrors, 2)
	if !strings.Contains(msg, "the answer is larger than 1 MiB; give a smaller --page-size") {
		t.Errorf("message %q does not name the cap and the remedy", msg)
	}
}

// allocated is how many bytes fn allocated.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestHugeActivityIsMalformedAndNotReadWhole(t *testing.T) {
	// One activity of 120 MiB (issue 22: accepted, written as one line,
	// and 1.07 GB of RSS), as it is and gzipped (about 120 KiB on the
	// wire), and a gzip bomb: a GiB of one string in about a MiB. Each
	// is refused once its activity passes 1 MiB: the decoder never
	// buffers more.
	acts, _ := generate(600, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	for _, tc := range []struct {
		name  string
		fault mcastest.Fault
		want  string
	}{
		{"plain", mcastest.Fault{Pad: 120 << 20}, "activity 0 of the answer is larger than 1 MiB; run again later"},
		{"gzip", mcastest.Fault{Pad: 120 << 20, Gzip: true}, "activity 0 of the answer is larger than 1 MiB once inflated (the API sent it gzipped)"},
		{"gzip bomb", mcastest.Fault{Pad: 1 << 30, PadField: "description", Gzip: true}, "activity 0 of the answer is larger than 1 MiB once inflated"},
		{"member", mcastest.Fault{Status: 200, Body: `{"hasNext":false,"huge":"` + strings.Repeat("y", 2<<20) + `","data":[]}`}, "a member of the answer is larger than 1 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, _ := newSource(t, srv, func(c *mcas.Config) { c.PageSize = 500 })
			srv.FailNext(2, tc.fault)
			var msg string
			alloc := allocated(func() { msg = fetchFails(t, srv, src, recovery.Cursor{}, recovery.ErrTooManyCriticalErrors, 2) })
			srv.ClearFaults()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("message %q lacks %q", msg, tc.want)
			}
			t.Logf("allocated %d KiB for two refused answers", alloc>>10)
			if alloc > 32<<20 {
				t.Errorf("allocated %d MiB for two answers refused at 1 MiB", alloc>>20)
			}
		})
	}
}

func TestGzipAnswersAreCappedInflated(t *testing.T) {
	acts, want := generate(3000, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})

	// A gzipped answer is read as any other.
	srv.FailEvery(1, mcastest.Fault{Gzip: true})
	src, logs := newSource(t, srv, func(c *mcas.Config) { c.PageSize = 500 })
	drainAll(t, src, 20*time.Second, want, logs.String)
	srv.ClearFaults()

	// A bomb of activities of just under 1 MiB each, about 8 KiB each on
	// the wire: refused at the cap (lowered to 8 MiB here) on the bytes
	// inflated, having held no more than the cap.
	srv.FailNext(2, mcastest.Fault{Gzip: true, Pad: 1<<20 - 2048, Overfill: 1000})
	src, _ = newSource(t, srv, func(c *mcas.Config) { c.PageSize = 500 })
	mcas.SetMaxAnswer(src, 8<<20)
	var msg string
	alloc := allocated(func() { msg = fetchFails(t, srv, src, recovery.Cursor{}, recovery.ErrTooManyCriticalErrors, 2) })
	if !strings.Contains(msg, "the answer is larger than 8 MiB once inflated (the API sent it gzipped); give a smaller --page-size") {
		t.Errorf("message %q does not name the cap", msg)
	}
	t.Logf("allocated %d MiB for two refused answers", alloc>>20)
	if alloc > 64<<20 {
		t.Errorf("allocated %d MiB for two answers refused at 8 MiB", alloc>>20)
	}

	// An encoding the client did not ask for is not JSON: malformed.
	srv.FailNext(2, mcastest.Fault{ContentEncoding: "br"})
	msg = fetchFails(t, srv, src, recovery.Cursor{}, recovery.ErrTooManyCriticalErrors, 2)
	if !strings.Contains(msg, `the answer is encoded as "br", which was not asked for`) {
		t.Errorf("message %q does not name the encoding", msg)
	}
}

func TestRedirectToTheTokenDoesNotShowIt(t *testing.T) {
	acts, _ := generate(10, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	token := srv.Token()
	// The token itself, in upper case, and a long piece of it.
	location := "https://login.example/?token=" + token + "&again=" + strings.ToUpper(token) + "&piece=" + token[20:40]
	srv.FailNext(1, mcastest.Fault{Status: 302, Location: location})
	src, logs := newSource(t, srv, nil)
	msg := fetchFails(t, srv, src, recovery.Cursor{}, recovery.ErrUsage, 1)
	assertNoSecret(t, token, msg, logs.String())
	if !strings.Contains(msg, `a redirect to "https://login.example/?token=[REDACTED]&again=[REDACTED]&piece=[REDACTED]"`) {
		t.Errorf("message %q does not show the redirect, redacted", msg)
	}

	// An error answer that echoes the token, retried and then given up.
	srv.FailNext(100, mcastest.Fault{Status: 503, Body: `{"detail":"bad gateway for Token ` + strings.ToLower(token) + `"}`})
	src, logs = newSource(t, srv, func(c *mcas.Config) { c.MaxCriticalErrors = 2 })
	msg = fetchFails(t, srv, src, recovery.Cursor{}, recovery.ErrTooManyCriticalErrors, 2)
	assertNoSecret(t, token, msg, logs.String())
	if !strings.Contains(msg, "(bad gateway for Token [REDACTED])") {
		t.Errorf("message %q does not show the API's message, redacted", msg)
	}
}

// encodedToken is a legacy token with the characters URL and JSON
// encoders change: + = . (64 characters and more of 0-9 A-Z a-z - _ = . +).
const encodedToken = "Enc+0123456789=abcdefghij.klmnopqrst+uvwxyz=ABCDEFGHIJ.KLMNOPQRST+UVWXYZ=="

func TestEncodedEchoOfTheTokenDoesNotShowIt(t *testing.T) {
	// The API echoes the token as a URL or JSON encoder writes it:
	// percent-encoded, in either letter case, JSON-escaped, in base64.
	// Each form is hidden in the error, the logs, and what the run would
	// store as its last error.
	acts, _ := generate(10, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts, Token: encodedToken})
	lower := strings.NewReplacer("%2B", "%2b", "%3D", "%3d")
	var jsonEscaped strings.Builder
	for _, c := range encodedToken {
		if strings.ContainsRune("+=.", c) {
			fmt.Fprintf(&jsonEscaped, `\\u%04X`, c)
		} else {
			jsonEscaped.WriteRune(c)
		}
	}
	location := "https://login.example/?token=" + url.QueryEscape(encodedToken) + "&lower=" + lower.Replace(url.QueryEscape(encodedToken)) +
		"&path=" + url.PathEscape(encodedToken) + "&b64=" + base64.URLEncoding.EncodeToString([]byte(encodedToken))
	srv.FailNext(1, mcastest.Fault{Status: 302, Location: location})
	redactor := recovery.NewRedactor()
	src, logs := newSource(t, srv, func(c *mcas.Config) { c.Redactor = redactor })
	msg := fetchFails(t, srv, src, recovery.Cursor{}, recovery.ErrUsage, 1)
	assertNoSecret(t, encodedToken, msg, logs.String(), redactor.Redacted(msg).String())
	// base64's last characters mix the token's last bits with padding.
	if !strings.Contains(msg, `a redirect to "https://login.example/?token=[REDACTED]&lower=[REDACTED]&path=[REDACTED]&b64=[REDACTED]0="`) {
		t.Errorf("message %q does not show the redirect, redacted", msg)
	}

	for name, body := range map[string]string{
		"JSON escapes":    `{"detail":"bad gateway for Token ` + jsonEscaped.String() + `"}`,
		"percent-encoded": `{"detail":"upstream said: token=` + lower.Replace(url.QueryEscape(encodedToken)) + `"}`,
		"base64":          `{"detail":"basic ` + base64.StdEncoding.EncodeToString([]byte("user:"+encodedToken)) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			srv.FailNext(2, mcastest.Fault{Status: 503, Body: body})
			src, logs := newSource(t, srv, func(c *mcas.Config) { c.MaxCriticalErrors = 2; c.Redactor = redactor })
			msg := fetchFails(t, srv, src, recovery.Cursor{}, recovery.ErrTooManyCriticalErrors, 2)
			assertNoSecret(t, encodedToken, msg, logs.String(), redactor.Redacted(msg).String())
			if !strings.Contains(msg, "[REDACTED]") {
				t.Errorf("message %q does not show the API's message, redacted", msg)
			}
		})
	}
}

func TestRedactorIsShared(t *testing.T) {
	// A secret added to the run's Redactor after New (an access token
	// obtained later, say) is hidden too, and the token New added is
	// hidden by whoever else holds the Redactor.
	acts, _ := generate(10, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	redactor := recovery.NewRedactor()
	src, _ := newSource(t, srv, func(c *mcas.Config) { c.Redactor = redactor })
	const later = "access-token-obtained-after-the-start"
	redactor.Add(later)
	srv.FailNext(1, mcastest.Fault{Status: 418, Body: `{"detail":"` + later + `"}`})
	msg := fetchFails(t, srv, src, recovery.Cursor{}, recovery.ErrInternal, 1)
	assertNoSecret(t, later, msg)
	if got := redactor.Redact("x" + srv.Token() + "y"); got != "x[REDACTED]y" {
		t.Errorf("the shared Redactor does not hide the source's token: %q", got)
	}
}

func TestTextFromTheAPIIsEscaped(t *testing.T) {
	acts, _ := generate(10, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	const forged = "teapot\nlevel=INFO msg=completed sent_total=10\x1b[2J\x1b]0;pwned\x07"
	for _, tc := range []struct {
		name  string
		fault mcastest.Fault
		kind  error
		want  string
	}{
		{"unexpected status", mcastest.Fault{Status: 418, Body: `{"detail":"teapot\nlevel=INFO msg=completed sent_total=10\u001b[2J\u001b]0;pwned\u0007"}`},
			recovery.ErrInternal, `the API answered 418 for ` + srv.Endpoint() + `: ("teapot\nlevel=INFO msg=completed sent_total=10\x1b[2J\x1b]0;pwned\a")`},
		{"body that is not JSON", mcastest.Fault{Status: 503, Body: forged},
			recovery.ErrTooManyCriticalErrors, `("teapot level=INFO msg=completed sent_total=10\x1b[2J\x1b]0;pwned\a")`},
		{"activity id", mcastest.Fault{Status: 200, Body: `{"hasNext":false,"data":[{"_id":"a\nlevel=INFO msg=completed\u001b[2J","timestamp":"soon"}]}`},
			recovery.ErrTooManyCriticalErrors, `activity 0 of the answer: "activity a\nlevel=INFO msg=completed\x1b[2J: \"timestamp\" \"soon\" is not epoch milliseconds"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.FailNext(2, tc.fault)
			src, logs := newSource(t, srv, func(c *mcas.Config) { c.MaxCriticalErrors = 2 })
			_, err := src.Fetch(ctxFor(t, 10*time.Second), recovery.Cursor{})
			srv.ClearFaults()
			if !errors.Is(err, tc.kind) {
				t.Fatalf("error %v, want %v", err, tc.kind)
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\x1b\x07") {
				t.Errorf("the message holds control characters: %q", msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("message %s\nlacks      %s", msg, tc.want)
			}
			// Every log line is a line the logger wrote.
			for _, line := range strings.Split(strings.TrimSuffix(logs.String(), "\n"), "\n") {
				if line != "" && !strings.HasPrefix(line, "time=") || strings.ContainsAny(line, "\x1b\x07") {
					t.Errorf("forged or raw log line %q", line)
				}
			}
		})
	}
}

func TestRefusedConnectionBeforeAnyAnswerIsAWrongAddress(t *testing.T) {
	dead := mcastest.DeadAddr(t)
	src, err := mcas.New(mcas.Config{BaseURL: "http://" + dead, Token: recovery.NewToken(mcastest.DefaultToken), Window: testWindow,
		MaxCriticalErrors: 10, RetryInitial: time.Minute, RateLimit: 600000})
	if err != nil {
		t.Fatal(err)
	}
	// Not retried: the first backoff alone would outlast the context.
	_, err = src.Fetch(ctxFor(t, 20*time.Second), recovery.Cursor{})
	if !errors.Is(err, recovery.ErrUsage) {
		t.Fatalf("error %v, want ErrUsage", err)
	}
	want := "nothing answers at http://" + dead + "/api/v1/activities/ (connection refused); check the host and port"
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q, want it to begin %q", err, want)
	}
	if err := src.Probe(ctxFor(t, 10*time.Second)); !errors.Is(err, recovery.ErrUsage) {
		t.Errorf("Probe: %v, want ErrUsage", err)
	}
}

func TestSchemeMismatchIsAWrongAddress(t *testing.T) {
	t.Parallel()
	// https:// to a plain-HTTP port (issue 28: retried for 4 minutes,
	// then exit 5 "contact support"), and plain http:// to a TLS port:
	// exit 2 at the first request, in a run and in a probe.
	plain := mcastest.New(t, mcastest.Options{})
	tlsSrv := mcastest.New(t, mcastest.Options{TLS: true})
	for _, tc := range []struct {
		name, url string
		want      string
	}{
		{"https to plain", "https://" + strings.TrimPrefix(plain.URL, "http://"),
			"/api/v1/activities/ does not answer over TLS: the server at 127.0.0.1:"},
		{"http to TLS", "http://" + strings.TrimPrefix(tlsSrv.URL, "https://"),
			"/api/v1/activities/ is a TLS port: the server answered the plain-HTTP request with 400 (Client sent an HTTP request to an HTTPS server.)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := mcas.New(mcas.Config{BaseURL: tc.url, Token: recovery.NewToken(mcastest.DefaultToken), Window: testWindow,
				RetryInitial: time.Minute, RateLimit: 600000, TLSConfig: tlsSrv.TLSConfig()})
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.Fetch(ctxFor(t, 20*time.Second), recovery.Cursor{}) // a retry would outlast the context
			if !errors.Is(err, recovery.ErrUsage) || !strings.Contains(err.Error(), tc.want) ||
				!strings.HasSuffix(err.Error(), "; check the scheme and the port: the tenant's API URL is https://TENANT.REGION.portal.cloudappsecurity.com, on port 443") {
				t.Fatalf("error %v, want a usage error with %q", err, tc.want)
			}
			if err := src.Probe(ctxFor(t, 10*time.Second)); !errors.Is(err, recovery.ErrUsage) {
				t.Errorf("Probe: %v, want ErrUsage", err)
			}
		})
	}
	if n := plain.Stats().Requests + tlsSrv.Stats().Requests; n != 0 {
		t.Errorf("%d requests reached a handler", n)
	}
}

func TestWebServerThatIsNotTheAPI(t *testing.T) {
	t.Parallel()
	acts, want := generate(1500, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	page := mcastest.Fault{Status: 200, ContentType: "text/html; charset=utf-8", Body: "<!DOCTYPE html><html><title>Sign in</title></html>"}
	notImplemented := mcastest.Fault{Status: 501, ContentType: "text/html", Body: "<html><p>Unsupported method ('POST')</p></html>"}
	// Before the API ever answered: --source is not the API, exit 2 at
	// the first request.
	for _, tc := range []struct {
		fault mcastest.Fault
		want  string
	}{
		{page, "the server at " + srv.Endpoint() + " answered with a web page (text/html), not the activities API's JSON; give the tenant's API URL"},
		{notImplemented, "the server at " + srv.Endpoint() + " answered 501 Not Implemented to a POST: it is not the activities API; give the tenant's API URL"},
	} {
		srv.FailNext(1, tc.fault)
		src, _ := newSource(t, srv, nil)
		if msg := fetchFails(t, srv, src, recovery.Cursor{}, recovery.ErrUsage, 1); !strings.Contains(msg, tc.want) {
			t.Errorf("message %q lacks %q", msg, tc.want)
		}
	}
	// Once the API has answered, a gateway's error page in front of it
	// is retried: the window is delivered exactly once.
	src, logs := newSource(t, srv, func(c *mcas.Config) { c.PageSize = 500 })
	drainAfterFirst(t, src, want, logs.String, func() {
		srv.FailNext(1, page)
		srv.FailNext(1, notImplemented)
	})
}

func TestRefusedConnectionAfterAnAnswerIsCritical(t *testing.T) {
	acts, _ := generate(1200, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	src, _ := newSource(t, srv, func(c *mcas.Config) { c.PageSize, c.MaxCriticalErrors = 500, 3 })
	first, err := src.Fetch(ctxFor(t, 10*time.Second), recovery.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	// The API goes away mid-window: an outage, retried as before.
	srv.Close()
	_, err = src.Fetch(ctxFor(t, 10*time.Second), first.Next)
	if !errors.Is(err, recovery.ErrTooManyCriticalErrors) || !strings.Contains(err.Error(), "3 consecutive API requests") {
		t.Fatalf("error %v, want 3 critical errors", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf("error %v does not keep its network cause", err)
	}
}

func TestEntraSecretsReachTheRunsRedactor(t *testing.T) {
	// The client secret from the start, each access token once obtained:
	// whatever else holds the run's Redactor (the checkpoint's last
	// error) hides them, and so does every message of the Source.
	e := newEntraSetup(t, time.Hour, 0, 10)
	redactor := recovery.NewRedactor()
	src, logs := e.source(t, func(c *mcas.Config) { c.Redactor = redactor })
	if got := redactor.Redact("secret=" + testSecret); got != "secret=[REDACTED]" {
		t.Errorf("the client secret is not in the run's Redactor: %q", got)
	}
	if _, err := src.Fetch(ctxFor(t, 20*time.Second), recovery.Cursor{}); err != nil {
		t.Fatal(err)
	}
	issued := e.tokens()
	if len(issued) != 1 {
		t.Fatalf("%d tokens issued, want 1", len(issued))
	}
	token := issued[0]
	if got := redactor.Redact("Bearer " + token); got != "Bearer [REDACTED]" {
		t.Errorf("the access token is not in the run's Redactor")
	}
	e.api.FailNext(1, mcastest.Fault{Status: 418, Body: `{"detail":"refused Bearer ` + strings.ToUpper(token) + `"}`})
	msg := fetchFails(t, e.api, src, recovery.Cursor{}, recovery.ErrInternal, 1)
	assertNoSecret(t, token, msg, logs.String())
}

// Loops an API can make (issue 22): a continuation pointing back to an
// earlier page, a page that lies before where the scan stood, answers with
// nothing in them that say more follow, and activities listed again.

func TestContinuationFollowedBeforeIsMalformed(t *testing.T) {
	t.Parallel()
	acts, want := generate(3000, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	src, logs := newSource(t, srv, func(c *mcas.Config) { c.PageSize = 500 })

	// Once is a glitch: the retry gets the proper continuation, and the
	// window is delivered exactly once.
	drainAfterFirst(t, src, want, logs.String, func() { srv.FailNext(1, mcastest.Fault{Rewind: true}) })

	// Always: the third page's answer points back to the second page,
	// whose continuation the scan followed a page ago: nothing of it is
	// delivered, and the fetch ends at the second such answer.
	lane := src.Over(recovery.Scope{Window: testWindow})
	d, err := drain(ctxFor(t, 10*time.Second), t, lane, recovery.Cursor{}, 2)
	if err != nil || len(d.pages) != 2 || d.pages[1].Last {
		t.Fatalf("two pages: %d pages, %v", len(d.pages), err)
	}
	srv.FailNext(100, mcastest.Fault{Rewind: true})
	msg := fetchFails(t, srv, lane, d.next, recovery.ErrTooManyCriticalErrors, 2)
	for _, want := range []string{"the last two got the same malformed answer", `"nextQueryFilters" are a continuation this pass followed before`} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestPageBeforeWhereTheScanStoodIsMalformed(t *testing.T) {
	t.Parallel()
	// A continuation never seen before, whose page lists from the
	// window's start again: it went back, and would send the first pages
	// again.
	acts, _ := generate(3000, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	src, _ := newSource(t, srv, func(c *mcas.Config) { c.PageSize = 500 })
	d, err := drain(ctxFor(t, 10*time.Second), t, src, recovery.Cursor{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	srv.FailNext(100, mcastest.Fault{IgnoreStart: true})
	msg := fetchFails(t, srv, src, d.next, recovery.ErrTooManyCriticalErrors, 2)
	if !strings.Contains(msg, "where the scan stood on date: its continuation went back") {
		t.Errorf("message %q does not say the page went back", msg)
	}
}

func TestEmptyAnswersThatSayMoreFollowAreBounded(t *testing.T) {
	t.Parallel()
	acts, want := generate(1500, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	src, logs := newSource(t, srv, func(c *mcas.Config) { c.PageSize = 500 })

	// Three in a row are followed: each a page with nothing, the scan
	// where it stood.
	pages := drainAfterFirst(t, src, want, logs.String, func() { srv.FailNext(3, mcastest.Fault{EmptyNext: true}) })
	if len(pages) != 7 || pages[1].Progress != pages[0].Progress || pages[3].Progress != pages[0].Progress {
		t.Errorf("%d pages; the empty ones at %v and %v, want %v", len(pages), pages[1].Progress, pages[3].Progress, pages[0].Progress)
	}

	// The fourth in a row is malformed, and so is the answer to its
	// retry: the fetch ends there, after 3 + 2 requests.
	first, err := src.Fetch(ctxFor(t, 10*time.Second), recovery.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	srv.FailNext(100, mcastest.Fault{EmptyNext: true})
	before := srv.Stats().Requests
	_, err = drain(ctxFor(t, 20*time.Second), t, src, first.Next, 0)
	if !errors.Is(err, recovery.ErrTooManyCriticalErrors) {
		t.Fatalf("error %v, want ErrTooManyCriticalErrors", err)
	}
	if got := srv.Stats().Requests - before; got != 5 {
		t.Errorf("%d requests, want 5", got)
	}
	for _, want := range []string{"the last two got the same malformed answer", `4 answers in a row listed no new activity yet said "hasNext": true`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
}

func TestActivitiesListedAgainAreSentOnce(t *testing.T) {
	t.Parallel()
	for _, paging := range []mcas.Paging{mcas.PagingScan, mcas.PagingPlain} {
		t.Run(paging.String(), func(t *testing.T) {
			// Every other answer lists its first activity twice and, in
			// scan mode, the last of the page before again.
			acts, want := generate(2000, 0, 0)
			srv := mcastest.New(t, mcastest.Options{Activities: acts})
			srv.FailEvery(2, mcastest.Fault{Repeat: true})
			src, logs := newSource(t, srv, func(c *mcas.Config) {
				if c.Paging = paging; paging == mcas.PagingScan {
					c.PageSize = 500
				}
			})
			drainAll(t, src, 30*time.Second, want, logs.String)
			if !strings.Contains(logs.String(), "the API listed activities again (within a page, or from the page before); dropped the repeats") {
				t.Errorf("the repeats are not reported:\n%s", logs.String())
			}
		})
	}
}

// drainAfterFirst fetches the window's first page, calls inject (which
// sets faults for the requests that follow), fetches the rest, and checks
// that every wanted id came exactly once; it returns the pages.
func drainAfterFirst(t *testing.T, src recovery.Source, want []string, about func() string, inject func()) []recovery.Page {
	t.Helper()
	first, err := src.Fetch(ctxFor(t, 10*time.Second), recovery.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	inject()
	d, err := drain(ctxFor(t, 20*time.Second), t, src, first.Next, 0)
	if err != nil {
		t.Fatalf("%v\n%s", err, about())
	}
	assertExactlyOnce(t, append(idsOf(first), d.ids...), want)
	return append([]recovery.Page{first}, d.pages...)
}

// idsOf is the ids of a page's activities.
func idsOf(p recovery.Page) []string {
	ids := make([]string, len(p.Activities))
	for i, a := range p.Activities {
		ids[i] = a.ID
	}
	return ids
}

func TestContentLengthThatLiesIsNamed(t *testing.T) {
	t.Parallel()
	// An answer whose Content-Length announces 100 bytes more than it
	// holds (issue 22: after 2 minutes, "no complete answer", or "not
	// the expected JSON: unexpected EOF"): the connection closes after
	// it, or stalls until the request's time is up.
	acts, _ := generate(100, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	srv.FailNext(2, mcastest.Fault{LongerBy: 100})
	src, _ := newSource(t, srv, nil)
	msg := fetchFails(t, srv, src, recovery.Cursor{}, recovery.ErrTooManyCriticalErrors, 2)
	if !regexp.MustCompile(`the last two got the same malformed answer, which retrying does not mend: the answer ended after (\d+) of the (\d+) bytes its Content-Length announced`).MatchString(msg) {
		t.Errorf("message %q does not say the answer ended short of its length", msg)
	}

	srv.FailNext(2, mcastest.Fault{LongerBy: 100, Stall: true})
	src, _ = newSource(t, srv, func(c *mcas.Config) { c.RequestTimeout, c.MaxCriticalErrors = 300*time.Millisecond, 2 })
	msg = fetchFails(t, srv, src, recovery.Cursor{}, recovery.ErrTooManyCriticalErrors, 2)
	if !regexp.MustCompile(`the last: timeout: the answer from \S+ stalled after \d+ of the \d+ bytes its Content-Length announced, and was not complete within 300ms`).MatchString(msg) {
		t.Errorf("message %q does not say the answer stalled short of its length", msg)
	}
}
