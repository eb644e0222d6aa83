package entratest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // the x5t thumbprint is SHA-1 by definition (RFC 7515)
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Resource is the application id of "Microsoft Cloud App Security", whose
// tokens the activities API takes.
const Resource = "05a65629-4c1b-48c1-a78b-804c4abdd4af"

// GraphResource is Microsoft Graph, the other resource the server issues
// tokens for (the Graph source's advanced hunting).
const GraphResource = "https://graph.microsoft.com"

// resources are the resources the tenants' service principals exist for.
var resources = []string{Resource, GraphResource}

// Options configure a Server.
type Options struct {
	// TokenLifetime is how long an issued access token lives; default one
	// hour, as Entra ID's. It is sent as whole seconds (at least 1).
	TokenLifetime time.Duration
	// OnToken is told every access token issued and when it expires:
	// hand it to mcastest.Server.AcceptToken.
	OnToken func(token string, expires time.Time)
}

// App is an application registered in a tenant.
type App struct {
	ClientID string
	// Secret is the value of its client secret ("" for none);
	// SecretExpired makes the server refuse it as expired (AADSTS7000222).
	Secret        string
	SecretExpired bool
	// Certificate is the public part uploaded for client assertions (nil
	// for none).
	Certificate *x509.Certificate
	// Federated is a federated credential: a Kubernetes service account
	// token from Issuer for Subject, signed by Key (nil for none).
	Federated *Federated
	// NoConsent makes the server refuse every request with AADSTS65001:
	// no administrator consented to the API permission.
	NoConsent bool
}

// Federated is a federated identity credential of an application.
type Federated struct {
	Issuer, Subject string
	Key             *rsa.PublicKey
}

// Stats count the requests the server received.
type Stats struct {
	OpenID  int // GET of a tenant's OpenID configuration
	Token   int // POST to a tenant's token endpoint
	Issued  int // access tokens issued
	Refused int // answered with an AADSTS error
	Faults  int // answered with an injected fault
	Other   int // any other path (instance discovery, ...): answered 404
}

// Request is one request as the server saw it, without any secret.
type Request struct {
	Host, Method, Path string
	// For token requests: the form fields the SDK sent; secrets are
	// replaced by "[set]".
	Form map[string]string
	// Status is the answer's status code.
	Status int
}

// Server is a running Entra ID emulator. Its methods are safe for
// concurrent use.
type Server struct {
	// URL is https://127.0.0.1:PORT, for AZURE_AUTHORITY_HOST.
	URL string

	srv      *httptest.Server
	lifetime time.Duration
	onToken  func(string, time.Time)
	key      *rsa.PrivateKey // signs the access tokens

	mu      sync.Mutex
	tenants map[string]map[string]App // tenant → client id → app
	faults  []int                     // statuses of the next answers
	stats   Stats
	log     []Request
}

// New starts an emulator on 127.0.0.1 over HTTPS (httptest's certificate,
// the same as mcastest's TLS server: see CAPEM); it is closed when the
// test ends.
func New(tb testing.TB, opts Options) *Server {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("entratest: signing key: %v", err)
	}
	s := &Server{lifetime: opts.TokenLifetime, onToken: opts.OnToken, key: key, tenants: map[string]map[string]App{}}
	if s.lifetime <= 0 {
		s.lifetime = time.Hour
	}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	tb.Cleanup(s.srv.Close)
	return s
}

// CAPEM is the server's certificate in PEM, for SSL_CERT_FILE.
func (s *Server) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// Register adds app to tenant (creating the tenant).
func (s *Server) Register(tenant string, app App) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tenant = strings.ToLower(tenant)
	if s.tenants[tenant] == nil {
		s.tenants[tenant] = map[string]App{}
	}
	s.tenants[tenant][app.ClientID] = app
}

// FailNext answers the next n requests with status (a 5xx, or 429 with
// Retry-After: 1) before looking at them.
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, status)
	}
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Requests returns the requests so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	req := Request{Host: r.Host, Method: r.Method, Path: r.URL.Path}
	rec := &statusWriter{ResponseWriter: w}
	defer func() {
		req.Status = rec.status
		s.mu.Lock()
		s.log = append(s.log, req)
		s.mu.Unlock()
	}()
	if status, ok := s.takeFault(); ok {
		if status == http.StatusTooManyRequests {
			rec.Header().Set("Retry-After", "1")
		}
		writeJSON(rec, status, map[string]any{"error": "temporarily_unavailable", "error_description": "injected fault"})
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 4 && parts[1] == "v2.0" && parts[2] == ".well-known" && parts[3] == "openid-configuration" && r.Method == http.MethodGet:
		s.count(func(st *Stats) { st.OpenID++ })
		s.openID(rec, r, parts[0])
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "token" && r.Method == http.MethodPost:
		s.count(func(st *Stats) { st.Token++ })
		if err := r.ParseForm(); err == nil {
			req.Form = recordedForm(r.PostForm)
		}
		s.token(rec, r, parts[0])
	default:
		s.count(func(st *Stats) { st.Other++ })
		http.NotFound(rec, r)
	}
}

func (s *Server) takeFault() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.faults) == 0 {
		return 0, false
	}
	status := s.faults[0]
	s.faults = s.faults[1:]
	s.stats.Faults++
	return status, true
}

func (s *Server) count(f func(*Stats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.stats)
}

func (s *Server) apps(tenant string) (map[string]App, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	apps, ok := s.tenants[strings.ToLower(tenant)]
	return apps, ok
}

func (s *Server) openID(w http.ResponseWriter, r *http.Request, tenant string) {
	if _, ok := s.apps(tenant); !ok {
		s.refuse(w, http.StatusBadRequest, "invalid_tenant", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	base := "https://" + r.Host + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"issuer":                                base + "/v2.0",
		"jwks_uri":                              "https://" + r.Host + "/" + tenant + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"tenant_region_scope":                   "EU",
		"cloud_instance_name":                   "microsoftonline.com",
	})
}

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

func (s *Server) token(w http.ResponseWriter, r *http.Request, tenant string) {
	apps, ok := s.apps(tenant)
	if !ok {
		s.refuse(w, http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found.", tenant))
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "client_credentials" {
		s.refuse(w, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
		return
	}
	clientID := f.Get("client_id")
	app, ok := apps[clientID]
	if !ok {
		s.refuse(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, tenant))
		return
	}
	if !slices.ContainsFunc(resources, func(r string) bool { return slices.Contains(strings.Fields(f.Get("scope")), r+"/.default") }) {
		s.refuse(w, http.StatusBadRequest, "invalid_resource", 500011, fmt.Sprintf("The resource principal named %q was not found in the tenant named %s.", f.Get("scope"), tenant))
		return
	}
	endpoint := "https://" + r.Host + r.URL.Path
	if status, code, errName, desc := authenticate(app, f.Get("client_secret"), f.Get("client_assertion_type"), f.Get("client_assertion"), endpoint); code != 0 {
		s.refuse(w, status, errName, code, desc)
		return
	}
	if app.NoConsent {
		s.refuse(w, http.StatusBadRequest, "invalid_grant", 65001, fmt.Sprintf("The user or administrator has not consented to use the application with ID '%s'.", clientID))
		return
	}
	token, _ := s.issue(tenant, clientID)
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     int(s.lifetime.Seconds()),
		"ext_expires_in": int(s.lifetime.Seconds()),
		"access_token":   token,
	})
}

// authenticate checks the client's credential: a secret, or an assertion
// signed by its certificate, or a federated token. A zero code accepts.
func authenticate(app App, secret, kind, assertion, endpoint string) (status, code int, errName, desc string) {
	switch {
	case secret != "":
		if app.Secret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(app.Secret)) != 1 {
			return http.StatusUnauthorized, 7000215, "invalid_client", "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '" + app.ClientID + "'."
		}
		if app.SecretExpired {
			return http.StatusUnauthorized, 7000222, "invalid_client", "The provided client secret keys for app '" + app.ClientID + "' are expired."
		}
		return 0, 0, "", ""
	case kind == assertionType && assertion != "":
		if app.Federated != nil && app.Certificate == nil {
			return checkFederated(app, assertion)
		}
		return checkAssertion(app, assertion, endpoint)
	}
	return http.StatusUnauthorized, 7000218, "invalid_client", "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."
}

// checkAssertion verifies a client assertion as Entra ID does: signed by
// the registered certificate (named by its x5t#S256 or x5t thumbprint),
// for this token endpoint, by and about the client, within its time.
func checkAssertion(app App, assertion, endpoint string) (int, int, string, string) {
	bad := func(code int, why string) (int, int, string, string) {
		return http.StatusUnauthorized, code, "invalid_client", why
	}
	if app.Certificate == nil {
		return bad(700027, "Client assertion failed signature validation. [Reason - The key was not found.]")
	}
	_, err := jwt.Parse(assertion, func(t *jwt.Token) (any, error) {
		if !thumbprintMatches(t.Header, app.Certificate) {
			return nil, errors.New("the key was not found")
		}
		return app.Certificate.PublicKey, nil
	}, jwt.WithValidMethods([]string{"PS256", "RS256"}), jwt.WithAudience(endpoint), jwt.WithIssuer(app.ClientID),
		jwt.WithSubject(app.ClientID), jwt.WithExpirationRequired())
	switch {
	case errors.Is(err, jwt.ErrTokenExpired) || errors.Is(err, jwt.ErrTokenNotValidYet):
		return bad(700024, "Client assertion is not within its valid time range.")
	case err != nil:
		return bad(700027, "Client assertion failed signature validation. [Reason - "+err.Error()+"]")
	case time.Now().After(app.Certificate.NotAfter):
		return bad(700027, "Client assertion contains an invalid signature. [Reason - The key used is expired.]")
	}
	return 0, 0, "", ""
}

func thumbprintMatches(header map[string]any, cert *x509.Certificate) bool {
	if v, ok := header["x5t#S256"].(string); ok {
		sum := sha256.Sum256(cert.Raw)
		return v == base64.StdEncoding.EncodeToString(sum[:]) || v == base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if v, ok := header["x5t"].(string); ok {
		sum := sha1.Sum(cert.Raw) //nolint:gosec // see the import
		return v == base64.StdEncoding.EncodeToString(sum[:]) || v == base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return false
}

// checkFederated verifies a Kubernetes service account token against the
// application's federated credential.
func checkFederated(app App, assertion string) (int, int, string, string) {
	fed := app.Federated
	_, err := jwt.Parse(assertion, func(*jwt.Token) (any, error) { return fed.Key, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience("api://AzureADTokenExchange"),
		jwt.WithIssuer(fed.Issuer), jwt.WithSubject(fed.Subject), jwt.WithExpirationRequired())
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return http.StatusBadRequest, 700024, "invalid_client", "Client assertion is not within its valid time range."
	case err != nil:
		return http.StatusBadRequest, 70021, "invalid_request", "No matching federated identity record found for presented assertion. [" + err.Error() + "]"
	}
	return 0, 0, "", ""
}

// issue makes an access token for the API: a JWT signed by the server's
// key, as Entra ID's, and tells OnToken.
func (s *Server) issue(tenant, clientID string) (string, time.Time) {
	token, expires := mint(s.key, s.lifetime, jwt.MapClaims{"tid": tenant, "appid": clientID, "roles": []string{"Investigation.Read"},
		"iss": "https://sts.windows.net/" + tenant + "/"})
	s.count(func(st *Stats) { st.Issued++ })
	if s.onToken != nil {
		s.onToken(token, expires)
	}
	return token, expires
}

// mint signs an access token for Resource that expires after lifetime
// (whole seconds, as the protocol sends them).
func mint(key *rsa.PrivateKey, lifetime time.Duration, claims jwt.MapClaims) (string, time.Time) {
	now := time.Now()
	secs := max(int64(lifetime.Seconds()), 1)
	expires := now.Add(time.Duration(secs) * time.Second)
	claims["aud"] = "https://" + Resource
	claims["iat"], claims["nbf"], claims["exp"] = now.Unix(), now.Unix(), expires.Unix()
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	claims["uti"] = base64.RawURLEncoding.EncodeToString(nonce) // two tokens of one second differ
	token, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key)
	if err != nil {
		panic("entratest: sign an access token: " + err.Error())
	}
	return token, expires
}

// refuse answers an AADSTS error in the body shape of Entra ID.
func (s *Server) refuse(w http.ResponseWriter, status int, errName string, code int, desc string) {
	s.count(func(st *Stats) { st.Refused++ })
	now := time.Now().UTC()
	trace, corr := newID(), newID()
	writeJSON(w, status, map[string]any{
		"error": errName,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s",
			code, desc, trace, corr, now.Format("2006-01-02 15:04:05Z")),
		"error_codes":    []int{code},
		"timestamp":      now.Format("2006-01-02 15:04:05Z"),
		"trace_id":       trace,
		"correlation_id": corr,
		"error_uri":      fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", code),
	})
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// recordedForm keeps a token request's fields, the secret ones masked.
func recordedForm(f map[string][]string) map[string]string {
	out := make(map[string]string, len(f))
	for k, v := range f {
		switch k {
		case "client_secret", "client_assertion":
			out[k] = "[set]"
		default:
			out[k] = strings.Join(v, " ")
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}
