package graph

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/entra"
)

// DefaultBaseURL is Microsoft Graph in the public cloud. Other clouds
// (graph.microsoft.us, dod-graph.microsoft.us) and tests give their own.
const DefaultBaseURL = "https://graph.microsoft.com"

// endpointPath is the action that runs an advanced hunting query, under
// the Graph base URL.
const endpointPath = "/v1.0/security/runHuntingQuery"

// Scope is what an access token for the source is requested for, with the
// application permission ThreatHunting.Read.All.
const Scope = "https://graph.microsoft.com/.default"

// Resource is what the source's Entra ID tokens are for.
var Resource = entra.Resource{
	Scope:      Scope,
	API:        "Microsoft Graph",
	Permission: "ThreatHunting.Read.All",
	Product:    "Microsoft Defender XDR",
}

// Limits of advanced hunting through Graph (microsoft-graph-docs
// security-api-overview.md, "Quotas and resource allocation";
// docs/graph-source.md).
const (
	// MaxPageSize is the most rows one result can hold.
	MaxPageSize = 100_000
	// Retention is how far back the data goes: queries "explore and
	// return data from the past 30 days".
	Retention = 30 * 24 * time.Hour
	// QueryTimeout is how long the API lets one query run before it
	// answers with an error.
	QueryTimeout = 3 * time.Minute
)

// Defaults of Config.
const (
	// DefaultRateLimit is the tenant's documented floor: "at least 45
	// calls per minute per tenant".
	DefaultRateLimit = 45
	// DefaultPageSize keeps a page of real rows (a few KiB each, more with
	// RawEventData) tens of MB, far below the result size at which the API
	// answers 400, and memory bounded.
	DefaultPageSize          = 5_000
	DefaultMaxCriticalErrors = 10
	DefaultRetryInitial      = time.Second
	DefaultRetryMax          = time.Minute
	// DefaultRequestTimeout outlasts the API's own query timeout, so that
	// a slow query ends with the API's answer rather than ours.
	DefaultRequestTimeout = QueryTimeout + time.Minute
	// MaxRetryAfter caps the wait a 429's Retry-After can ask for.
	MaxRetryAfter = 15 * time.Minute
)

// Remedies printed after the problem.
const (
	remedyBaseURL = "give Microsoft Graph's URL, https://graph.microsoft.com (or the national cloud's)"
	remedyOld     = "recover windows older than 30 days from the MCAS activities API (--source https://TENANT.REGION.portal.cloudappsecurity.com), which keeps activities for 180 days"
	remedyByDate  = "use --by date with the Graph source: advanced hunting has no exact time rows were saved"
	remedyToken   = "check the application has the Microsoft Graph application permission ThreatHunting.Read.All, with admin consent, and that the token is for " + Scope
	remedyRetry   = "run again later: the recovery resumes where it stopped; if it keeps failing, check the tenant's advanced hunting quotas"
	remedyPaging  = "give a page size from 1 to 100000"
	// remedyInternal follows an answer the API should never give.
	remedyInternal    = "re-run the same command: the recovery resumes where it stopped; if the API answers so again, report this message"
	remedyUnreachable = "check the host and port of the Graph URL"
	remedyProxy       = "check you entered the right proxy and port"
)

// Config is what New needs to build a Source. Zero values take the
// defaults above.
type Config struct {
	// BaseURL is Microsoft Graph's URL, scheme and host (default
	// https://graph.microsoft.com); a trailing /v1.0 is tolerated.
	BaseURL string
	// Authorization returns the Authorization header of a request about
	// to be sent ("Bearer <access token>", for Scope), renewing the token
	// first when it is about to expire. Required. Its error ends the
	// fetch as it is when it is a *recovery.Error (its Kind decides the
	// exit code: an Entra ID refusal is ErrInvalidToken) or the
	// context's; any other error (an unreachable authority) is retried as
	// a critical error, counting toward MaxCriticalErrors.
	Authorization func(ctx context.Context) (string, error)
	// Renew makes the next Authorization obtain a new token, after the
	// API refused the current one with 401; it reports whether it can
	// (false, or nil, for a token given by hand). The request is retried
	// once with the new token; a second 401 is ErrInvalidToken.
	Renew func() bool
	// Identity, when set (and Authorization is not), is the Entra ID
	// identity the source obtains its access tokens for (scope Scope,
	// permission ThreatHunting.Read.All), through Proxy, and renews.
	Identity *entra.Identity
	// TenantID is the tenant the rows belong to, the streaming record's
	// "tenantId" (rows do not carry it). Empty: the "tid" claim of the
	// access token Authorization gives.
	TenantID string
	// Proxy is the HTTP(S) proxy for the API, already checked by the
	// command; nil: the HTTPS_PROXY / NO_PROXY environment.
	Proxy *url.URL
	// TLSConfig overrides the TLS settings of the API connection (tests
	// trust the emulator's certificate with it); nil: system roots.
	TLSConfig *tls.Config
	// RateLimit is the most API requests per minute, for every request of
	// this Source and of every scope it reads (retries included). Default
	// 45, the tenant's documented floor.
	RateLimit int
	// PageSize is the most rows a query asks for: 1 to MaxPageSize,
	// default DefaultPageSize. A result the API finds too large halves it
	// for the pages that follow, and they grow back as answers succeed.
	PageSize int
	// MaxCriticalErrors is how many consecutive requests may fail (5xx,
	// timeout, query stopped by the API, network error, malformed answer)
	// before Fetch gives up with ErrTooManyCriticalErrors. Default 10.
	MaxCriticalErrors int
	// Window is the recovery window, on the rows' Timestamp.
	Window recovery.Window
	// By must be recovery.ByDate: advanced hunting has no exact time a
	// row was saved (docs/graph-source.md), so ByCreated is refused.
	By recovery.TimeField
	// Where is the operator's predicate (ParseWhere); zero: every row.
	Where Predicate
	// Now is the clock of the 30-day rule; nil: time.Now.
	Now func() time.Time
	// Logger receives retry reasons and cuts; nil discards them. No
	// token reaches it.
	Logger *slog.Logger
	// Redactor hides secrets in every error and log line that shows what
	// the API sent; the source adds each access token it sends to it.
	// Nil: a Redactor of the Source's own.
	Redactor *recovery.Redactor

	// RetryInitial and RetryMax bound the exponential backoff between
	// retries (defaults 1s and 1m); tests shorten them.
	RetryInitial, RetryMax time.Duration
	// RequestTimeout bounds one request, answer included (default 4m:
	// the API stops a query after 3).
	RequestTimeout time.Duration
}

// ParseBaseURL checks a Graph base URL (--graph-url) and returns the
// runHuntingQuery endpoint under it. Any https host is accepted (national
// clouds); plain http only to a loopback address, for tests. A trailing
// /v1.0 (or the whole endpoint path) is tolerated. A URL with a user,
// query or fragment is refused: a secret pasted there would reach
// messages.
func ParseBaseURL(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		raw = DefaultBaseURL
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return nil, recovery.Problemf(recovery.ErrUsage, remedyBaseURL, "the Graph URL %q is not an https:// URL", recovery.Escape(redactURL(raw)))
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, recovery.Problemf(recovery.ErrUsage, remedyBaseURL, "the Graph URL %s has a user, query or fragment", recovery.Escape(redactURL(raw)))
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return nil, recovery.Problemf(recovery.ErrUsage, "use https:// (plain http is for a loopback test server only)",
				"the Graph URL %s would send the access token in clear text", u.Redacted())
		}
	default:
		return nil, recovery.Problemf(recovery.ErrUsage, remedyBaseURL, "the Graph URL %s: scheme %q is not https", u.Redacted(), u.Scheme)
	}
	path := strings.TrimRight(u.Path, "/")
	for _, suffix := range []string{endpointPath, "/v1.0/security", "/v1.0"} {
		if strings.HasSuffix(path, suffix) {
			path = strings.TrimSuffix(path, suffix)
			break
		}
	}
	u.Path, u.RawPath = path+endpointPath, ""
	return u, nil
}

// redactURL hides what follows a ? or # and the user information of a URL
// that may not parse.
func redactURL(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i+1] + "xxxxx"
	}
	if scheme := strings.Index(raw, "://"); scheme >= 0 {
		rest := raw[scheme+3:]
		end := strings.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
			raw = raw[:scheme+3] + "xxxxx" + rest[at:]
		}
	}
	return raw
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrTooOld marks a window that starts before advanced hunting's 30 days;
// Validate's error wraps it beside recovery.ErrUsage.
var ErrTooOld = errors.New("older than the 30 days advanced hunting keeps")

// Validate tells whether advanced hunting can still hold all of window w
// at time now: it must not start more than Retention (30 days) before
// now. A window that does is a usage error (recovery.ErrUsage, and
// ErrTooOld) naming the MCAS activities API, which keeps activities for
// 180 days, as the source that still has them.
func Validate(w recovery.Window, now time.Time) error {
	oldest := now.Add(-Retention).UnixMilli()
	if w.Start >= oldest {
		return nil
	}
	return recovery.Problemf(recovery.ErrUsage, remedyOld,
		"the window starts at %s, %s before now: %w (its data goes back to %s)",
		recovery.FormatMillis(w.Start), age(now.UnixMilli()-w.Start), ErrTooOld, recovery.FormatMillis(oldest))
}

// age writes a duration in days and hours.
func age(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	days := int(d / (24 * time.Hour))
	hours := int((d % (24 * time.Hour)) / time.Hour)
	return fmt.Sprintf("%d days %d hours", days, hours)
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// newClient is the HTTP client of the API: no redirect is followed (one
// would mean the URL is not Graph, and would drop the Authorization
// header).
func newClient(t http.RoundTripper) *http.Client {
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
