package graph_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/graph"
	"siem-recovery/recovery/graph/graphtest"
)

// tokens is an Authorization and Renew pair over a list of tokens: each
// renewal moves to the next.
type tokens struct {
	mu      sync.Mutex
	list    []string
	at      int
	renewed atomic.Int32
}

func (k *tokens) authorization(context.Context) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return "Bearer " + k.list[k.at], nil
}

func (k *tokens) renew() bool {
	k.renewed.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.at+1 == len(k.list) {
		return false
	}
	k.at++
	return true
}

const (
	oldToken = "old-access-token-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789"
	newToken = "new-access-token-abcdefghijklmnopqrstuvwxyz-9876543210"
)

// TestUnauthorizedRenewsOnce: a 401 renews the token once and asks again;
// the expired token is counted by the server, and the rows come once.
func TestUnauthorizedRenewsOnce(t *testing.T) {
	all, want := rowsFor(300, 0, 0)
	srv := graphtest.New(t, graphtest.Options{Rows: all, Tokens: []string{newToken}})
	srv.AcceptToken(oldToken, time.Now().Add(-time.Minute))
	k := &tokens{list: []string{oldToken, newToken}}
	src, logs := newSource(t, srv, func(c *graph.Config) { c.Authorization, c.Renew = k.authorization, k.renew })
	drainAll(t, src, want)
	st := srv.Stats()
	if k.renewed.Load() != 1 || st.Expired != 1 || st.Unauthorized != 1 || st.Requests != 2 {
		t.Errorf("%d renewals, stats %+v; want one renewal after one expired token, 2 requests", k.renewed.Load(), st)
	}
	if !strings.Contains(logs.String(), "the API refused the access token; retrying once with a new one") {
		t.Errorf("no renewal logged:\n%s", logs)
	}
}

// TestSecondUnauthorizedIsInvalidToken: a 401 after the renewal is exit
// 3, and neither token reaches the error or the log.
func TestSecondUnauthorizedIsInvalidToken(t *testing.T) {
	srv := graphtest.New(t, graphtest.Options{Rows: graphtest.Generate(graphtest.GenerateOptions{Window: testWindow, Count: 10})})
	k := &tokens{list: []string{oldToken, newToken, "a-third-token-that-is-never-asked-for-0000000000"}}
	src, logs := newSource(t, srv, func(c *graph.Config) { c.Authorization, c.Renew = k.authorization, k.renew })
	_, err := src.Fetch(ctxFor(t, time.Minute), recovery.Cursor{})
	want := "the API answered 401 for " + srv.URL + graphtest.Path + " (InvalidAuthenticationToken: Access token validation failure. Invalid audience.); " +
		"check the application has the Microsoft Graph application permission ThreatHunting.Read.All, with admin consent, and that the token is for https://graph.microsoft.com/.default"
	if !errors.Is(err, recovery.ErrInvalidToken) || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if n := srv.Stats().Requests; n != 2 || k.renewed.Load() != 1 {
		t.Errorf("%d requests, %d renewals; want 2 and 1", n, k.renewed.Load())
	}
	for _, tok := range []string{oldToken, newToken} {
		if showsToken(err.Error(), tok) || showsToken(logs.String(), tok) {
			t.Errorf("a token shows in the error or the log:\n%v\n%s", err, logs)
		}
	}
}

// TestRefusalsWithoutRenewal: without a way to renew, a 401 is final at
// once; a 403 (no permission) is final whatever the token.
func TestRefusalsWithoutRenewal(t *testing.T) {
	srv := graphtest.New(t, graphtest.Options{})
	src, _ := newSource(t, srv, func(c *graph.Config) { c.Authorization = bearer(oldToken) })
	if _, err := src.Fetch(ctxFor(t, time.Minute), recovery.Cursor{}); !errors.Is(err, recovery.ErrInvalidToken) || srv.Stats().Requests != 1 {
		t.Errorf("401 without renewal: %v after %d requests; want ErrInvalidToken after 1", err, srv.Stats().Requests)
	}

	srv = graphtest.New(t, graphtest.Options{})
	srv.FailNext(1, graphtest.Fault{Status: 403, Body: `{"error":{"code":"Forbidden","message":"Missing application roles. API required roles: ThreatHunting.Read.All."}}`})
	k := &tokens{list: []string{graphtest.DefaultToken, newToken}}
	src, _ = newSource(t, srv, func(c *graph.Config) { c.Authorization, c.Renew = k.authorization, k.renew })
	_, err := src.Fetch(ctxFor(t, time.Minute), recovery.Cursor{})
	if !errors.Is(err, recovery.ErrInvalidToken) || !strings.Contains(err.Error(), "the API answered 403 for "+srv.URL+graphtest.Path+" (Forbidden: Missing application roles. API required roles: ThreatHunting.Read.All.)") {
		t.Errorf("403: %v", err)
	}
	if srv.Stats().Requests != 1 || k.renewed.Load() != 0 {
		t.Errorf("403: %d requests, %d renewals; want 1 and none", srv.Stats().Requests, k.renewed.Load())
	}
}

// TestAuthorizationErrors: the callback's *recovery.Error ends the fetch
// as it is (an Entra ID refusal, exit 3); any other error (an authority
// out of reach) is a critical error, retried.
func TestAuthorizationErrors(t *testing.T) {
	srv := graphtest.New(t, graphtest.Options{})
	refused := recovery.Problemf(recovery.ErrInvalidToken, "check the client secret", "Entra ID refused the client secret (AADSTS7000215)")
	src, _ := newSource(t, srv, func(c *graph.Config) {
		c.Authorization = func(context.Context) (string, error) { return "", refused }
	})
	if _, err := src.Fetch(ctxFor(t, time.Minute), recovery.Cursor{}); err != refused {
		t.Errorf("got %v, want the callback's error as it is", err)
	}

	var calls atomic.Int32
	src, logs := newSource(t, srv, func(c *graph.Config) {
		c.MaxCriticalErrors = 3
		c.Authorization = func(context.Context) (string, error) {
			if calls.Add(1) <= 2 {
				return "", errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
			}
			return "Bearer " + graphtest.DefaultToken, nil
		}
	})
	if _, err := src.Fetch(ctxFor(t, time.Minute), recovery.Cursor{}); err != nil {
		t.Fatalf("two failures then a token: %v", err)
	}
	if !strings.Contains(logs.String(), `reason="no access token"`) {
		t.Errorf("no failure to get a token logged:\n%s", logs)
	}
	calls.Store(-100)
	_, err := src.Fetch(ctxFor(t, time.Minute), recovery.Cursor{})
	if !errors.Is(err, recovery.ErrTooManyCriticalErrors) || !strings.Contains(err.Error(), "the last: no access token: dial tcp") {
		t.Errorf("an authority out of reach: %v", err)
	}
	if n := srv.Stats().Requests; n != 1 {
		t.Errorf("%d requests reached the API; want the one with a token", n)
	}

	// The authority behind a dead proxy: exit 4, as for the API.
	proxy, _ := url.Parse("http://127.0.0.1:9")
	src, _ = newSource(t, srv, func(c *graph.Config) {
		c.Proxy = proxy
		c.Authorization = func(context.Context) (string, error) {
			return "", fmt.Errorf("Entra ID at https://login.microsoftonline.com/: %w",
				&net.OpError{Op: "proxyconnect", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}})
		}
	})
	_, err = src.Fetch(ctxFor(t, time.Minute), recovery.Cursor{})
	if !errors.Is(err, recovery.ErrInvalidProxy) || !strings.HasPrefix(err.Error(), "nothing answers at the proxy http://127.0.0.1:9 (address 127.0.0.1, port 9)") {
		t.Errorf("the authority behind a dead proxy: %v", err)
	}
}

// TestTenantFromToken: without Config.TenantID, the records name the
// tenant of the access token's tid claim.
func TestTenantFromToken(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	jwt := enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." +
		enc([]byte(`{"aud":"https://graph.microsoft.com","tid":"0d2ab2c8-5d3a-4b1e-9f6c-7a8b9c0d1e2f","roles":["ThreatHunting.Read.All"]}`)) + ".c2lnbmF0dXJl"
	rows := graphtest.Generate(graphtest.GenerateOptions{Window: testWindow, Count: 3})
	srv := graphtest.New(t, graphtest.Options{Rows: rows, Tokens: []string{jwt}})
	src, logs := newSource(t, srv, func(c *graph.Config) { c.TenantID = ""; c.Authorization = bearer(jwt) })
	d := drainAll(t, src, graphtest.IDs(rows))
	var rec struct{ TenantID string }
	if err := json.Unmarshal(d.acts[0].Raw, &rec); err != nil || rec.TenantID != "0d2ab2c8-5d3a-4b1e-9f6c-7a8b9c0d1e2f" {
		t.Errorf("tenantId %q (%v), want the token's tid", rec.TenantID, err)
	}
	if showsToken(logs.String(), jwt) {
		t.Error("the token shows in the log")
	}
}
