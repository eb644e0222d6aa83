package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas/mcastest"
)

// The API source driven through the binary, against the emulator of
// recovery/mcas/mcastest: exit codes 0, 3, 4 and 5, and a run through a
// real tinyproxy.

var apiWindow = recovery.Window{Start: 1715673600000, End: 1715677200000} // 2024-05-14 08:00–09:00 UTC

// apiRun is a run of the binary against srv: its directory, with the
// token in token.txt, and the arguments every case shares.
type apiRun struct {
	dir  string
	args []string
}

// newAPIRun prepares a run against srv with token. It reads in one lane
// (--parallel 1): these cases count the requests
// and inject faults by their order, which scan lanes, sized from answer
// times the machine's load moves, would change (lanes_test.go tests them).
func newAPIRun(t *testing.T, srv *mcastest.Server, token string) apiRun {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "token.txt", token+"\n")
	return apiRun{dir: dir, args: []string{"run",
		"--start", strconv.FormatInt(apiWindow.Start, 10), "--end", strconv.FormatInt(apiWindow.End, 10),
		"--source", srv.URL, "--token-file", "token.txt", "--checkpoint", "cp.db",
		"--rate-limit", "6000", "--parallel", "1", "--sink", "file:out.jsonl", "--format", "json"}}
}

func (a apiRun) run(t *testing.T, env []string, extra ...string) result {
	t.Helper()
	return runBin(t, a.dir, env, append(append([]string(nil), a.args...), extra...)...)
}

// normalize replaces the addresses that change from run to run.
func normalize(s string, addrs ...string) string {
	for _, a := range addrs {
		_, port, _ := strings.Cut(a, ":")
		s = strings.ReplaceAll(s, a, "127.0.0.1:PORT")
		s = strings.ReplaceAll(s, "port "+port, "port PORT")
	}
	return s
}

func hostPort(url string) string {
	return strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://")
}

// assertDelivered checks out.jsonl holds each activity exactly once, each
// line the activity object exactly as the API returned it.
func assertDelivered(t *testing.T, path string, want []json.RawMessage) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	wanted := make(map[string]bool, len(want))
	for _, raw := range want {
		wanted[string(raw)] = true
	}
	seen := make(map[string]bool, len(lines))
	for i, l := range lines {
		switch {
		case !wanted[l]:
			t.Fatalf("line %d is not an activity of the window as the API sent it: %.300s", i+1, l)
		case seen[l]:
			t.Fatalf("line %d repeats an activity: %.300s", i+1, l)
		}
		seen[l] = true
	}
	if len(seen) != len(want) {
		t.Fatalf("%d activities delivered, want %d", len(seen), len(want))
	}
}

func TestAPIRunDeliversEveryActivityOnce(t *testing.T) {
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 3000, Burst: 300, BurstIndex: 850})
	outside := mcastest.Generate(mcastest.GenerateOptions{Window: recovery.Window{Start: apiWindow.End, End: apiWindow.End + 1000}, Count: 5})
	srv := mcastest.New(t, mcastest.Options{Activities: append(append([]json.RawMessage(nil), acts...), outside...)})
	a := newAPIRun(t, srv, srv.Token())

	r := a.run(t, nil, "--page-size", "1000")
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(a.dir, "out.jsonl"), acts)
	// The count, the pages, the answer that ends the listing, and the
	// final sweep for what was saved while the run ran.
	requests := srv.Stats().Requests
	if requests > 3000/1000+3 {
		t.Errorf("%d API requests for 3000 activities in pages of 1000", requests)
	}
	wantStderr(t, r, "completed")

	// A re-run of the completed checkpoint asks the API nothing.
	r = a.run(t, nil, "--page-size", "1000")
	wantCode(t, r, 0)
	wantStderr(t, r, "already completed, nothing to do")
	if got := srv.Stats().Requests; got != requests {
		t.Errorf("the re-run made %d API requests", got-requests)
	}
}

func TestAPIRunResumesAfterTooManyCriticalErrors(t *testing.T) {
	t.Parallel()
	// Pages of 100 (plain paging) through 300 activities in one
	// millisecond; the API fails for good after the third page, the run
	// exits 5, and a re-run once the API is back delivers the rest: each
	// activity once, over both runs.
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 600, Burst: 300, BurstIndex: 150})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	srv.FailEvery(4, mcastest.Fault{Status: 503})
	srv.FailEvery(5, mcastest.Fault{Status: 503})
	srv.FailEvery(6, mcastest.Fault{Status: 503})
	a := newAPIRun(t, srv, srv.Token())

	r := a.run(t, nil, "--page-size", "100", "--max-critical-errors", "3")
	wantCode(t, r, exitTooManyCritical)
	golden(t, "api/critical-errors/stderr", normalize(lastLine(r.stderr), hostPort(srv.URL)))

	srv.ClearFaults()
	r = a.run(t, nil, "--page-size", "100", "--max-critical-errors", "3")
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(a.dir, "out.jsonl"), acts)
}

func TestAPIWrongTokenExits3(t *testing.T) {
	const wrong = "Wr0ngT0ken-abcdefghijklmnopqrstuvwxyz-0123456789-ABCDEFGHIJKLMNOPQRSTUV"
	srv := mcastest.New(t, mcastest.Options{Activities: mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 10})})
	for _, tc := range []struct {
		name string
		how  string // token-file, env, flag
	}{{"token-file", "token-file"}, {"env", "env"}, {"flag", "flag"}} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAPIRun(t, srv, wrong)
			var env []string
			args := a.args
			switch tc.how {
			case "env":
				env = []string{"MCAS_TOKEN=" + wrong}
				args = without(args, "--token-file", "token.txt")
			case "flag":
				args = append(without(args, "--token-file", "token.txt"), "--token", wrong)
			}
			r := runBin(t, a.dir, env, append(args, "--log-format", "json", "--verbose")...)
			wantCode(t, r, exitInvalidToken)
			// With JSON logs the error is a JSON record too (issue 28): a
			// log shipper reading stderr gets it.
			wantJSONLines(t, r.stderr)
			golden(t, "api/token-wrong/stderr", jsonTime.ReplaceAllString(normalize(lastLine(r.stderr), hostPort(srv.URL)), `"time":"TIME"`))
			if at, shown := mcastest.ShowsSecret(r.stdout+r.stderr, wrong); shown {
				t.Fatalf("the token is printed, at byte %d of the output", at)
			}
			// A run that fails before the API answered leaves nothing
			// behind: no checkpoint, no lock (issue 28).
			wantNoCheckpoint(t, filepath.Join(a.dir, "cp.db"))
		})
	}

	// A token that is no token is refused before any request.
	before := srv.Stats().Requests
	a := newAPIRun(t, srv, "not-a-token secret")
	r := a.run(t, nil)
	wantCode(t, r, exitInvalidToken)
	golden(t, "api/token-malformed/stderr", lastLine(r.stderr))
	wantNoCheckpoint(t, filepath.Join(a.dir, "cp.db"))
	if strings.Contains(r.stderr, "secret") {
		t.Fatalf("the token is printed: %s", r.stderr)
	}
	if srv.Stats().Requests != before {
		t.Error("a malformed token was sent to the API")
	}
}

// jsonTime is the time of a JSON log record, which changes from run to run.
var jsonTime = regexp.MustCompile(`"time":"[^"]*"`)

// wantJSONLines checks that every line of a run's stderr is a JSON object,
// the error that ends it included.
func wantJSONLines(t *testing.T, stderr string) {
	t.Helper()
	for i, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		var record map[string]any
		if err := json.Unmarshal([]byte(line), &record); err != nil {
			t.Fatalf("stderr line %d is not JSON: %v\n%s", i+1, err, line)
		}
	}
}

// wantNoCheckpoint checks that a run that failed before its source
// answered left neither a checkpoint nor a lock at path.
func wantNoCheckpoint(t *testing.T, path string) {
	t.Helper()
	for _, p := range []string{path, path + ".lock", path + ".new"} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("the failed run left %s behind", p)
		}
	}
}

func without(args []string, drop ...string) []string {
	var out []string
	for _, a := range args {
		keep := true
		for _, d := range drop {
			keep = keep && a != d
		}
		if keep {
			out = append(out, a)
		}
	}
	return out
}

func TestAPIDeadProxyExits4(t *testing.T) {
	srv := mcastest.New(t, mcastest.Options{Activities: mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 10})})
	dead := mcastest.DeadAddr(t)
	a := newAPIRun(t, srv, srv.Token())
	r := a.run(t, nil, "--proxy", dead)
	wantCode(t, r, exitInvalidProxy)
	golden(t, "api/proxy-dead/stderr", normalize(lastLine(r.stderr), dead))
	wantNoCheckpoint(t, filepath.Join(a.dir, "cp.db"))
	if srv.Stats().Requests != 0 {
		t.Error("a request reached the API around the proxy")
	}

	r = a.run(t, nil, "--proxy", "proxy.corp")
	wantCode(t, r, exitInvalidProxy)
	golden(t, "api/proxy-no-port/stderr", lastLine(r.stderr))
}

func TestAPIRunThroughTinyproxy(t *testing.T) {
	proxy := mcastest.StartTinyproxy(t)
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 1200, Burst: 100, BurstIndex: 450})
	srv := mcastest.New(t, mcastest.Options{Activities: acts, TLS: true})
	a := newAPIRun(t, srv, srv.Token())
	// The binary trusts the emulator's self-signed certificate through
	// the standard SSL_CERT_FILE.
	ca := writeFile(t, a.dir, "ca.pem", string(srv.CAPEM()))
	start := time.Now()
	r := a.run(t, []string{"SSL_CERT_FILE=" + ca}, "--proxy", proxy.URL(), "--page-size", "500")
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(a.dir, "out.jsonl"), acts)
	proxy.WaitLog(t, "CONNECT "+hostPort(srv.URL), 5*time.Second)
	if srv.Stats().Requests < 3 {
		t.Errorf("%d API requests for 1200 activities in pages of 500", srv.Stats().Requests)
	}
	t.Logf("through tinyproxy in %v", time.Since(start))
}

func TestAPICheckProbesTokenAndProxy(t *testing.T) {
	proxy := mcastest.StartTinyproxy(t)
	srv := mcastest.New(t, mcastest.Options{Activities: mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 10})})

	a := newAPIRun(t, srv, srv.Token())
	args := append([]string{"check"}, a.args[1:]...)
	// Proxy credentials (tinyproxy here ignores them) are not printed.
	withCreds := strings.Replace(proxy.URL(), "http://", "http://ops:SECRETP@", 1)
	r := runBin(t, a.dir, nil, append(args, "--proxy", withCreds)...)
	wantCode(t, r, 0)
	for _, want := range []string{"OK  proxy", "OK  token",
		"OK  count       10 activities in the window (one more request); a run needs at least 1 request(s) of 5000, 0s at --rate-limit 6000\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout+r.stderr, "SECRETP") {
		t.Errorf("check shows the proxy password:\n%s%s", r.stdout, r.stderr)
	}
	if got := srv.Stats().Requests; got != 2 {
		t.Errorf("check made %d API requests, want 2 (the probe and the count)", got)
	}
	proxy.WaitLog(t, "POST http://"+hostPort(srv.URL)+"/api/v1/activities/", 5*time.Second)

	bad := newAPIRun(t, srv, strings.Repeat("x", 64))
	r = runBin(t, bad.dir, nil, append([]string{"check"}, bad.args[1:]...)...)
	wantCode(t, r, exitInvalidToken)
	if _, shown := mcastest.ShowsSecret(r.stdout+r.stderr, strings.Repeat("x", 64)); !strings.Contains(r.stdout, "FAIL  token") || shown {
		t.Errorf("check with a wrong token:\n%s%s", r.stdout, r.stderr)
	}
}
