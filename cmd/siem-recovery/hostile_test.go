package main

import (
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas/mcastest"
)

// The binary against an API that answers as no API should (issue 16):
// each run ends on its own at the second such answer, with the exit code
// and the line its golden file pins, having delivered what came before
// exactly once; no secret and no control character reaches the output or
// the checkpoint.

// assertCleanOutput fails if the output holds a control character other
// than the newlines that end its lines, or a line the tool did not write.
func assertCleanOutput(t *testing.T, out string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if strings.ContainsFunc(line, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Errorf("a control character reached the output: %q", line)
		}
		if strings.HasPrefix(line, "level=") {
			t.Errorf("a forged log line: %q", line)
		}
	}
}

func TestAPIHostileAnswersEndTheRun(t *testing.T) {
	t.Parallel()
	const forged = `{"detail":"teapot\nlevel=INFO msg=completed sent_total=3000\u001b[2J\u001b]0;pwned\u0007"}`
	for _, tc := range []struct {
		name     string
		fault    mcastest.Fault
		pageSize string
		code     int
	}{
		{"repeat-filters", mcastest.Fault{RepeatFilters: true}, "1000", exitTooManyCritical},
		{"overfill", mcastest.Fault{Overfill: 1_000_000}, "1000", exitTooManyCritical},
		{"cursor-stuck", mcastest.Fault{IgnoreStart: true}, "100", exitTooManyCritical},
		{"rewind", mcastest.Fault{Rewind: true}, "1000", exitTooManyCritical},
		{"scan-went-back", mcastest.Fault{IgnoreStart: true}, "1000", exitTooManyCritical},
		{"length-lies", mcastest.Fault{LongerBy: 100}, "1000", exitTooManyCritical},
		{"internal-error", mcastest.Fault{Status: 418, Body: forged}, "1000", exitGeneral},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 3000})
			early := mcastest.Generate(mcastest.GenerateOptions{Window: recovery.Window{Start: apiWindow.Start - 60_000, End: apiWindow.Start}, Count: 300})
			srv := mcastest.New(t, mcastest.Options{Activities: append(early, acts...)})
			// The first two requests (the window's count, the first page)
			// are answered properly; the next ones (3, 4) are hostile.
			srv.FailEvery(3, tc.fault)
			srv.FailEvery(4, tc.fault)
			a := newAPIRun(t, srv, srv.Token())
			r := a.run(t, nil, "--page-size", tc.pageSize)
			wantCode(t, r, tc.code)
			golden(t, "api/hostile-"+tc.name+"/stderr", normalize(lastLine(r.stderr), hostPort(srv.URL)))
			assertCleanOutput(t, r.stderr)

			// The first page, exactly once; nothing of the hostile ones.
			st := statusJSON(t, a.dir, "cp.db")
			page := int(st.Sent)
			if page == 0 || page > 1000 {
				t.Fatalf("%d sent, want the first page", page)
			}
			assertDelivered(t, filepath.Join(a.dir, "out.jsonl"), acts[:page])
			requests := 4 // the count, the first page, and two hostile answers to the same request
			if tc.code == exitGeneral {
				requests = 3 // not retried
			}
			if got := srv.Stats().Requests; got != requests {
				t.Errorf("%d API requests, want %d", got, requests)
			}
			if st.State != "failed" || st.LastError == "" {
				t.Errorf("status %+v: want failed, with the last error", st)
			}
			assertCleanOutput(t, st.LastError)
		})
	}
}

// An API that answers every page with nothing in it, "hasNext": true and
// a continuation new each time would be followed forever (issue 22: 450
// requests in 20 s, never ending): the fourth such answer in a row is
// malformed, and so is its retry's.
func TestAPIEmptyPagesWithoutEndEndTheRun(t *testing.T) {
	t.Parallel()
	srv := mcastest.New(t, mcastest.Options{Activities: mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 3000})})
	srv.FailEvery(1, mcastest.Fault{EmptyNext: true}) // every scan request; the count is answered
	a := newAPIRun(t, srv, srv.Token())
	r := a.run(t, nil, "--page-size", "1000", "--max-duration", "1m")
	wantCode(t, r, exitTooManyCritical)
	golden(t, "api/hostile-empty-pages/stderr", normalize(lastLine(r.stderr), hostPort(srv.URL)))
	// The count, three empty pages followed, and two refused.
	if got := srv.Stats().Requests; got != 6 {
		t.Errorf("%d API requests, want 6", got)
	}
	// Nothing was delivered: the run leaves no checkpoint behind.
	if _, err := os.Stat(filepath.Join(a.dir, "cp.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a run that delivered nothing left a checkpoint: %v", err)
	}
}

// Activities the API lists twice, within a page or across a page
// boundary, reach the file once.
func TestAPIActivitiesListedAgainAreSentOnce(t *testing.T) {
	t.Parallel()
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 3000})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	srv.FailEvery(2, mcastest.Fault{Repeat: true})
	a := newAPIRun(t, srv, srv.Token())
	r := a.run(t, nil, "--page-size", "500")
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(a.dir, "out.jsonl"), acts)
	wantStderr(t, r, "the API listed activities again (within a page, or from the page before); dropped the repeats")
	if st := statusJSON(t, a.dir, "cp.db"); st.Sent != 3000 {
		t.Errorf("status says %d sent, want 3000", st.Sent)
	}
}

func TestAPIRedirectHoldingTheTokenShowsItNowhere(t *testing.T) {
	srv := mcastest.New(t, mcastest.Options{Activities: mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 10})})
	token := srv.Token()
	// The third request, the second page: the first was delivered, so the
	// run made its checkpoint, which records the error.
	srv.FailEvery(3, mcastest.Fault{Status: 302,
		Location: "https://login.example/?token=" + token + "&u=" + strings.ToUpper(token) + "&p=" + token[24:44]})
	a := newAPIRun(t, srv, token)
	r := a.run(t, nil, "--log-format", "json", "--verbose", "--page-size", "5")
	wantCode(t, r, exitUsage)
	wantJSONLines(t, r.stderr)
	golden(t, "api/redirect-token/stderr", jsonTime.ReplaceAllString(normalize(lastLine(r.stderr), hostPort(srv.URL)), `"time":"TIME"`))
	if status := assertTokenNowhere(t, a, r, token); !strings.Contains(status, "token=[REDACTED]&u=[REDACTED]&p=[REDACTED]") {
		t.Errorf("status does not show the redacted redirect:\n%s", status)
	}
}

// A wrong API port (issue 18): check says the source fails, and a run
// stops at its first request instead of retrying for minutes.
func TestAPIWrongPortIsASourceProblem(t *testing.T) {
	srv := mcastest.New(t, mcastest.Options{})
	dead := mcastest.DeadAddr(t)
	a := newAPIRun(t, srv, srv.Token())
	args := append(without(a.args, "--source", srv.URL), "--source", "http://"+dead)

	r := runBin(t, a.dir, nil, append([]string{"check"}, args[1:]...)...)
	wantCode(t, r, exitUsage)
	golden(t, "check/api-source-refused/stdout", normalize(r.stdout, dead))

	r = runBin(t, a.dir, nil, args...)
	wantCode(t, r, exitUsage)
	golden(t, "api/source-refused/stderr", normalize(lastLine(r.stderr), dead))
	if n := strings.Count(r.stderr, "API request failed; retrying"); n != 0 {
		t.Errorf("retried %d times:\n%s", n, r.stderr)
	}
}

// encodedToken is a legacy token with the characters URL and JSON encoders
// change: + = . (issue 22: such a token echoed URL-encoded by the API was
// printed whole and stored in the checkpoint's last error).
const encodedToken = "Enc+0123456789=abcdefghij.klmnopqrst+uvwxyz=ABCDEFGHIJ.KLMNOPQRST+UVWXYZ=="

// assertTokenNowhere fails if the token, in any encoded form, shows in the
// run's output, its checkpoint or status; it returns what status printed.
func assertTokenNowhere(t *testing.T, a apiRun, r result, token string) string {
	t.Helper()
	cp, err := os.ReadFile(filepath.Join(a.dir, "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	status := runBin(t, a.dir, nil, "status", "--checkpoint", "cp.db")
	for name, text := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "checkpoint": string(cp), "status": status.stdout} {
		if at, shown := mcastest.ShowsSecret(text, token); shown {
			t.Errorf("the token shows at byte %d of the %s", at, name)
		}
	}
	return status.stdout
}

func TestAPIEncodedEchoOfTheTokenShowsItNowhere(t *testing.T) {
	t.Parallel()
	newServer := func() *mcastest.Server {
		return mcastest.New(t, mcastest.Options{Token: encodedToken, Activities: mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 10})})
	}
	lower := strings.NewReplacer("%2B", "%2b", "%3D", "%3d")

	// A redirect to a sign-in page with the token in its query, as a
	// gateway writes it: QueryEscape's %2B, in lower case, PathEscape's.
	// It answers the third request (the count, the first page, the
	// second): the run delivered a page, so its checkpoint exists and
	// records the error.
	srv := newServer()
	srv.FailFrom(3, 1, mcastest.Fault{Status: 302, Location: "https://login.example/?token=" + url.QueryEscape(encodedToken) +
		"&u=" + lower.Replace(url.QueryEscape(encodedToken)) + "&p=" + url.PathEscape(encodedToken)})
	a := newAPIRun(t, srv, encodedToken)
	r := a.run(t, nil, "--log-format", "json", "--verbose", "--page-size", "5")
	wantCode(t, r, exitUsage)
	wantJSONLines(t, r.stderr)
	golden(t, "api/redirect-token-encoded/stderr", jsonTime.ReplaceAllString(normalize(lastLine(r.stderr), hostPort(srv.URL)), `"time":"TIME"`))
	assertTokenNowhere(t, a, r, encodedToken)

	// An error answer that echoes it JSON-escaped (\u002B) and
	// percent-encoded, retried, then given up.
	escaped := strings.NewReplacer("+", `\u002B`, "=", `\u003d`, ".", `\u002E`).Replace(encodedToken)
	srv = newServer()
	srv.FailFrom(3, 2, mcastest.Fault{Status: 500, Body: `{"detail":"upstream refused Token ` + escaped + ` (` + url.QueryEscape(encodedToken) + `)"}`})
	a = newAPIRun(t, srv, encodedToken)
	r = a.run(t, nil, "--log-format", "json", "--verbose", "--max-critical-errors", "2", "--page-size", "5")
	wantCode(t, r, exitTooManyCritical)
	wantJSONLines(t, r.stderr)
	golden(t, "api/error-echoes-token-encoded/stderr", jsonTime.ReplaceAllString(normalize(lastLine(r.stderr), hostPort(srv.URL)), `"time":"TIME"`))
	assertTokenNowhere(t, a, r, encodedToken)
}

// A source that is not the activities API, or the API on the other scheme
// (issue 28: https:// to a plain-HTTP port, and a web server answering
// 501, were retried for 4 minutes as an outage, then exit 5 "contact
// support"; check said "General error during bootstrap"): check says the
// source fails, and a run stops at its first request with exit 2 and the
// remedy, retrying nothing.
func TestAPISchemeOrServerMismatchIsASourceProblem(t *testing.T) {
	t.Parallel()
	plain := mcastest.New(t, mcastest.Options{})
	tlsAPI := mcastest.New(t, mcastest.Options{TLS: true})
	// Web servers that are not the API: Python's http.server answers a
	// POST with 501, a portal with its sign-in page, a static site with
	// 404 on the route.
	web := func(status int, page string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html;charset=utf-8")
			w.WriteHeader(status)
			io.WriteString(w, page)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	for _, tc := range []struct {
		name, source string
	}{
		{"https-to-plain-port", "https://" + hostPort(plain.URL)},
		{"http-to-tls-port", "http://" + hostPort(tlsAPI.URL)},
		{"not-the-api-501", web(501, "<html><body><h1>Error response</h1><p>Error code: 501</p><p>Message: Unsupported method ('POST').</p></body></html>")},
		{"not-the-api-html", web(200, "<!DOCTYPE html><html><head><title>Sign in to your account</title></head></html>")},
		{"not-the-api-404", web(404, "<html><body>404 page not found</body></html>")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAPIRun(t, plain, plain.Token())
			args := append(without(a.args, "--source", plain.URL), "--source", tc.source)
			// The binary trusts the TLS emulator's certificate.
			env := []string{"SSL_CERT_FILE=" + writeFile(t, a.dir, "ca.pem", string(tlsAPI.CAPEM()))}

			r := runBin(t, a.dir, env, append([]string{"check"}, args[1:]...)...)
			wantCode(t, r, exitUsage)
			golden(t, "check/api-source-"+tc.name+"/stdout", normalize(r.stdout, hostPort(tc.source)))

			r = runBin(t, a.dir, env, args...)
			wantCode(t, r, exitUsage)
			golden(t, "api/source-"+tc.name+"/stderr", normalize(lastLine(r.stderr), hostPort(tc.source)))
			if n := strings.Count(r.stderr, "API request failed; retrying"); n != 0 {
				t.Errorf("retried %d times:\n%s", n, r.stderr)
			}
		})
	}
	if n := plain.Stats().Requests + tlsAPI.Stats().Requests; n != 0 {
		t.Errorf("%d requests reached the emulators' handlers", n)
	}
}

// A total that is not a count ("1200", 1e18, a negative number) ended the
// run as a malformed answer, where an absent one is tolerated (issue 22):
// it is taken for none, with one warning. The run reads the window in one
// lane (nothing to balance lanes by) and delivers it; a dry run counts by
// paging; and a dry run's duration for the largest total taken does not
// overflow.
func TestAPIUnusableTotalIsNone(t *testing.T) {
	t.Parallel()
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 3000})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	srv.FailEvery(1, mcastest.Fault{Total: `"1200"`})
	a := newAPIRun(t, srv, srv.Token())
	args := append([]string(nil), a.args...)
	args[slices.Index(args, "--parallel")+1] = "auto"
	r := runBin(t, a.dir, nil, append(args, "--page-size", "500")...)
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(a.dir, "out.jsonl"), acts)
	if n := strings.Count(r.stderr, `msg="the API's total is not a count of activities; counting by other means"`); n != 1 || !strings.Contains(r.stderr, `total="\"1200\""`) {
		t.Errorf("%d warnings, want one naming the total:\n%s", n, r.stderr)
	}

	srv.ClearFaults()
	srv.FailEvery(1, mcastest.Fault{Total: `1e18`})
	r = runBin(t, a.dir, nil, append(args, "--page-size", "500", "--dry-run")...)
	wantCode(t, r, 0)
	wantStderr(t, r, "dry run: nothing sent, no checkpoint written", "activities=3000", "run_needs_requests=6", "run_takes_at_rate_limit=0s")

	srv.ClearFaults()
	srv.FailEvery(1, mcastest.Fault{Total: `1000000000000`})
	r = runBin(t, a.dir, nil, append(args, "--page-size", "1", "--dry-run")...)
	wantCode(t, r, 0)
	wantStderr(t, r, "activities=1000000000000", "run_needs_requests=1000000000000", `run_takes_at_rate_limit="more than 100 years"`)
}
