package mcas

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 14, 8, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"":      0,
		"0":     0,
		"7":     7 * time.Second,
		"-3":    0,
		"86400": MaxRetryAfter,
		"soon":  0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	} {
		if got := retryAfter(h, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", h, got, want)
		}
	}
}

func TestAuthorizationScheme(t *testing.T) {
	legacy := strings.Repeat("aZ09-_=.+", 8)
	jwt := "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.c2ln"
	for token, want := range map[string]string{
		legacy:              "Token",
		" " + legacy + "\n": "Token",
		jwt:                 "Bearer",
		// Three dotted parts that are not a JWT header: a legacy token.
		strings.Repeat("a", 30) + "." + strings.Repeat("b", 30) + "." + strings.Repeat("c", 30): "Token",
	} {
		got, err := authorization(recovery.NewToken(token))
		if err != nil || got != want {
			t.Errorf("%.12q…: %q, %v; want %q", token, got, err, want)
		}
	}
	for _, bad := range []string{"", legacy[:63], legacy[:40] + " " + legacy[:40], legacy + "/", "a.b.c"} {
		if _, err := authorization(recovery.NewToken(bad)); !errors.Is(err, recovery.ErrInvalidToken) {
			t.Errorf("%q: %v, want ErrInvalidToken", bad, err)
		}
	}
}

func TestUnresolvableAPIHostIsAWrongAddress(t *testing.T) {
	// What the transport returns when the host does not resolve; made up
	// here, since a test may do no DNS.
	notFound := &url.Error{Op: "Post", URL: "https://contoso.example/api/v1/activities/",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "contoso.example", IsNotFound: true}}}
	src, err := New(Config{BaseURL: "https://contoso.example", Token: recovery.NewToken(strings.Repeat("t", 64)), Window: recovery.Window{Start: 1, End: 2}})
	if err != nil {
		t.Fatal(err)
	}
	var f *failure
	if !errors.As(src.transportFailure(t.Context(), notFound), &f) || !errors.Is(f.permanent, recovery.ErrUsage) ||
		f.permanent.Error() != "the API host contoso.example does not resolve (no such host); "+remedyUnreachable {
		t.Fatalf("before any answer: %#v, want a permanent usage error naming the host", f)
	}
	// Once the API has answered, the same error is an outage: retried.
	src.answered.Store(true)
	if !errors.As(src.transportFailure(t.Context(), notFound), &f) || f.permanent != nil || f.reason != "network error" {
		t.Fatalf("after an answer: %#v, want a critical network error", f)
	}
}

func TestPlainTextTLSHandshakeBeforeAnyAnswerIsAWrongScheme(t *testing.T) {
	// What the client returns for a TLS handshake answered by a server
	// that is not an HTTP one (an HTTP one is http.ErrSchemeMismatch).
	plain := &url.Error{Op: "Post", URL: "https://contoso.example/api/v1/activities/", Err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}}
	src, err := New(Config{BaseURL: "https://contoso.example", Token: recovery.NewToken(strings.Repeat("t", 64)), Window: recovery.Window{Start: 1, End: 2}})
	if err != nil {
		t.Fatal(err)
	}
	var f *failure
	if !errors.As(src.transportFailure(t.Context(), plain), &f) || !errors.Is(f.permanent, recovery.ErrUsage) ||
		f.permanent.Error() != "https://contoso.example/api/v1/activities/ does not answer over TLS: the server at contoso.example answered the TLS handshake in plain text (tls: first record does not look like a TLS handshake); "+remedyScheme {
		t.Fatalf("before any answer: %#v, want a permanent usage error naming the scheme", f)
	}
	// Once the API has answered, something between is broken: retried.
	src.answered.Store(true)
	if !errors.As(src.transportFailure(t.Context(), plain), &f) || f.permanent != nil || f.reason != "network error" {
		t.Fatalf("after an answer: %#v, want a critical network error", f)
	}
}
