package entratest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ManagedIdentity emulates the managed identity endpoint that App Service
// (and Azure Functions) give a process through IDENTITY_ENDPOINT and
// IDENTITY_HEADER, the environment the Azure SDK documents; it listens on
// plain HTTP on 127.0.0.1, as the real one on the host's loopback.
type ManagedIdentity struct {
	// Endpoint and Header are IDENTITY_ENDPOINT and IDENTITY_HEADER.
	Endpoint, Header string

	srv      *httptest.Server
	lifetime time.Duration
	onToken  func(string, time.Time)
	key      *rsa.PrivateKey
	assigned map[string]bool // user-assigned client ids attached

	mu     sync.Mutex
	issued int
}

// NewManagedIdentity starts the endpoint for a resource with a
// system-assigned identity and the user-assigned ones whose client ids are
// given. Options work as for New.
func NewManagedIdentity(tb testing.TB, opts Options, userAssigned ...string) *ManagedIdentity {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("entratest: signing key: %v", err)
	}
	header := make([]byte, 16)
	_, _ = rand.Read(header)
	m := &ManagedIdentity{Header: hex.EncodeToString(header), lifetime: opts.TokenLifetime, onToken: opts.OnToken, key: key, assigned: map[string]bool{}}
	if m.lifetime <= 0 {
		m.lifetime = time.Hour
	}
	for _, id := range userAssigned {
		m.assigned[id] = true
	}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	m.Endpoint = m.srv.URL + "/msi/token"
	tb.Cleanup(m.srv.Close)
	return m
}

// Env is the environment that points the SDK at the endpoint.
func (m *ManagedIdentity) Env() []string {
	return []string{"IDENTITY_ENDPOINT=" + m.Endpoint, "IDENTITY_HEADER=" + m.Header}
}

// Issued is how many tokens the endpoint issued.
func (m *ManagedIdentity) Issued() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.issued
}

func (m *ManagedIdentity) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case r.URL.Path != "/msi/token" || r.Method != http.MethodGet:
		http.NotFound(w, r)
	case subtle.ConstantTimeCompare([]byte(r.Header.Get("X-IDENTITY-HEADER")), []byte(m.Header)) != 1:
		writeJSON(w, http.StatusUnauthorized, map[string]any{"statusCode": 401, "message": "Unauthorized: X-IDENTITY-HEADER is missing or wrong."})
	case q.Get("api-version") != "2019-08-01":
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "Unsupported api-version " + q.Get("api-version")})
	case q.Get("resource") != Resource:
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "Invalid resource " + q.Get("resource")})
	case q.Get("client_id") != "" && !m.assigned[q.Get("client_id")]:
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400,
			"message": "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId."})
	default:
		token, expires := mint(m.key, m.lifetime, jwt.MapClaims{"appid": q.Get("client_id")})
		m.mu.Lock()
		m.issued++
		m.mu.Unlock()
		if m.onToken != nil {
			m.onToken(token, expires)
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"access_token": token,
			"expires_on":   strconv.FormatInt(expires.Unix(), 10),
			"resource":     Resource,
			"token_type":   "Bearer",
			"client_id":    q.Get("client_id"),
		})
	}
}
