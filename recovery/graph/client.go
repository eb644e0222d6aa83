package graph

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
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
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"siem-recovery/recovery"
	"siem-recovery/recovery/entra"
)

// Bounds of what is read of one answer. The rows are read one at a time
// and counted, so a page never holds more than the limit asked for;
// maxAnswer bounds the bytes besides: the API refuses results over 124 MB
// (defender-docs run-advanced-query-api.md), so a larger answer is not
// one. An error answer needs only its first words.
const (
	maxAnswer      = 128 << 20
	maxErrorAnswer = 64 << 10
)

// reasonMalformed is the failure reason of a 200 answer that is not a
// complete, consistent answer to its query.
const reasonMalformed = "malformed answer"

// call is one query and what a valid answer to it must respect.
type call struct {
	query    string
	timespan string
	limit    int // the most rows the answer may hold
	// page is the page query asked, whose rows the answer must hold in
	// place; nil for a count.
	page *query
}

// request is the body of runHuntingQuery.
type request struct {
	Query    string `json:"Query"`
	Timespan string `json:"Timespan,omitempty"`
}

// answer is a 200 answer: huntingQueryResults.
type answer struct {
	schema map[string]string // column name → type ("DateTime", "String", "Object", …)
	rows   [][]byte          // "results", as sent (nil once made activities)
	// For a page: its rows as activities, and the last one's place.
	acts   []recovery.Activity
	lastAt Ticks
	lastID string
}

// cut says how a query the API found too heavy is made lighter.
type cut int

const (
	noCut   cut = iota
	cutSpan     // the query ran too long or used too much: half the time span
	cutPage     // the result was too large: half the rows
)

// failure is why one request failed. A failure with permanent set ends the
// fetch with that error; the others are retried: throttled ones without
// limit, the rest (critical) until MaxCriticalErrors in a row. A critical
// failure with a cut is returned to the pager, which retries a lighter
// query.
type failure struct {
	reason     string // short and stable, logged once per streak: "HTTP 503", "timeout", …
	cause      error
	throttled  bool
	retryAfter time.Duration
	permanent  error
	// unauthorized: the API answered 401, which a renewed token may mend.
	unauthorized bool
	cut          cut
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

// tooHeavy is returned by post for a query the API found too heavy, once
// counted as a critical error: the pager cuts the query and asks again.
type tooHeavy struct {
	cut cut
	f   *failure
}

func (e *tooHeavy) Error() string { return e.f.Error() }
func (e *tooHeavy) Unwrap() error { return e.f }

func malformed(format string, args ...any) *failure {
	return &failure{reason: reasonMalformed, cause: fmt.Errorf(format, args...)}
}

// post sends one query, retrying under the retry policy, and returns the
// answer and how many requests it took. A query the API found too heavy
// is not retried as it is: post returns *tooHeavy.
func (s *Source) post(ctx context.Context, c call) (*answer, int, error) {
	body, err := json.Marshal(request{Query: c.query, Timespan: c.timespan})
	if err != nil {
		return nil, 0, err
	}
	b := s.newBackOff()
	logged := map[string]bool{} // reasons logged in this streak of failures
	requests := 0
	renewed := false
	lastMalformed := ""
	for {
		if err := s.budget.wait(ctx); err != nil {
			return nil, requests, err
		}
		header, err := s.authorization(ctx)
		var ans *answer
		if err == nil {
			requests++
			ans, err = s.once(ctx, header, body, c)
		}
		if err == nil {
			s.budget.answered()
			if len(logged) > 0 {
				s.log.Info("the API answered again", "endpoint", s.Endpoint(), "failed_requests", requests-1)
			}
			return ans, requests, nil
		}
		var f *failure
		if !errors.As(err, &f) {
			return nil, requests, err
		}
		if f.unauthorized && !renewed && s.renew != nil && s.renew() {
			// A token can be revoked, or refused by a clock ahead of
			// ours: one new token, one more try; a second 401 is final.
			renewed = true
			s.log.Warn("the API refused the access token; retrying once with a new one", "endpoint", s.Endpoint())
			continue
		}
		if f.permanent != nil {
			return nil, requests, f.permanent
		}
		attrs := []any{"endpoint", s.Endpoint(), "reason", f.reason, "error", f.cause.Error()}
		wait := b.NextBackOff()
		if f.throttled {
			wait = max(wait, f.retryAfter)
			attrs = append(attrs, "retry_after", f.retryAfter)
		} else {
			n, exhausted := s.budget.failed()
			if exhausted {
				return nil, requests, recovery.Problemf(recovery.ErrTooManyCriticalErrors, remedyRetry,
					"%d consecutive API requests to %s failed; the last: %s: %w", n, s.Endpoint(), f.reason, f.cause)
			}
			// The same query answered twice with the same malformed answer
			// will be answered so every time.
			if f.reason == reasonMalformed && f.cause.Error() == lastMalformed {
				return nil, requests, recovery.Problemf(recovery.ErrTooManyCriticalErrors, remedyRetry,
					"%d consecutive API requests to %s failed; the last two got the same malformed answer, which retrying does not mend: %w", n, s.Endpoint(), f.cause)
			}
			if f.cut != noCut {
				return nil, requests, &tooHeavy{cut: f.cut, f: f}
			}
			attrs = append(attrs, "critical_errors", n, "max_critical_errors", s.budget.maxCritical)
		}
		lastMalformed = ""
		if f.reason == reasonMalformed {
			lastMalformed = f.cause.Error()
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

// authorization asks Config.Authorization for the header, learns the
// token (the Redactor hides it from then on; its tid claim names the
// tenant when Config.TenantID does not) and classifies its error.
func (s *Source) authorization(ctx context.Context) (string, error) {
	header, err := s.auth(ctx)
	if err != nil {
		var (
			problem   *recovery.Error
			op        *net.OpError
			netErr    *entra.NetworkError
			retryable *entra.RetryableError
		)
		switch {
		case errors.As(err, &problem) || ctx.Err() != nil:
			return "", err
		case errors.As(err, &netErr):
			// Entra ID out of reach: a dead proxy or a certificate not
			// trusted are what they are for the API.
			f := s.networkFailure(ctx, netErr.Err, netErr.Where)
			if f, ok := f.(*failure); ok && f.permanent == nil {
				f.reason, f.cut = "token request, "+f.reason, noCut
			}
			return "", f
		case errors.As(err, &retryable) && retryable.Status == http.StatusTooManyRequests:
			return "", &failure{reason: "token request, throttled (429)", throttled: true, retryAfter: retryable.RetryAfter, cause: err}
		case errors.As(err, &op), errors.Is(err, context.DeadlineExceeded):
			// The authority out of reach: a dead proxy or a certificate
			// not trusted are what they are for the API.
			f := s.networkFailure(ctx, err, "the token's authority")
			if f, ok := f.(*failure); ok && f.permanent == nil {
				f.reason, f.cut = "no access token", noCut
			}
			return "", f
		}
		return "", &failure{reason: "no access token", cause: s.redactor.ShowError(err)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if header != s.lastHeader {
		s.lastHeader = header
		_, token, _ := strings.Cut(header, " ")
		s.redactor.Add(token)
		if s.tenant == "" {
			s.tenant = tokenTenant(token)
		}
	}
	return header, nil
}

// tokenTenant is the tid claim of an access token (a JWT), read without
// checking the signature: it only names the tenant in the records; "" when
// the token is not a JWT or has none.
func tokenTenant(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ""
	}
	var claims struct {
		Tid string `json:"tid"`
	}
	if json.Unmarshal(payload, &claims) != nil || checkReportID(claims.Tid) != nil {
		return ""
	}
	return claims.Tid
}

// once sends one request. Its errors are *failure, or the context's error
// when ctx ended. Whatever the answer held reaches an error only through
// show: redacted and escaped.
func (s *Source) once(ctx context.Context, authorization string, body []byte, c call) (*answer, error) {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.Endpoint(), bytes.NewReader(body))
	if err != nil {
		return nil, &failure{permanent: fmt.Errorf("build a request for %s: %w", s.Endpoint(), err)}
	}
	req.Header.Set("Authorization", authorization)
	// The operator's predicate may hold any character: say the body is
	// UTF-8, as the API asks for queries with non-ANSI text.
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "siem-recovery")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, s.transportFailure(ctx, err)
	}
	defer resp.Body.Close()
	s.answered.Store(true)

	code := resp.StatusCode
	if code == http.StatusOK {
		ans, err := s.readAnswer(http.MaxBytesReader(nil, resp.Body, s.maxAnswer), c)
		if err != nil {
			return nil, s.answerFailure(ctx, err)
		}
		return ans, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorAnswer))
	if err != nil {
		return nil, s.transportFailure(ctx, fmt.Errorf("read the answer: %w", err))
	}
	return nil, s.statusFailure(resp, data)
}

// statusFailure classifies an answer other than 200.
func (s *Source) statusFailure(resp *http.Response, data []byte) *failure {
	code := resp.StatusCode
	msg := s.message(data)
	cause := fmt.Errorf("the API answered %d %s", code, msg)
	switch {
	case code == http.StatusTooManyRequests:
		return &failure{reason: "throttled (429)", throttled: true,
			retryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()), cause: cause}
	case code == http.StatusGatewayTimeout || code == http.StatusRequestTimeout:
		// How the API ends a query that ran past its 3 minutes.
		return &failure{reason: "query timeout (" + strconv.Itoa(code) + ")", cause: cause, cut: cutSpan}
	case code >= 500:
		return &failure{reason: "HTTP " + strconv.Itoa(code), cause: cause}
	case code == http.StatusBadRequest:
		switch heaviness(msg) {
		case cutPage:
			return &failure{reason: "result too large", cause: cause, cut: cutPage}
		case cutSpan:
			return &failure{reason: "query stopped by the API", cause: cause, cut: cutSpan}
		}
		refused := recovery.Problemf(recovery.ErrUsage, remedyWhere, "the API refused the query (400) at %s: %s", s.Endpoint(), msg)
		refused.Err = recovery.ErrBadRequest
		return &failure{permanent: refused}
	case code == http.StatusUnauthorized:
		return &failure{permanent: recovery.Problemf(recovery.ErrInvalidToken, remedyToken,
			"the API answered 401 for %s %s", s.Endpoint(), msg), unauthorized: true}
	case code == http.StatusForbidden:
		return &failure{permanent: recovery.Problemf(recovery.ErrInvalidToken, remedyToken,
			"the API answered 403 for %s %s", s.Endpoint(), msg)}
	case code >= 300 && code < 400:
		return &failure{permanent: recovery.Problemf(recovery.ErrUsage, remedyBaseURL,
			"the API answered %d for %s, a redirect to %q: that is not Microsoft Graph", code, s.Endpoint(), s.show(resp.Header.Get("Location")))}
	case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
		return &failure{permanent: recovery.Problemf(recovery.ErrUsage, remedyBaseURL,
			"the API answered %d for %s: that is not Microsoft Graph's runHuntingQuery", code, s.Endpoint())}
	}
	return &failure{permanent: recovery.Problemf(recovery.ErrInternal, remedyInternal,
		"the API answered %d for %s %s", code, s.Endpoint(), msg)}
}

// heaviness reads a 400 answer's message for the limits advanced hunting
// enforces on one query (defender-docs advanced-hunting-errors.md,
// run-advanced-query-api.md; docs/graph-source.md quotes them): a result
// too large (cut the page), or a query that ran too long or used too many
// resources (cut the time span). Any other 400 is the query's own fault.
func heaviness(msg string) cut {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "result size"), strings.Contains(m, "size limit"):
		return cutPage
	case strings.Contains(m, "timeout"), strings.Contains(m, "timed out"),
		strings.Contains(m, "exceeded the allowed limits"), strings.Contains(m, "preempted"),
		strings.Contains(m, "excessive resource"):
		return cutSpan
	}
	return noCut
}

// answerFailure classifies an error of reading a 200 answer: the answer's
// fault (malformed, a critical error) or the connection's.
func (s *Source) answerFailure(ctx context.Context, err error) error {
	var (
		f      *failure
		tooBig *http.MaxBytesError
	)
	switch {
	case errors.As(err, &f):
		return f
	case errors.As(err, &tooBig):
		return malformed("the answer is larger than %d bytes", tooBig.Limit)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return malformed("the answer ends before its end: %s", s.show(err.Error()))
	}
	return s.transportFailure(ctx, fmt.Errorf("read the answer: %w", err))
}

// readAnswer reads a 200 answer: huntingQueryResults,
// {"schema":[{"name","type"}…],"results":[{row}…]}, keys in either case
// (the older advanced hunting API wrote Schema and Results). The answer is
// read whole (at most maxAnswer bytes) and checked once; its rows stay
// slices of it, counted before anything is made of them, so an answer
// with more rows than the limit asked for costs no more than its bytes.
func (s *Source) readAnswer(body io.Reader, c call) (*answer, error) {
	text, err := readAll(body)
	if err != nil {
		return nil, err
	}
	if err := fastjson.ValidateBytes(text); err != nil {
		return nil, malformed("the answer is not the expected JSON: %s", s.show(err.Error()))
	}
	ans := answer{schema: map[string]string{}}
	var results []byte
	isObject := members(text, func(key, value []byte) bool {
		switch strings.ToLower(keyName(key)) {
		case "results":
			if results != nil {
				err = malformed(`the answer has two "results" lists`)
				return false
			}
			results = value
		case "schema":
			err = readSchema(value, ans.schema)
		}
		return err == nil
	})
	switch {
	case !isObject:
		return nil, malformed("the answer is not the expected JSON: not an object")
	case err != nil:
		return nil, err
	case results == nil || results[0] != '[':
		return nil, malformed(`the answer has no "results" list`)
	}
	ans.rows = make([][]byte, 0, min(c.limit, 1<<16))
	items(results, func(row []byte) bool {
		if len(ans.rows) == c.limit {
			err = malformed("the answer holds more rows than the %d asked for", c.limit)
			return false
		}
		ans.rows = append(ans.rows, row)
		return true
	})
	if err != nil {
		return nil, err
	}
	if c.page != nil {
		if err := s.activities(&ans, *c.page); err != nil {
			return nil, err
		}
	}
	return &ans, nil
}

// readAll reads an answer whole. Growing by appending chunks keeps the
// memory of a large answer near its size (append grows large slices by a
// quarter, where doubling could hold twice the answer).
func readAll(r io.Reader) ([]byte, error) {
	buf := make([]byte, 0, 256<<10)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// readSchema reads the schema list into types: each column's type by name.
func readSchema(list []byte, types map[string]string) error {
	var columns []map[string]json.RawMessage
	if err := json.Unmarshal(list, &columns); err != nil {
		return malformed(`the answer's "schema" is not a list of columns`)
	}
	for _, col := range columns {
		var name, typ string
		for k, v := range col {
			switch strings.ToLower(k) {
			case "name":
				_ = json.Unmarshal(v, &name)
			case "type":
				_ = json.Unmarshal(v, &typ)
			}
		}
		if name != "" {
			types[name] = typ
		}
	}
	return nil
}

// transportFailure classifies an error of the HTTP client in a request to
// the API.
func (s *Source) transportFailure(ctx context.Context, err error) error {
	var op *net.OpError
	if ctx.Err() == nil && errors.As(err, &op) && op.Op == "dial" && !s.answered.Load() {
		// Nothing ever answered: the address is wrong, not the API down.
		var dns *net.DNSError
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return &failure{permanent: recovery.Problemf(recovery.ErrUsage, remedyUnreachable,
				"nothing answers at %s (connection refused)", s.Endpoint())}
		case errors.As(err, &dns) && dns.IsNotFound:
			return &failure{permanent: recovery.Problemf(recovery.ErrUsage, remedyUnreachable,
				"the API host %s does not resolve (%s)", s.endpoint.Hostname(), s.show(dns.Err))}
		}
	}
	return s.networkFailure(ctx, err, s.Endpoint())
}

// networkFailure classifies an error of the HTTP client in a request to
// target (the API, or the authority behind Config.Authorization).
func (s *Source) networkFailure(ctx context.Context, err error, target string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("request %s: %w", target, ctx.Err())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// Our own bound, past the API's 3 minutes: the query is too heavy
		// to answer in time, or the answer too large to arrive.
		return &failure{reason: "timeout", cause: fmt.Errorf("no complete answer from %s within %s", target, s.timeout), cut: cutSpan}
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
		return &failure{reason: "proxy error", cause: s.redactor.ShowError(err)}
	}
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &verify) {
		// The certificate's names come from the server: shown escaped.
		return &failure{permanent: fmt.Errorf("the TLS certificate of %s is not trusted: %w", target, s.redactor.ShowError(err))}
	}
	return &failure{reason: "network error", cause: s.redactor.ShowError(err)}
}

// proxyAddress describes the proxy in use (Config.Proxy, or the
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
	return redactURL(u.String()), u.Hostname(), u.Port()
}

// message is the API's explanation in an error answer (Graph's
// {"error":{"code","message"}}), short, redacted and escaped, in
// parentheses.
func (s *Source) message(data []byte) string {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	msg := ""
	if json.Unmarshal(data, &body) == nil {
		msg = body.Error.Message
		if body.Error.Code != "" {
			msg = strings.TrimSpace(body.Error.Code + ": " + msg)
		}
	}
	if msg == "" {
		msg = strings.Join(strings.Fields(string(data)), " ")
	}
	if msg == "" {
		return "(no explanation)"
	}
	return "(" + s.show(cut200(msg)) + ")"
}

// cut200 shortens msg to at most 200 bytes at a character's start, marking
// the cut with an ellipsis.
func cut200(msg string) string {
	n := 200
	if len(msg) <= n {
		return msg
	}
	for n > 0 && !utf8.RuneStart(msg[n]) {
		n--
	}
	return msg[:n] + "…"
}

// show makes text from the API (or its connection) fit for a log line or
// an error: secrets redacted, control characters escaped.
func (s *Source) show(text string) string { return s.redactor.Show(text) }

// retryAfter reads a Retry-After header: seconds or an HTTP date. The wait
// is capped at MaxRetryAfter; an absent or unreadable header is 0.
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
