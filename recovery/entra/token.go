package entra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	azruntime "github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"siem-recovery/recovery"
)

// Resource is the API tokens are obtained for: its scope, and what to tell
// the operator when the application lacks its permission.
type Resource struct {
	// Scope is what a token is requested for: "<app id URI>/.default".
	Scope string
	// API is the API's name in the Entra admin center (API permissions),
	// e.g. "Microsoft Cloud App Security", "Microsoft Graph".
	API string
	// Permission is the application permission the source needs, e.g.
	// "Investigation.Read", "ThreatHunting.Read.All".
	Permission string
	// Product is what the tenant must have for the API to exist, e.g.
	// "Microsoft Defender for Cloud Apps".
	Product string
}

// NetworkError is a token request that got no answer: the authority (or
// the managed identity endpoint, or the proxy to it) is unreachable. The
// caller classifies Err as it does its own API's network errors (a proxy
// that refuses, a certificate not trusted, a timeout).
type NetworkError struct {
	Where string // "Entra ID at https://…/", "the managed identity endpoint"
	Err   error
}

func (e *NetworkError) Error() string { return e.Where + ": " + e.Err.Error() }
func (e *NetworkError) Unwrap() error { return e.Err }

// RetryableError is a token request a retry may mend: the authority
// answered 429, 408 or 5xx (Status), or the SDK failed in a way it does not
// explain (Status 0). RetryAfter is the wait a 429 asked for.
type RetryableError struct {
	Where      string
	Status     int
	RetryAfter time.Duration
	Detail     string
}

func (e *RetryableError) Error() string {
	if e.Status == 0 {
		return e.Where + ": " + e.Detail
	}
	return fmt.Sprintf("%s answered %d", e.Where, e.Status)
}

// Token obtains access tokens for an Identity and a Resource, keeps the
// current one and renews it before it expires. Its methods may be called
// from several goroutines (scan lanes).
type Token struct {
	id        *Identity
	resource  Resource
	options   azcore.ClientOptions
	transport *watchedTransport
	timeout   time.Duration
	log       *slog.Logger
	redactor  *recovery.Redactor // told each secret and token as it is known

	mu       sync.Mutex
	cred     azcore.TokenCredential
	token    azcore.AccessToken
	lifetime time.Duration // of the current token, when it was obtained
	stale    bool          // the API refused the current token
}

// renewMargin is how long before its expiry a token is replaced: MSAL's
// own cache hands out a cached token only while it has more than five
// minutes left, so asking within that margin always brings a new one.
// Short-lived tokens (tests) are renewed at half their life.
func renewMargin(lifetime time.Duration) time.Duration { return min(5*time.Minute, lifetime/2) }

// NewToken returns the Token of id for res. Its requests go through client
// (the source's proxy, trusted roots and redirect policy; for a managed
// identity, a client without proxy), each bounded by timeout. The
// identity's secrets, and every token obtained, are added to redactor. It
// makes no request.
func NewToken(id *Identity, res Resource, client *http.Client, timeout time.Duration, log *slog.Logger, redactor *recovery.Redactor) *Token {
	t := &watchedTransport{client: client}
	for _, secret := range id.hidden {
		redactor.Add(secret)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Token{
		id:        id,
		resource:  res,
		transport: t,
		timeout:   timeout,
		log:       log,
		redactor:  redactor,
		options: azcore.ClientOptions{
			Transport: t,
			// One retry policy: the source's, which counts failures toward
			// its critical errors. The SDK would retry on its own otherwise.
			Retry: policy.RetryOptions{MaxRetries: -1},
			Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: id.Authority},
		},
	}
}

// String describes the identity, without any secret.
func (t *Token) String() string { return t.id.String() }

// Renew makes the next Authorization obtain a new token, after the API
// refused the current one. It always can: true.
func (t *Token) Renew() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stale = true
	return true
}

// RefusedRemedy is what to do when the API refuses the token with status
// code (401 or 403).
func (t *Token) RefusedRemedy(code int) string {
	grant := fmt.Sprintf("the API permission %s of %q", t.resource.Permission, t.resource.API)
	if code == http.StatusForbidden {
		return "grant the application " + grant + ", with admin consent (docs/runbook.md)"
	}
	return "check that AZURE_TENANT_ID is the tenant of --source, and that the application has " + grant + " with admin consent"
}

// Authorization returns the Authorization header for a request about to
// be sent ("Bearer …"), obtaining a token first when none is held, the
// current one expires soon, or the API refused it. Its errors are a
// *recovery.Error (ErrInvalidToken: Entra ID refused the application, with
// the AADSTS code and its remedy), a *NetworkError, a *RetryableError, or
// the context's.
func (t *Token) Authorization(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token.Token == "" || t.stale || time.Until(t.token.ExpiresOn) <= renewMargin(t.lifetime) {
		if err := t.obtain(ctx); err != nil {
			return "", err
		}
	}
	return "Bearer " + t.token.Token, nil
}

// ValidFor obtains a token if none is held and tells how long the current
// one has left.
func (t *Token) ValidFor(ctx context.Context) (time.Duration, error) {
	if _, err := t.Authorization(ctx); err != nil {
		return 0, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return time.Until(t.token.ExpiresOn), nil
}

// obtain gets a new token; t.mu is held.
func (t *Token) obtain(ctx context.Context) error {
	opts := policy.TokenRequestOptions{Scopes: []string{t.resource.Scope}}
	if t.cred == nil || t.stale && !t.id.managed {
		// A new credential has an empty cache: the token it obtains is
		// new even if the refused one had not expired.
		cred, err := t.id.credential(t.options)
		if err != nil {
			return recovery.Problemf(recovery.ErrInvalidToken, remedyEnv, "the %s cannot be used: %v", t.id.Kind, FirstLine(err.Error(), t.redactor))
		}
		t.cred = cred
	} else if t.stale {
		// The managed identity's cache is shared by every credential of
		// the process; claims make it ask the machine's endpoint again.
		opts.Claims = `{"access_token":{"nbf":{"essential":true,"value":"` + strconv.FormatInt(time.Now().Unix(), 10) + `"}}}`
	}
	rctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	t.transport.reset()
	start := time.Now()
	tok, err := t.cred.GetToken(rctx, opts)
	if err != nil {
		return t.failure(ctx, err)
	}
	renewal := t.token.Token != ""
	t.redactor.Add(tok.Token)
	t.token, t.lifetime, t.stale = tok, tok.ExpiresOn.Sub(start), false
	attrs := []any{"identity", t.id.Kind, "valid_for", t.lifetime.Round(time.Second)}
	if renewal {
		t.log.Debug("renewed the access token", attrs...)
	} else {
		t.log.Info("obtained an access token", attrs...)
	}
	return nil
}

// where names the token endpoint in messages.
func (t *Token) where() string {
	if t.id.managed {
		return "the managed identity endpoint"
	}
	return "Entra ID at " + t.id.Authority
}

// failure classifies an error of the SDK; t.mu is held. A refusal by
// Entra ID (an AADSTS code) is permanent; an unreachable authority, a 5xx
// and a timeout may be mended by a retry.
func (t *Token) failure(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("obtain an access token: %w", ctx.Err())
	}
	where := t.where()
	var refused *azidentity.AuthenticationFailedError
	if errors.As(err, &refused) && refused.RawResponse != nil {
		return t.answered(refused.RawResponse, where)
	}
	// The SDK reports a network error as text only: the transport kept it.
	if netErr := t.transport.last(); netErr != nil {
		return &NetworkError{Where: where, Err: netErr}
	}
	msg := FirstLine(err.Error(), t.redactor)
	var final interface{ NonRetriable() }
	if t.id.managed && !errors.As(err, &refused) && errors.As(err, &final) {
		return recovery.Problemf(recovery.ErrInvalidToken, "run on an Azure resource with a managed identity, or use --auth entra",
			"no managed identity is available here: %s", msg)
	}
	return &RetryableError{Where: where, Detail: msg}
}

// entraError is the body of an error answer of Entra ID's endpoints.
type entraError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Codes       []int  `json:"error_codes"`
	Correlation string `json:"correlation_id"`
}

// answered classifies an error answer of the authority; t.mu is held.
func (t *Token) answered(resp *http.Response, where string) error {
	code := resp.StatusCode
	body, _ := azruntime.Payload(resp)
	var ans entraError
	_ = json.Unmarshal(body, &ans)
	if code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500 {
		return &RetryableError{Where: where, Status: code, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	desc := FirstLine(ans.Description, t.redactor)
	if len(ans.Codes) > 0 {
		meaning, remedy := t.aadsts(ans.Codes[0])
		if meaning == "" {
			meaning = desc
		}
		detail := fmt.Sprintf("%s refused a token for %s: AADSTS%d, %s", where, t.subject(), ans.Codes[0], meaning)
		if ans.Correlation != "" {
			detail += " (correlation id " + ans.Correlation + ")"
		}
		return recovery.Problemf(recovery.ErrInvalidToken, remedy, "%s", detail)
	}
	if desc == "" {
		desc = FirstLine(string(body), t.redactor)
	}
	remedy := "check AZURE_AUTHORITY_HOST names the Entra ID host of the tenant's cloud"
	if t.id.managed {
		remedy = "check AZURE_CLIENT_ID names a user-assigned identity attached to this machine, or leave it unset for the system-assigned one"
	}
	return recovery.Problemf(recovery.ErrInvalidToken, remedy, "%s answered %d to the token request for %s: %s", where, code, t.subject(), orNone(desc))
}

// retryAfter reads a Retry-After header: seconds or an HTTP date; an
// absent or unreadable one is 0, and the wait is capped at 15 minutes.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	var d time.Duration
	if secs, err := strconv.Atoi(h); err == nil {
		d = time.Duration(secs) * time.Second
	} else if at, err := http.ParseTime(h); err == nil {
		d = at.Sub(now)
	}
	return min(max(d, 0), 15*time.Minute)
}

func (t *Token) subject() string {
	if t.id.managed {
		return t.id.String()
	}
	return fmt.Sprintf("application %s in tenant %s", t.id.ClientID, t.id.TenantID)
}

func orNone(s string) string {
	if s == "" {
		return "(no explanation)"
	}
	return s
}

// aadsts explains the Entra ID error codes an operator meets when setting
// up the application: what it means, and the remedy.
func (t *Token) aadsts(code int) (meaning, remedy string) {
	const registration = "Entra admin center > App registrations"
	switch code {
	case 7000215:
		return "the client secret is wrong", "copy the secret's Value, not its Secret ID, into AZURE_CLIENT_SECRET, or create a new secret (" + registration + " > Certificates & secrets)"
	case 7000222:
		return "the client secret has expired", "create a new client secret (" + registration + " > Certificates & secrets) and put its Value in AZURE_CLIENT_SECRET"
	case 700016:
		return "no application with this client id in the tenant", "check AZURE_CLIENT_ID is the application (client) ID and AZURE_TENANT_ID the directory (tenant) ID it is registered in"
	case 90002:
		return "no such tenant", "check AZURE_TENANT_ID is the directory (tenant) ID, and AZURE_AUTHORITY_HOST the tenant's cloud"
	case 900023:
		return "the tenant id is not a valid tenant", "set AZURE_TENANT_ID to the directory (tenant) ID, a GUID"
	case 65001:
		return "an administrator has not consented to the application's API permission",
			fmt.Sprintf("grant admin consent for %s of %q (%s > API permissions)", t.resource.Permission, t.resource.API, registration)
	case 500011:
		return fmt.Sprintf("the tenant has no %s service principal", t.resource.API),
			fmt.Sprintf("check the tenant has %s and AZURE_TENANT_ID is that tenant", t.resource.Product)
	case 700027:
		return "the client assertion's signature is not valid: the certificate is not registered for the application, or has expired", "upload the certificate's public part to the application (" + registration + " > Certificates & secrets), or a new one if it expired"
	case 700024:
		return "the client assertion is not within its valid time range", "check this machine's clock"
	case 70021, 700213, 700211, 700212:
		return "no federated credential of the application matches the service account token", "add a federated credential for the service account (issuer and subject system:serviceaccount:NAMESPACE:NAME) to the application (" + registration + " > Certificates & secrets > Federated credentials)"
	case 7000112, 7000113:
		return "the application is disabled", "enable the application's service principal (Enterprise applications > Properties)"
	case 7000229:
		return "the application has no service principal in the tenant", "create it by granting admin consent, or register the application in this tenant"
	case 53003:
		return "a Conditional Access policy blocked the token", "exclude the application from the policy, or allow this network"
	}
	return "", "look the code up at https://login.microsoftonline.com/error, then fix the application or the AZURE_ variables"
}

// jwtLike matches what may be a token (access token, assertion) in text
// an SDK produced.
var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*`)

// FirstLine is the first line of a message from the SDK or the authority,
// cut short, without the secrets r knows and without anything shaped like
// a token (the SDK's messages can carry a whole answer, access token
// included), escaped.
func FirstLine(msg string, r *recovery.Redactor) string {
	msg, _, _ = strings.Cut(strings.TrimSpace(msg), "\n")
	msg = jwtLike.ReplaceAllString(r.Redact(msg), "[REDACTED]")
	msg = strings.TrimSpace(msg)
	if len(msg) > 300 {
		n := 300
		for n > 0 && !utf8.RuneStart(msg[n]) {
			n--
		}
		msg = msg[:n] + "…"
	}
	return recovery.Escape(msg)
}

// watchedTransport sends the SDK's requests through the source's HTTP
// client (its proxy, its trusted roots, its redirect policy) and keeps the
// last network error, which the SDK passes on as text only.
type watchedTransport struct {
	client *http.Client
	mu     sync.Mutex
	err    error
}

func (t *watchedTransport) Do(r *http.Request) (*http.Response, error) {
	resp, err := t.client.Do(r)
	t.mu.Lock()
	t.err = err
	t.mu.Unlock()
	return resp, err
}

func (t *watchedTransport) reset() { t.mu.Lock(); t.err = nil; t.mu.Unlock() }

func (t *watchedTransport) last() error { t.mu.Lock(); defer t.mu.Unlock(); return t.err }
