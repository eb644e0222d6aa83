package mcas

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"siem-recovery/recovery"
)

// maxAnswer bounds the body of one answer; 5000 activities of a few
// kilobytes each fit many times over.
const maxAnswer = 256 << 20

// errBadRequest marks a 400 answer: the API refused the request itself,
// which no retry mends.
var errBadRequest = errors.New("400 Bad Request")

// answer is the body of a 200 answer of the activities API.
type answer struct {
	Data             []json.RawMessage `json:"data"`
	HasNext          *bool             `json:"hasNext"`
	NextQueryFilters json.RawMessage   `json:"nextQueryFilters"`
	Total            *int64            `json:"total"`

	activities []recovery.Activity // Data, parsed
}

// failure is why one request failed. A failure with permanent set ends
// the fetch with that error; the others are retried: throttled ones
// without limit, the rest (critical) until MaxCriticalErrors in a row.
type failure struct {
	reason     string // short and stable, logged once per streak: "HTTP 503", "timeout", …
	cause      error
	throttled  bool
	retryAfter time.Duration
	permanent  error
	// unauthorized: the API answered 401, which a renewed token may mend.
	unauthorized bool
}

func (f *failure) Error() string {
	if f.permanent != nil {
		return f.permanent.Error()
	}
	return f.reason + ": " + f.cause.Error()
}

func (f *failure) Unwrap() error {
	if f.permanent != nil {
		return f.permanent
	}
	return f.cause
}

func asFailure(err error, f **failure) bool { return errors.As(err, f) }

func isRefused(err error) bool { return errors.Is(err, errBadRequest) }

// post sends one API request, retrying under the retry policy, and
// returns the answer and how many requests it took.
func (s *Source) post(ctx context.Context, body []byte, scan bool) (*answer, int, error) {
	b := s.newBackOff()
	logged := map[string]bool{} // reasons logged in this streak of failures
	requests := 0
	renewed := false
	for {
		if err := s.wait(ctx); err != nil {
			return nil, requests, err
		}
		header, err := s.auth.authorization(ctx)
		var ans *answer
		if err == nil {
			requests++
			ans, err = s.once(ctx, header, body, scan)
		}
		if err == nil {
			s.mu.Lock()
			s.critical = 0
			s.mu.Unlock()
			if len(logged) > 0 {
				s.log.Info("the API answered again", "endpoint", s.Endpoint(), "failed_requests", requests-1)
			}
			return ans, requests, nil
		}
		var f *failure
		if !asFailure(err, &f) {
			return nil, requests, err
		}
		if f.unauthorized && !renewed && s.auth.renew() {
			// A token can be revoked, or refused by a clock ahead of
			// ours: one new token, one more try; a second 401 is final.
			renewed = true
			s.log.Warn("the API refused the access token; retrying once with a new one", "endpoint", s.Endpoint())
			continue
		}
		if f.permanent != nil {
			return nil, requests, f.permanent
		}
		wait := b.NextBackOff()
		attrs := []any{"endpoint", s.Endpoint(), "reason", f.reason, "error", f.cause.Error()}
		if f.throttled {
			wait = max(wait, f.retryAfter)
			attrs = append(attrs, "retry_after", f.retryAfter)
		} else {
			s.mu.Lock()
			s.critical++
			n := s.critical
			s.mu.Unlock()
			if n >= s.maxCritical {
				return nil, requests, recovery.Problemf(recovery.ErrTooManyCriticalErrors, remedyRetry,
					"%d consecutive API requests to %s failed; the last: %s: %w", n, s.Endpoint(), f.reason, f.cause)
			}
			attrs = append(attrs, "critical_errors", n, "max_critical_errors", s.maxCritical)
		}
		attrs = append(attrs, "retry_in", wait.Round(time.Millisecond))
		if !logged[f.reason] {
			logged[f.reason] = true
			s.log.Warn("API request failed; retrying", attrs...)
		} else {
			s.log.Debug("API request failed again; retrying", attrs...)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, requests, fmt.Errorf("retry %s: %w", s.Endpoint(), err)
		}
	}
}

// wait takes a request from the rate limit, or returns the context's
// error if it ends first.
func (s *Source) wait(ctx context.Context) error {
	r := s.limiter.Reserve()
	if err := sleep(ctx, r.Delay()); err != nil {
		r.Cancel()
		return fmt.Errorf("wait for the API rate limit: %w", err)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// once sends one request. Its errors are *failure, or the context's error
// when ctx ended.
func (s *Source) once(ctx context.Context, authorization string, body []byte, scan bool) (*answer, error) {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.Endpoint(), bytes.NewReader(body))
	if err != nil {
		return nil, &failure{permanent: fmt.Errorf("build a request for %s: %w", s.Endpoint(), err)}
	}
	req.Header.Set("Authorization", authorization)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "siem-recovery")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, s.transportFailure(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, s.transportFailure(ctx, fmt.Errorf("read the answer: %w", err))
	}

	code := resp.StatusCode
	switch {
	case code == http.StatusOK:
		return s.decode(data, scan)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return nil, &failure{permanent: recovery.Problemf(recovery.ErrInvalidToken, s.auth.refusedRemedy(code),
			"the API answered %d for %s", code, s.Endpoint()), unauthorized: code == http.StatusUnauthorized}
	case code == http.StatusTooManyRequests:
		return nil, &failure{reason: "throttled (429)", throttled: true,
			retryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()),
			cause:      fmt.Errorf("the API answered 429 %s", s.message(data))}
	case code == http.StatusBadRequest:
		return nil, &failure{permanent: recovery.Problemf(recovery.ErrUsage, remedyFilter,
			"the API answered %w for %s: %s", errBadRequest, s.Endpoint(), s.message(data))}
	case code >= 300 && code < 400:
		return nil, &failure{permanent: recovery.Problemf(recovery.ErrUsage, remedySource,
			"the API answered %d for %s, a redirect to %q: that is not the activities API", code, s.Endpoint(), resp.Header.Get("Location"))}
	case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
		return nil, &failure{permanent: recovery.Problemf(recovery.ErrUsage, remedySource,
			"the API answered %d for %s: that is not the activities API", code, s.Endpoint())}
	case code >= 500 || code == http.StatusRequestTimeout:
		return nil, &failure{reason: "HTTP " + strconv.Itoa(code),
			cause: fmt.Errorf("the API answered %d %s", code, s.message(data))}
	}
	return nil, &failure{permanent: fmt.Errorf("the API answered %d for %s: %s", code, s.Endpoint(), s.message(data))}
}

// decode reads a 200 answer. Anything that is not a complete answer is a
// critical error: the same request may well succeed again.
func (s *Source) decode(data []byte, scan bool) (*answer, error) {
	malformed := func(format string, args ...any) error {
		return &failure{reason: "malformed answer", cause: fmt.Errorf(format, args...)}
	}
	if len(data) > maxAnswer {
		return nil, malformed("the answer is larger than %d MiB", maxAnswer>>20)
	}
	var ans answer
	if err := json.Unmarshal(data, &ans); err != nil {
		return nil, malformed("the answer is not the expected JSON (%d bytes): %w", len(data), err)
	}
	if ans.Data == nil {
		return nil, malformed(`the answer has no "data" list`)
	}
	hasNext := ans.HasNext != nil && *ans.HasNext
	if scan && hasNext {
		if f := bytes.TrimSpace(ans.NextQueryFilters); len(f) == 0 || f[0] != '{' {
			return nil, malformed(`the answer has "hasNext": true but no "nextQueryFilters" object`)
		}
	}
	ans.activities = make([]recovery.Activity, 0, len(ans.Data))
	var d recovery.Decoder
	for i, raw := range ans.Data {
		a, err := d.Decode(raw)
		if err != nil {
			return nil, malformed("activity %d of the answer: %w", i, err)
		}
		ans.activities = append(ans.activities, a)
	}
	ans.Data = nil // the activities hold their own copy
	return &ans, nil
}

// transportFailure classifies an error of the HTTP client.
func (s *Source) transportFailure(ctx context.Context, err error) error {
	return s.networkFailure(ctx, err, s.Endpoint())
}

// networkFailure classifies an error of the HTTP client in a request to
// target (the API, or the Entra ID authority).
func (s *Source) networkFailure(ctx context.Context, err error, target string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("request %s: %w", target, ctx.Err())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &failure{reason: "timeout", cause: fmt.Errorf("no complete answer from %s within %s", target, s.timeout)}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "proxyconnect" {
		shown, host, port := s.proxyAddress()
		var dns *net.DNSError
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return &failure{permanent: recovery.Problemf(recovery.ErrInvalidProxy, remedyProxy,
				"nothing answers at the proxy %s (address %s, port %s): %w", shown, host, port, op.Err)}
		case errors.As(err, &dns) && dns.IsNotFound:
			return &failure{permanent: recovery.Problemf(recovery.ErrInvalidProxy, remedyProxy,
				"the proxy %s does not resolve (address %s, port %s): %w", shown, host, port, op.Err)}
		}
		return &failure{reason: "proxy error", cause: err}
	}
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &verify) {
		return &failure{permanent: fmt.Errorf("the TLS certificate of %s is not trusted: %w", target, err)}
	}
	return &failure{reason: "network error", cause: err}
}

// proxyAddress describes the proxy in use (--proxy, or the
// environment's) as shown, host and port.
func (s *Source) proxyAddress() (shown, host, port string) {
	u := s.proxy
	if u == nil {
		req, _ := http.NewRequest(http.MethodPost, s.Endpoint(), nil)
		if env, err := http.ProxyFromEnvironment(req); err == nil && env != nil {
			u = env
		}
	}
	if u == nil {
		return "(unknown)", "?", "?"
	}
	return RedactURL(u.String()), u.Hostname(), u.Port()
}

// message is the API's explanation in an error answer, short and without
// the token.
func (s *Source) message(data []byte) string {
	var obj map[string]any
	msg := ""
	if json.Unmarshal(data, &obj) == nil {
		for _, k := range []string{"detail", "error", "message", "errorMessage"} {
			if v, ok := obj[k]; ok {
				msg = fmt.Sprint(v)
				break
			}
		}
	}
	if msg == "" {
		msg = strings.Join(strings.Fields(string(data)), " ")
	}
	for _, secret := range s.auth.secrets() {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "[REDACTED]")
		}
	}
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" {
		return "(no explanation)"
	}
	return "(" + msg + ")"
}

// retryAfter reads a Retry-After header: seconds or an HTTP date. The
// wait is capped at MaxRetryAfter; an absent or unreadable header is 0.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(h); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}
