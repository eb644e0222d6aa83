package mcas_test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/entra"
	"siem-recovery/recovery/entra/entratest"
	"siem-recovery/recovery/mcas"
	"siem-recovery/recovery/mcas/mcastest"
)

const (
	testTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testClient = "3f1a1c55-5b2e-4c8a-9a0e-6f3b2d1e0c9a"
	testSecret = "Qx8~entratest.SECRET-value_0123456789abcd"
)

// entraSetup is an API emulator over HTTPS that accepts only the unexpired
// tokens an Entra ID emulator issued.
type entraSetup struct {
	api   *mcastest.Server
	entra *entratest.Server
	want  []string // the window's ids
	env   map[string]string

	mu     sync.Mutex
	issued []string // the access tokens issued, oldest first
}

// newEntraSetup: tokens live lifetime; the API's clock runs ahead of ours
// by ahead, so it refuses a token that long before it expires.
func newEntraSetup(t *testing.T, lifetime, ahead time.Duration, activities int) *entraSetup {
	t.Helper()
	acts, want := generate(activities, 0, 0)
	e := &entraSetup{want: want}
	e.api = mcastest.New(t, mcastest.Options{Activities: acts, TLS: true})
	e.entra = entratest.New(t, entratest.Options{TokenLifetime: lifetime, OnToken: func(tok string, exp time.Time) {
		e.api.AcceptToken(tok, exp.Add(-ahead))
		e.mu.Lock()
		e.issued = append(e.issued, tok)
		e.mu.Unlock()
	}})
	e.entra.Register(testTenant, entratest.App{ClientID: testClient, Secret: testSecret})
	e.env = map[string]string{
		"AZURE_TENANT_ID": testTenant, "AZURE_CLIENT_ID": testClient, "AZURE_CLIENT_SECRET": testSecret,
		"AZURE_AUTHORITY_HOST": e.entra.URL,
	}
	return e
}

// tokens returns the access tokens issued so far.
func (e *entraSetup) tokens() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.issued)
}

func (e *entraSetup) getenv(name string) string { return e.env[name] }

// source builds a Source that authenticates as the setup's environment says.
func (e *entraSetup) source(t *testing.T, edit func(*mcas.Config)) (*mcas.Source, *logBuffer) {
	t.Helper()
	id, err := entra.FromEnv(e.getenv)
	if err != nil {
		t.Fatalf("EntraFromEnv: %v", err)
	}
	return newSource(t, e.api, func(c *mcas.Config) {
		c.Token, c.Identity = recovery.Token{}, id
		if edit != nil {
			edit(c)
		}
	})
}

// TestEntraRenewsTokensDuringARun: a run that outlives several 4-second
// tokens (the rate limit spaces its 15 requests 500 ms apart) renews each
// before it expires: every activity once, no request refused, though the
// API's clock runs a second ahead of ours (a token used until it expires
// by our clock would be refused).
func TestEntraRenewsTokensDuringARun(t *testing.T) {
	t.Parallel()
	e := newEntraSetup(t, 4*time.Second, time.Second, 1450)
	src, logs := e.source(t, func(c *mcas.Config) { c.RateLimit, c.PageSize = 120, 100 })
	d := drainAll(t, src, time.Minute, e.want, logs.String)
	if d.requests < 15 {
		t.Fatalf("%d API requests, want at least 15", d.requests)
	}
	st := e.entra.Stats()
	if st.Issued < 3 {
		t.Errorf("%d tokens issued over a run of at least 7 s with 4-second tokens, want 3 or more", st.Issued)
	}
	if api := e.api.Stats(); api.Unauthorized != 0 || api.Expired != 0 {
		t.Errorf("the API refused %d requests (%d for an expired token): tokens were not renewed before expiry", api.Unauthorized, api.Expired)
	}
	if !strings.Contains(logs.String(), "renewed the access token") {
		t.Errorf("no renewal logged:\n%s", logs.String())
	}
	// The SDK's token request: the scope, with what MSAL adds.
	for _, r := range e.entra.Requests() {
		if r.Form == nil {
			continue
		}
		if got := r.Form["scope"]; got != mcas.Scope+" openid offline_access profile" {
			t.Errorf("token request scope %q", got)
		}
		if r.Form["client_secret"] != "[set]" || r.Form["grant_type"] != "client_credentials" || r.Form["client_id"] != testClient {
			t.Errorf("token request form %v", r.Form)
		}
	}
	assertNoSecret(t, testSecret, logs.String())
}

// TestEntraRenewsOnceOn401: a 401 from the API brings a new token and one
// more try; a second 401 in a row is ErrInvalidToken.
func TestEntraRenewsOnceOn401(t *testing.T) {
	e := newEntraSetup(t, time.Hour, 0, 50)
	src, logs := e.source(t, nil)
	e.api.FailNext(1, mcastest.Fault{Status: http.StatusUnauthorized})
	drainAll(t, src, 30*time.Second, e.want, logs.String)
	if got := e.entra.Stats().Issued; got != 2 {
		t.Errorf("%d tokens issued, want 2: the first, and one after the 401", got)
	}
	if !strings.Contains(logs.String(), "retrying once with a new one") {
		t.Errorf("the renewal is not logged:\n%s", logs.String())
	}

	e.api.FailNext(2, mcastest.Fault{Status: http.StatusUnauthorized})
	issued, requests := e.entra.Stats().Issued, e.api.Stats().Requests
	_, err := src.Fetch(ctxFor(t, 30*time.Second), recovery.Cursor{})
	if !errors.Is(err, recovery.ErrInvalidToken) {
		t.Fatalf("error %v, want ErrInvalidToken after two 401s", err)
	}
	if got := e.api.Stats().Requests - requests; got != 2 {
		t.Errorf("%d API requests, want 2", got)
	}
	if got := e.entra.Stats().Issued - issued; got != 1 {
		t.Errorf("%d tokens issued, want 1", got)
	}
	if !strings.Contains(err.Error(), "Investigation.Read") {
		t.Errorf("the remedy does not name the permission: %v", err)
	}
}

// TestEntraRefusals: each refusal of Entra ID is ErrInvalidToken with its
// AADSTS code and remedy, before any API request; nothing secret shows.
func TestEntraRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		app  entratest.App
		env  map[string]string
		want []string
	}{
		{"wrong secret", entratest.App{ClientID: testClient, Secret: "the-real-one"}, nil,
			[]string{"AADSTS7000215", "the client secret is wrong", "copy the secret's Value, not its Secret ID"}},
		{"expired secret", entratest.App{ClientID: testClient, Secret: testSecret, SecretExpired: true}, nil,
			[]string{"AADSTS7000222", "expired"}},
		{"unknown client", entratest.App{ClientID: testClient, Secret: testSecret}, map[string]string{"AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555"},
			[]string{"AADSTS700016", "AZURE_CLIENT_ID"}},
		{"unknown tenant", entratest.App{ClientID: testClient, Secret: testSecret}, map[string]string{"AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000000"},
			[]string{"AADSTS90002", "no such tenant"}},
		{"no consent", entratest.App{ClientID: testClient, Secret: testSecret, NoConsent: true}, nil,
			[]string{"AADSTS65001", "admin consent", "Investigation.Read"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEntraSetup(t, time.Hour, 0, 10)
			e.entra.Register(testTenant, tc.app)
			for k, v := range tc.env {
				e.env[k] = v
			}
			src, logs := e.source(t, nil)
			_, err := src.Fetch(ctxFor(t, 30*time.Second), recovery.Cursor{})
			if !errors.Is(err, recovery.ErrInvalidToken) {
				t.Fatalf("error %v, want ErrInvalidToken", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error lacks %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("the error is not one line: %q", err)
			}
			if got := e.api.Stats().Requests; got != 0 {
				t.Errorf("%d API requests after a refusal", got)
			}
			assertNoSecret(t, testSecret, err.Error(), logs.String())
		})
	}
}

// TestEntraUnreachableAuthority: an authority nothing answers at is
// retried as the API is, and counts toward MaxCriticalErrors; one that
// fails a few times and comes back is waited for.
func TestEntraUnreachableAuthority(t *testing.T) {
	e := newEntraSetup(t, time.Hour, 0, 10)
	e.env["AZURE_AUTHORITY_HOST"] = "https://" + mcastest.DeadAddr(t)
	src, _ := e.source(t, func(c *mcas.Config) { c.MaxCriticalErrors = 3 })
	_, err := src.Fetch(ctxFor(t, 30*time.Second), recovery.Cursor{})
	if !errors.Is(err, recovery.ErrTooManyCriticalErrors) {
		t.Fatalf("error %v, want ErrTooManyCriticalErrors", err)
	}
	if !strings.Contains(err.Error(), "connection refused") || e.api.Stats().Requests != 0 {
		t.Errorf("error %v after %d API requests", err, e.api.Stats().Requests)
	}

	e = newEntraSetup(t, time.Hour, 0, 10)
	e.entra.FailNext(2, http.StatusServiceUnavailable)
	src, logs := e.source(t, func(c *mcas.Config) { c.MaxCriticalErrors = 3 })
	drainAll(t, src, 30*time.Second, e.want, logs.String)
	if st := e.entra.Stats(); st.Faults != 2 || st.Issued != 1 {
		t.Errorf("Entra ID stats %+v, want 2 faults then 1 token", st)
	}
	if !strings.Contains(logs.String(), "HTTP 503") {
		t.Errorf("the authority's failures are not logged:\n%s", logs.String())
	}
}

// TestEntraNoOtherHost: with AZURE_AUTHORITY_HOST on another host than the
// public cloud's, the run asks nothing of any host but the authority and
// the API (instance discovery would ask login.microsoftonline.com). The
// proxy refuses any other host without resolving it.
func TestEntraNoOtherHost(t *testing.T) {
	e := newEntraSetup(t, time.Hour, 0, 600)
	proxy := entratest.StartProxy(t)
	src, logs := e.source(t, func(c *mcas.Config) { c.Proxy, c.PageSize = proxy.URL, 500 })
	drainAll(t, src, 30*time.Second, e.want, logs.String)
	authority, api := strings.TrimPrefix(e.entra.URL, "https://"), strings.TrimPrefix(e.api.URL, "https://")
	hosts := proxy.Hosts()
	for _, h := range hosts {
		if h != authority && h != api {
			t.Errorf("a request went to %s (hosts asked for: %v)", h, hosts)
		}
	}
	if !slices.Contains(hosts, authority) || !slices.Contains(hosts, api) {
		t.Errorf("hosts asked for %v, want %s and %s", hosts, authority, api)
	}
	if st := e.entra.Stats(); st.Other != 0 || st.OpenID != 1 || st.Issued != 1 {
		t.Errorf("Entra ID stats %+v", st)
	}
}

// TestEntraDeadProxy: a --proxy nothing answers at fails the first token
// request as it would the API's: ErrInvalidProxy, not retried.
func TestEntraDeadProxy(t *testing.T) {
	e := newEntraSetup(t, time.Hour, 0, 10)
	src, _ := e.source(t, func(c *mcas.Config) { c.Proxy = mcastest.DeadAddr(t) })
	_, err := src.Fetch(ctxFor(t, 30*time.Second), recovery.Cursor{})
	if !errors.Is(err, recovery.ErrInvalidProxy) {
		t.Fatalf("error %v, want ErrInvalidProxy", err)
	}
	if st := e.entra.Stats(); st.OpenID+st.Token != 0 || e.api.Stats().Requests != 0 {
		t.Errorf("requests arrived around the dead proxy: Entra ID %+v, API %d", st, e.api.Stats().Requests)
	}
}

// TestEntraTokenThroughTinyproxy: the token requests go through --proxy.
func TestEntraTokenThroughTinyproxy(t *testing.T) {
	proxy := mcastest.StartTinyproxy(t)
	e := newEntraSetup(t, time.Hour, 0, 10)
	src, logs := e.source(t, func(c *mcas.Config) { c.Proxy = proxy.URL() })
	drainAll(t, src, 30*time.Second, e.want, logs.String)
	proxy.WaitLog(t, "CONNECT "+strings.TrimPrefix(e.entra.URL, "https://"), 5*time.Second)
}

// TestEntraCertificate: a client assertion signed by the registered
// certificate is accepted; one signed by another certificate is refused
// with AADSTS700027; an expired certificate is refused before any request.
func TestEntraCertificate(t *testing.T) {
	now := time.Now()
	good := entratest.NewCertificate(t, "siem-recovery", now.Add(-time.Hour), now.Add(time.Hour))
	other := entratest.NewCertificate(t, "siem-recovery", now.Add(-time.Hour), now.Add(time.Hour))
	expired := entratest.NewCertificate(t, "siem-recovery", now.Add(-48*time.Hour), now.Add(-time.Hour))
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, file string
		want       error
		text       string
	}{
		{"registered", write("good.pem", good.PEM), nil, ""},
		{"not registered", write("other.pem", other.PEM), recovery.ErrInvalidToken, "AADSTS700027"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEntraSetup(t, time.Hour, 0, 20)
			e.entra.Register(testTenant, entratest.App{ClientID: testClient, Certificate: good.Cert})
			delete(e.env, "AZURE_CLIENT_SECRET")
			e.env["AZURE_CLIENT_CERTIFICATE_PATH"] = tc.file
			src, logs := e.source(t, nil)
			// The private key's PEM block, which no log line or error may show.
			pemFile, _ := os.ReadFile(tc.file)
			key := string(pemFile[bytes.Index(pemFile, []byte("-----BEGIN PRIVATE KEY")):])
			if tc.want == nil {
				drainAll(t, src, 30*time.Second, e.want, logs.String)
				if !strings.Contains(src.Credential(), "client certificate") {
					t.Errorf("Credential() = %q", src.Credential())
				}
				assertNoSecret(t, key, logs.String(), src.Credential())
				return
			}
			_, err := src.Fetch(ctxFor(t, 30*time.Second), recovery.Cursor{})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %v, want %v with %s", err, tc.want, tc.text)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") || e.api.Stats().Requests != 0 {
				t.Fatalf("error %v after %d API requests", err, e.api.Stats().Requests)
			}
			assertNoSecret(t, key, err.Error(), logs.String())
		})
	}

	_, err := entra.FromEnv(func(k string) string {
		return map[string]string{"AZURE_TENANT_ID": testTenant, "AZURE_CLIENT_ID": testClient,
			"AZURE_CLIENT_CERTIFICATE_PATH": write("expired.pem", expired.PEM)}[k]
	})
	if !errors.Is(err, recovery.ErrInvalidToken) || !strings.Contains(err.Error(), "expired on") {
		t.Fatalf("an expired certificate: %v", err)
	}
}

// TestEntraWorkloadIdentity: the Kubernetes service account token in
// AZURE_FEDERATED_TOKEN_FILE is exchanged for an access token; a token of
// another service account is refused with AADSTS70021.
func TestEntraWorkloadIdentity(t *testing.T) {
	issuer := entratest.NewServiceAccountIssuer(t, "https://oidc.aks.example/cluster-1/")
	const subject = "system:serviceaccount:siem:siem-recovery"
	for _, tc := range []struct {
		name, subject string
		ok            bool
	}{{"registered", subject, true}, {"other account", "system:serviceaccount:default:default", false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEntraSetup(t, time.Hour, 0, 20)
			e.entra.Register(testTenant, entratest.App{ClientID: testClient, Federated: issuer.Credential(subject)})
			file := filepath.Join(t.TempDir(), "token")
			assertion := issuer.Token(t, tc.subject, time.Hour)
			if err := os.WriteFile(file, []byte(assertion), 0o600); err != nil {
				t.Fatal(err)
			}
			delete(e.env, "AZURE_CLIENT_SECRET")
			e.env["AZURE_FEDERATED_TOKEN_FILE"] = file
			src, logs := e.source(t, nil)
			if tc.ok {
				drainAll(t, src, 30*time.Second, e.want, logs.String)
				assertNoSecret(t, assertion, logs.String())
				return
			}
			_, err := src.Fetch(ctxFor(t, 30*time.Second), recovery.Cursor{})
			if !errors.Is(err, recovery.ErrInvalidToken) || !strings.Contains(err.Error(), "AADSTS70021") {
				t.Fatalf("error %v, want AADSTS70021", err)
			}
			assertNoSecret(t, assertion, err.Error(), logs.String())
		})
	}
}

// TestManagedIdentity: the App Service endpoint the SDK finds through
// IDENTITY_ENDPOINT and IDENTITY_HEADER gives the tokens, renewed during
// the run; a user-assigned identity not attached is refused.
func TestManagedIdentity(t *testing.T) {
	acts, want := generate(450, 0, 0)
	api := mcastest.New(t, mcastest.Options{Activities: acts, TLS: true})
	mi := entratest.NewManagedIdentity(t, entratest.Options{TokenLifetime: 3 * time.Second, OnToken: api.AcceptToken}, "user-assigned-1")
	for _, kv := range mi.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	id, err := entra.ManagedFromEnv(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	src, logs := newSource(t, api, func(c *mcas.Config) {
		c.Token, c.Identity, c.RateLimit, c.PageSize = recovery.Token{}, id, 120, 100
	})
	drainAll(t, src, time.Minute, want, logs.String)
	if mi.Issued() < 2 || api.Stats().Unauthorized != 0 {
		t.Errorf("%d tokens issued, %d requests refused", mi.Issued(), api.Stats().Unauthorized)
	}
	assertNoSecret(t, mi.Header, logs.String())

	id, err = entra.ManagedFromEnv(func(k string) string {
		if k == "AZURE_CLIENT_ID" {
			return "not-attached"
		}
		return os.Getenv(k)
	})
	if err != nil {
		t.Fatal(err)
	}
	src, _ = newSource(t, api, func(c *mcas.Config) { c.Token, c.Identity = recovery.Token{}, id })
	_, err = src.Fetch(ctxFor(t, 30*time.Second), recovery.Cursor{})
	if !errors.Is(err, recovery.ErrInvalidToken) || !strings.Contains(err.Error(), "No User Assigned") {
		t.Fatalf("error %v, want ErrInvalidToken naming the missing identity", err)
	}
	assertNoSecret(t, mi.Header, err.Error())
}

func TestEntraFromEnvNeedsACredential(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		kind error
		want string
	}{
		{map[string]string{"AZURE_CLIENT_ID": testClient}, recovery.ErrInvalidToken, "AZURE_TENANT_ID is not set"},
		{map[string]string{"AZURE_TENANT_ID": testTenant, "AZURE_CLIENT_ID": testClient}, recovery.ErrInvalidToken, "none of AZURE_CLIENT_SECRET"},
		{map[string]string{"AZURE_TENANT_ID": testTenant, "AZURE_CLIENT_ID": testClient, "AZURE_FEDERATED_TOKEN_FILE": "/nonexistent/token"}, recovery.ErrInvalidToken, "/nonexistent/token cannot be read"},
		{map[string]string{"AZURE_TENANT_ID": testTenant, "AZURE_CLIENT_ID": testClient, "AZURE_CLIENT_SECRET": "s", "AZURE_AUTHORITY_HOST": "http://login.example"}, recovery.ErrUsage, "is not an https:// host"},
	} {
		_, err := entra.FromEnv(func(k string) string { return tc.env[k] })
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("env %v: error %v, want %v with %q", tc.env, err, tc.kind, tc.want)
		}
	}
}
