package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"siem-recovery/recovery/entra/entratest"
	"siem-recovery/recovery/mcas/mcastest"
)

// Entra ID authentication driven through the binary: the SDK's standard
// environment, the Entra ID emulator reached through AZURE_AUTHORITY_HOST,
// and both emulators' certificate trusted through SSL_CERT_FILE.

const (
	entraTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	entraClient = "3f1a1c55-5b2e-4c8a-9a0e-6f3b2d1e0c9a"
	entraSecret = "Qx8~binary.SECRET-value_0123456789abcdef"
)

// entraRun is a run of the binary that authenticates as an Entra ID
// application: no token anywhere, the AZURE_ variables only.
type entraRun struct {
	api    *mcastest.Server
	entra  *entratest.Server
	acts   []json.RawMessage
	dir    string
	args   []string
	env    []string
	mu     sync.Mutex
	tokens []string // every access token issued
}

// newEntraRun: tokens live lifetime; the API's clock runs ahead of ours
// by ahead.
func newEntraRun(t *testing.T, count int, lifetime, ahead time.Duration) *entraRun {
	t.Helper()
	e := &entraRun{acts: mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: count})}
	e.api = mcastest.New(t, mcastest.Options{Activities: e.acts, TLS: true})
	e.entra = entratest.New(t, entratest.Options{TokenLifetime: lifetime, OnToken: func(tok string, exp time.Time) {
		e.mu.Lock()
		e.tokens = append(e.tokens, tok)
		e.mu.Unlock()
		e.api.AcceptToken(tok, exp.Add(-ahead))
	}})
	e.entra.Register(entraTenant, entratest.App{ClientID: entraClient, Secret: entraSecret})
	e.dir = t.TempDir()
	ca := writeFile(t, e.dir, "ca.pem", string(e.entra.CAPEM()))
	e.env = []string{"SSL_CERT_FILE=" + ca, "AZURE_TENANT_ID=" + entraTenant, "AZURE_CLIENT_ID=" + entraClient,
		"AZURE_CLIENT_SECRET=" + entraSecret, "AZURE_AUTHORITY_HOST=" + e.entra.URL}
	e.args = []string{"--start", strconv.FormatInt(apiWindow.Start, 10), "--end", strconv.FormatInt(apiWindow.End, 10),
		"--source", e.api.URL, "--checkpoint", "cp.db", "--rate-limit", "6000", "--sink", "file:out.jsonl", "--format", "json"}
	return e
}

func (e *entraRun) run(t *testing.T, command string, extra ...string) result {
	t.Helper()
	return runBin(t, e.dir, e.env, append(append([]string{command}, e.args...), extra...)...)
}

// assertNothingSecret fails if the client secret or any access token
// issued shows in the output or the checkpoint.
func (e *entraRun) assertNothingSecret(t *testing.T, r result) {
	t.Helper()
	cp, _ := os.ReadFile(filepath.Join(e.dir, "cp.db"))
	e.mu.Lock()
	secrets := append([]string{entraSecret}, e.tokens...)
	e.mu.Unlock()
	for i, s := range secrets {
		for where, text := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "the checkpoint": string(cp)} {
			if strings.Contains(text, s) || strings.Contains(text, s[:20]) {
				t.Fatalf("secret %d (0: the client secret, then the access tokens) shows in %s", i, where)
			}
		}
	}
}

// normalizeEntra replaces what changes from run to run: the emulators'
// ports and Entra ID's correlation id.
var correlation = regexp.MustCompile(`correlation id [0-9a-f-]+`)

func normalizeEntra(s string, e *entraRun) string {
	s = normalize(s, hostPort(e.api.URL), hostPort(e.entra.URL))
	return correlation.ReplaceAllString(s, "correlation id ID")
}

// TestEntraRunOutlivesSeveralTokens is the "done when": with only
// the AZURE_ variables set, a run that outlives several tokens (4 s each,
// the API's clock a second ahead, 15 requests 500 ms apart) delivers each
// activity once, the API refuses nothing, and no secret is printed.
func TestEntraRunOutlivesSeveralTokens(t *testing.T) {
	t.Parallel()
	e := newEntraRun(t, 1450, 4*time.Second, time.Second)
	r := e.run(t, "run", "--rate-limit", "120", "--page-size", "100", "--log-format", "json", "--verbose")
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(e.dir, "out.jsonl"), e.acts)
	if st := e.entra.Stats(); st.Issued < 3 {
		t.Errorf("%d tokens issued over a run of 7 s or more with 4-second tokens, want 3 or more", st.Issued)
	}
	if st := e.api.Stats(); st.Unauthorized != 0 {
		t.Errorf("the API refused %d requests (%d expired tokens)", st.Unauthorized, st.Expired)
	}
	wantStderr(t, r, "obtained an access token", "renewed the access token", "completed")
	e.assertNothingSecret(t, r)
}

// TestEntraWrongSecretExits3: a wrong secret exits 3 naming AADSTS7000215,
// with no API request and nothing secret printed.
func TestEntraWrongSecretExits3(t *testing.T) {
	e := newEntraRun(t, 10, time.Hour, 0)
	e.entra.Register(entraTenant, entratest.App{ClientID: entraClient, Secret: "the-right-one"})
	r := e.run(t, "run", "--log-format", "json", "--verbose")
	wantCode(t, r, exitInvalidToken)
	wantJSONLines(t, r.stderr)
	golden(t, "api/entra-wrong-secret/stderr", jsonTime.ReplaceAllString(normalizeEntra(lastLine(r.stderr), e), `"time":"TIME"`))
	if n := e.api.Stats().Requests; n != 0 {
		t.Errorf("%d API requests after Entra ID refused the secret", n)
	}
	e.assertNothingSecret(t, r)
}

// TestEntraUnreachableAuthorityExits5: an authority nothing answers at is
// retried, and the failures count toward --max-critical-errors.
func TestEntraUnreachableAuthorityExits5(t *testing.T) {
	t.Parallel()
	e := newEntraRun(t, 10, time.Hour, 0)
	dead := mcastest.DeadAddr(t)
	e.env = append(e.env, "AZURE_AUTHORITY_HOST=https://"+dead)
	r := e.run(t, "run", "--max-critical-errors", "3")
	wantCode(t, r, exitTooManyCritical)
	golden(t, "api/entra-unreachable/stderr", normalize(lastLine(r.stderr), hostPort(e.api.URL), dead))
	if n := e.api.Stats().Requests; n != 0 {
		t.Errorf("%d API requests without a token", n)
	}
}

// TestEntraNoOtherHost: through a proxy that records every host asked for
// (and reaches none but 127.0.0.1), a run with AZURE_AUTHORITY_HOST set
// asks nothing of any host but the authority and the API.
func TestEntraNoOtherHost(t *testing.T) {
	e := newEntraRun(t, 600, time.Hour, 0)
	proxy := entratest.StartProxy(t)
	r := e.run(t, "run", "--proxy", proxy.URL, "--page-size", "500")
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(e.dir, "out.jsonl"), e.acts)
	hosts := proxy.Hosts()
	want := []string{hostPort(e.entra.URL), hostPort(e.api.URL)}
	for _, h := range hosts {
		if !slices.Contains(want, h) {
			t.Errorf("a request went to %s; hosts asked for: %v", h, hosts)
		}
	}
	for _, h := range want {
		if !slices.Contains(hosts, h) {
			t.Errorf("no request went through the proxy to %s; hosts asked for: %v", h, hosts)
		}
	}
	if st := e.entra.Stats(); st.Other != 0 {
		t.Errorf("%d requests to other paths of the authority (instance discovery?)", st.Other)
	}
}

// TestEntraCheckShowsIdentity: check names the identity, that a token was
// obtained and for how long, and that the API accepted it; a refusal by
// Entra ID fails the token line with its AADSTS code, before the API.
func TestEntraCheckShowsIdentity(t *testing.T) {
	e := newEntraRun(t, 10, time.Hour, 0)
	r := e.run(t, "check")
	wantCode(t, r, 0)
	golden(t, "check/entra/stdout", normalizeEntra(r.stdout, e))
	if n := e.api.Stats().Requests; n != 2 {
		t.Errorf("check made %d API requests, want 2 (the probe and the count)", n)
	}
	e.assertNothingSecret(t, r)

	e.entra.Register(entraTenant, entratest.App{ClientID: entraClient, Secret: entraSecret, NoConsent: true})
	r = e.run(t, "check")
	wantCode(t, r, exitInvalidToken)
	golden(t, "check/entra-no-consent/stdout", normalizeEntra(r.stdout, e))
	if n := e.api.Stats().Requests; n != 2 {
		t.Errorf("check asked the API without a token (%d requests)", n-2)
	}
}

// TestManagedIdentityRun: --auth managed-identity takes its tokens from the
// machine's endpoint (App Service's, found through IDENTITY_ENDPOINT), not
// through --proxy, and renews them during the run.
func TestManagedIdentityRun(t *testing.T) {
	t.Parallel()
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 450})
	api := mcastest.New(t, mcastest.Options{Activities: acts, TLS: true})
	mi := entratest.NewManagedIdentity(t, entratest.Options{TokenLifetime: 3 * time.Second, OnToken: api.AcceptToken})
	proxy := entratest.StartProxy(t)
	dir := t.TempDir()
	ca := writeFile(t, dir, "ca.pem", string(api.CAPEM()))
	r := runBin(t, dir, append(mi.Env(), "SSL_CERT_FILE="+ca), "run", "--auth", "managed-identity",
		"--start", strconv.FormatInt(apiWindow.Start, 10), "--end", strconv.FormatInt(apiWindow.End, 10),
		"--source", api.URL, "--checkpoint", "cp.db", "--rate-limit", "120", "--page-size", "100",
		"--proxy", proxy.URL, "--sink", "file:out.jsonl", "--format", "json")
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(dir, "out.jsonl"), acts)
	if mi.Issued() < 2 || api.Stats().Unauthorized != 0 {
		t.Errorf("%d tokens issued, %d requests refused", mi.Issued(), api.Stats().Unauthorized)
	}
	if hosts := proxy.Hosts(); slices.Contains(hosts, strings.TrimPrefix(strings.TrimSuffix(mi.Endpoint, "/msi/token"), "http://")) || len(hosts) == 0 {
		t.Errorf("hosts asked of the proxy: %v; want the API only", hosts)
	}
	if strings.Contains(r.stdout+r.stderr, mi.Header) {
		t.Error("IDENTITY_HEADER is printed")
	}
}

// TestEntraTokenRefusedByAPI: the API refusing a fresh token (401) is
// exit 3 after one renewal, with the Entra ID remedy. The first page and
// the window's count, asked for beside it, are each refused, and each
// renews the token once; one request a second keeps them in that order:
// the page (token 1), the count (token 2, after the page's renewal), the
// page again (token 3), refused: the end.
func TestEntraTokenRefusedByAPI(t *testing.T) {
	e := newEntraRun(t, 10, time.Hour, 0)
	e.api.FailEvery(1, mcastest.Fault{Status: http.StatusUnauthorized})
	r := e.run(t, "run", "--rate-limit", "60")
	wantCode(t, r, exitInvalidToken)
	golden(t, "api/entra-refused-by-api/stderr", normalizeEntra(lastLine(r.stderr), e))
	if st, api := e.entra.Stats(), e.api.Stats(); st.Issued != 3 || api.Requests != 3 {
		t.Errorf("%d tokens issued for %d API requests, want 3 and 3: one renewal after each request's first 401", st.Issued, api.Requests)
	}
	wantStderr(t, r, "retrying once with a new one")
}
