package mcas

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/entra"
)

// Scope is what an access token for the activities API is requested
// for: the application "Microsoft Cloud App Security".
const Scope = "05a65629-4c1b-48c1-a78b-804c4abdd4af/.default"

// authorizer gives the Authorization header of API requests. Its errors
// are *failure (retried or permanent, as the API's own) or the context's.
type authorizer interface {
	// authorization returns the header for a request about to be sent,
	// renewing the token first when it is about to expire.
	authorization(ctx context.Context) (string, error)
	// renew makes the next authorization obtain a new token, after the
	// API refused the current one; false when the token cannot be
	// renewed (one given by hand).
	renew() bool
	// refusedRemedy is what to do when the API refuses the token with
	// status code (401 or 403).
	refusedRemedy(code int) string
	// String describes the credential, without any secret, for the doctor.
	String() string
}

// staticToken is a token given by hand: a legacy MCAS API token, or a JWT.
type staticToken struct {
	token  recovery.Token
	header string
	kind   string
}

// newStaticToken checks the token's shape; it makes no request.
func newStaticToken(t recovery.Token) (*staticToken, error) {
	scheme, err := authorization(t)
	if err != nil {
		return nil, err
	}
	kind := "MCAS API token"
	if scheme == "Bearer" {
		kind = "access token (JWT) given by hand"
	}
	return &staticToken{token: t, header: scheme + " " + t.Reveal(), kind: kind}, nil
}

func (s *staticToken) authorization(context.Context) (string, error) { return s.header, nil }
func (s *staticToken) renew() bool                                   { return false }
func (s *staticToken) refusedRemedy(int) string                      { return remedyToken }
func (s *staticToken) String() string                                { return s.kind }

// entraAuth is the authorizer of an Entra ID identity: its tokens, with
// the token requests' failures classified as the API's own (a network
// error through networkFailure, so that a refusing proxy is an invalid
// proxy; a 5xx or 429 retried and counted).
type entraAuth struct {
	token   *entra.Token
	network func(ctx context.Context, err error, target string) error
}

func (a *entraAuth) authorization(ctx context.Context) (string, error) {
	header, err := a.token.Authorization(ctx)
	if err == nil {
		return header, nil
	}
	var (
		problem   *recovery.Error
		netErr    *entra.NetworkError
		retryable *entra.RetryableError
	)
	switch {
	case errors.As(err, &problem):
		return "", &failure{permanent: err}
	case errors.As(err, &netErr):
		err := a.network(ctx, netErr.Err, netErr.Where)
		var f *failure
		if errors.As(err, &f) && f.permanent == nil {
			f.reason = "token request, " + f.reason // not the API's failure
		}
		return "", err
	case errors.As(err, &retryable):
		switch code := retryable.Status; {
		case code == 0:
			return "", &failure{reason: "token request failed", cause: err}
		case code == http.StatusTooManyRequests:
			return "", &failure{reason: "token request, throttled (429)", throttled: true, retryAfter: retryable.RetryAfter, cause: err}
		default:
			return "", &failure{reason: "token request, HTTP " + strconv.Itoa(code), cause: err}
		}
	}
	return "", err // the context's
}

func (a *entraAuth) renew() bool                   { return a.token.Renew() }
func (a *entraAuth) refusedRemedy(code int) string { return a.token.RefusedRemedy(code) }
func (a *entraAuth) String() string                { return a.token.String() }

// validFor obtains a token if none is held and tells how long it has left.
func (a *entraAuth) validFor(ctx context.Context) (time.Duration, error) {
	if _, err := a.authorization(ctx); err != nil {
		return 0, err
	}
	return a.token.ValidFor(ctx)
}

// Resource is what the API's Entra ID tokens are for.
var Resource = entra.Resource{
	Scope:      Scope,
	API:        "Microsoft Cloud App Security",
	Permission: "Investigation.Read",
	Product:    "Microsoft Defender for Cloud Apps",
}
