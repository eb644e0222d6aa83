package mcas

import (
	"errors"
	"net/http"
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
