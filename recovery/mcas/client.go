package mcas

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"siem-recovery/recovery"
)

// errBadRequest marks a 400 answer: the API refused the request itself,
// which no retry mends.
var errBadRequest = recovery.ErrBadRequest

// reasonMalformed is the failure reason of a 200 answer that is not a
// complete, consistent answer to its request.
const reasonMalformed = "malformed answer"

// call is one request of the activities API and what a valid answer to it
// must respect.
type call struct {
	body  []byte
	scan  bool
	limit int // the most activities the answer may hold
	// filters are the request's filters: a scan answer that gives them
	// back as nextQueryFilters would be asked again forever.
	filters json.RawMessage
	// gte is the time (on field by: date or created) a plain page starts
	// at: a full page that ends before it leaves the cursor where it was.
	by  recovery.TimeField
	gte int64
	// reached is where a scan stands (on field by; 0: not known): a page
	// that ends before it went back.
	reached int64
	// chain is what the reader remembers of the pages before (nil for a
	// count or a probe): a continuation it followed, a run of empty
	// answers, activities listed again.
	chain *chain
}

// answer is a 200 answer of the activities API.
type answer struct {
	HasNext          *bool
	NextQueryFilters json.RawMessage
	// Total is the answer's "total" when it is a count (readTotal);
	// badTotal what it was instead, shown. The API documents the total as
	// approximate, and MoreThanTotal, when true ("moreThanTotal": true),
	// says it is only a lower bound: the API stopped counting.
	Total         *int64
	badTotal      string
	MoreThanTotal *bool
	listed        []recovery.Activity // "data", decoded
	// activities are those listed, without those the API listed again
	// (repeated of them): within the answer, or from the page before.
	activities []recovery.Activity
	repeated   int
}

func (a *answer) hasNext() bool { return a.HasNext != nil && *a.HasNext }

// lowerBound tells whether the answer's total is only a lower bound.
func (a *answer) lowerBound() bool { return a.MoreThanTotal != nil && *a.MoreThanTotal }

// notePageSize records what the answer ans to c, a page (not a count or
// a probe, which ask for one activity), shows of the page size the API
// gives: an answer that says more follow is as full as the API fills a
// page (in scan mode, but for its last millisecond). The largest seen is
// kept (Source.PageSize): a page cut short to keep a millisecond whole
// does not make the estimate smaller than the pages are. The answer's
// "max" is no help: its meaning is not documented (Microsoft's sample
// alerts answer has max 1 with total 1, demisto's test data max 100 with
// total 1), so nothing is planned on it.
func (s *Source) notePageSize(c call, ans *answer) {
	if c.chain == nil || !ans.hasNext() {
		return
	}
	seen := int64(len(ans.listed))
	for {
		old := s.pageSeen.Load()
		if seen <= old || s.pageSeen.CompareAndSwap(old, seen) {
			return
		}
	}
}

// maxTotal is the largest total taken for a count: more activities than
// any tenant holds in a window (MCAS keeps 180 days), and few enough that
// what is planned from it (requests, durations) cannot overflow.
const maxTotal = 1_000_000_000_000

// readTotal reads "total": a count is a JSON integer from 0 to maxTotal.
// Anything else (a string, a fraction, an exponent, a negative number, an
// absurd count) is no total, as if it were absent: it only ever plans,
// and planning does without one.
func (a *answer) readTotal(raw json.RawMessage) {
	text := string(bytes.TrimSpace(raw))
	n, err := strconv.ParseInt(text, 10, 64)
	if err == nil && n >= 0 && n <= maxTotal {
		a.Total = &n
		return
	}
	if text != "null" {
		a.badTotal = cut(text, 40)
	}
}

// reached is the time, on field by, of the answer's last activity (0 for
// none): the answers of a listing are sorted on it, oldest first.
func (a *answer) reached(by recovery.TimeField) int64 {
	if n := len(a.listed); n > 0 {
		return by.Of(a.listed[n-1])
	}
	return 0
}

// ids are the ids of the activities listed.
func (a *answer) ids() []string {
	ids := make([]string, len(a.listed))
	for i, act := range a.listed {
		ids[i] = act.ID
	}
	return ids
}

// failure is why one request failed. A failure with permanent set ends
// the fetch with that error; the others are retried: throttled ones
// without limit, the rest (critical) until MaxCriticalErrors in a row.
type failure struct {
	reason     string // short and stable, logged once per streak: "HTTP 503", "timeout", …
	cause      error
	remedy     string // of the error when this failure ends the fetch; "" for remedyRetry
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

// retried is the failure of an answer with a status a retry may mend:
// 429 (throttled, waiting for Retry-After), 408 and 5xx (critical); nil for
// any other. cause says who answered it.
func retried(resp *http.Response, cause error) *failure {
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests:
		return &failure{reason: "throttled (429)", throttled: true,
			retryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()), cause: cause}
	case code >= 500 || code == http.StatusRequestTimeout:
		return &failure{reason: "HTTP " + strconv.Itoa(code), cause: cause}
	}
	return nil
}

// malformed is the failure of a 200 answer that is not a valid answer to
// its request: a critical error, since the same request may well be
// answered properly again.
func malformed(format string, args ...any) *failure {
	return &failure{reason: reasonMalformed, cause: fmt.Errorf(format, args...)}
}

// post sends one API request, retrying under the retry policy, and
// returns the answer and how many requests it took.
func (s *Source) post(ctx context.Context, c call) (*answer, int, error) {
	b := s.newBackOff()
	logged := map[string]bool{} // reasons logged in this streak of failures
	requests := 0
	renewed := false
	lastMalformed := "" // the previous failure, if it was a malformed answer
	for {
		if err := s.budget.wait(ctx); err != nil {
			return nil, requests, err
		}
		header, err := s.auth.authorization(ctx)
		var ans *answer
		if err == nil {
			requests++
			// The replay loop counts it now: a run that dies before the
			// answer has it in its checkpoint all the same.
			recovery.NoteRequest(ctx)
			sent := time.Now()
			if ans, err = s.once(ctx, header, c); err == nil {
				s.budget.answered(time.Since(sent))
			}
		}
		if err == nil {
			s.valid.Store(true)
			s.notePageSize(c, ans)
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
			n, exhausted := s.budget.failed()
			remedy := cmp.Or(f.remedy, remedyRetry)
			if exhausted {
				return nil, requests, recovery.Problemf(recovery.ErrTooManyCriticalErrors, remedy,
					"%d consecutive API requests to %s failed; the last: %s: %w", n, s.Endpoint(), f.reason, f.cause)
			}
			// The same request answered twice with the same malformed
			// answer will be answered so every time: waiting minutes for
			// the count to run out would mend nothing.
			if f.reason == reasonMalformed && f.cause.Error() == lastMalformed {
				return nil, requests, recovery.Problemf(recovery.ErrTooManyCriticalErrors, remedy,
					"%d consecutive API requests to %s failed; the last two got the same malformed answer, which retrying does not mend: %w", n, s.Endpoint(), f.cause)
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
// when ctx ended. Whatever the answer held reaches an error only through
// show: redacted and escaped.
func (s *Source) once(ctx context.Context, authorization string, c call) (*answer, error) {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.Endpoint(), bytes.NewReader(c.body))
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
	s.answered.Store(true)

	code := resp.StatusCode
	if f := s.notTheAPI(resp); f != nil {
		return nil, f
	}
	if code == http.StatusOK {
		// The transport asked for gzip and inflates it; any other coding
		// was not asked for, and is not JSON.
		if enc := resp.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
			return nil, malformed("the answer is encoded as %q, which was not asked for", s.show(cut(enc, 40)))
		}
		body := &answerReader{r: resp.Body, max: s.maxAnswer, inflated: resp.Uncompressed}
		ans, err := s.readAnswer(body, c)
		if err != nil {
			if f := s.shortOfLength(ctx, err, body.read, resp.ContentLength); f != nil {
				return nil, f
			}
			return nil, s.answerFailure(ctx, err)
		}
		return ans, nil
	}
	// An error answer's first words are enough; body only counts them.
	body := &answerReader{r: io.LimitReader(resp.Body, maxErrorAnswer), max: maxErrorAnswer + 1}
	data, err := io.ReadAll(body)
	if err != nil {
		if f := s.shortOfLength(ctx, err, body.read, resp.ContentLength); f != nil {
			return nil, f
		}
		return nil, s.transportFailure(ctx, fmt.Errorf("read the answer: %w", err))
	}
	if f := retried(resp, fmt.Errorf("the API answered %d %s", code, s.message(data))); f != nil {
		return nil, f
	}
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return nil, &failure{permanent: recovery.Problemf(recovery.ErrInvalidToken, s.auth.refusedRemedy(code),
			"the API answered %d for %s", code, s.Endpoint()), unauthorized: code == http.StatusUnauthorized}
	case code == http.StatusBadRequest && plainToTLS(data):
		return nil, &failure{permanent: recovery.Problemf(recovery.ErrUsage, remedyScheme,
			"%s is a TLS port: the server answered the plain-HTTP request with 400 %s", s.Endpoint(), s.message(data))}
	case code == http.StatusBadRequest:
		return nil, &failure{permanent: recovery.Problemf(recovery.ErrUsage, s.rec.remedyFilter,
			"the API answered %w for %s: %s", errBadRequest, s.Endpoint(), s.message(data))}
	case code >= 300 && code < 400:
		return nil, &failure{permanent: recovery.Problemf(recovery.ErrUsage, remedySource,
			"the API answered %d for %s, a redirect to %q: that is not %s", code, s.Endpoint(), s.show(resp.Header.Get("Location")), s.rec.api)}
	case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
		return nil, &failure{permanent: recovery.Problemf(recovery.ErrUsage, remedySource,
			"the API answered %d for %s: that is not %s", code, s.Endpoint(), s.rec.api)}
	}
	return nil, &failure{permanent: recovery.Problemf(recovery.ErrInternal, remedyInternal,
		"the API answered %d for %s: %s", code, s.Endpoint(), s.message(data))}
}

// notTheAPI is the failure of an answer that shows --source is not the
// activities API, before the API ever answered in this run: a 200 with a
// web page (text/html) where JSON was due, or 501 (a web server that
// takes no POST). Once the API has answered, the same is a gateway's
// error page in front of it, which a retry may mend: nil.
func (s *Source) notTheAPI(resp *http.Response) *failure {
	if s.valid.Load() {
		return nil
	}
	media, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case resp.StatusCode == http.StatusNotImplemented:
		return &failure{permanent: recovery.Problemf(recovery.ErrUsage, remedySource,
			"the server at %s answered 501 Not Implemented to a POST: it is not %s", s.Endpoint(), s.rec.api)}
	case resp.StatusCode == http.StatusOK && media == "text/html":
		return &failure{permanent: recovery.Problemf(recovery.ErrUsage, remedySource,
			"the server at %s answered with a web page (text/html), not %s's JSON", s.Endpoint(), s.rec.api)}
	}
	return nil
}

// plainToTLS tells whether an error answer's body says a plain-HTTP
// request reached a TLS port, in the words of Go's, nginx's or Apache's
// servers.
func plainToTLS(body []byte) bool {
	text := strings.ToLower(string(body))
	for _, words := range []string{"http request to an https server", "plain http request was sent to https port", "speaking plain http to an ssl-enabled server port"} {
		if strings.Contains(text, words) {
			return true
		}
	}
	return false
}

// shortOfLength is the failure of an answer that ended, or stalled, before
// the length its Content-Length announced (read bytes of announced; -1:
// none announced), where the error alone would say the JSON was cut or
// the answer did not come in time; nil for any other.
func (s *Source) shortOfLength(ctx context.Context, err error, read, announced int64) *failure {
	if ctx.Err() != nil || announced < 0 || read >= announced {
		return nil
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return malformed("the answer ended after %d of the %d bytes its Content-Length announced", read, announced)
	case errors.Is(err, context.DeadlineExceeded):
		return &failure{reason: "timeout", cause: fmt.Errorf("the answer from %s stalled after %d of the %d bytes its Content-Length announced, and was not complete within %s",
			s.Endpoint(), read, announced, s.timeout)}
	}
	return nil
}

// answerFailure classifies an error of reading a 200 answer: the
// answer's fault (malformed, a critical error) or the connection's.
func (s *Source) answerFailure(ctx context.Context, err error) error {
	var (
		f      *failure
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &f):
		return f
	case errors.As(err, &syntax), errors.As(err, &typ), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return malformed("the answer is not the expected JSON: %s", s.show(err.Error()))
	}
	return s.transportFailure(ctx, fmt.Errorf("read the answer: %w", err))
}

// readAnswer decodes a 200 answer as it arrives. The activities are
// decoded one by one and counted, so an answer with more than the limit
// asked for is refused at the first one too many, holding no more than a
// page. A complete answer must also be a possible answer to c.
func (s *Source) readAnswer(body *answerReader, c call) (*answer, error) {
	dec := json.NewDecoder(body)
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	var ans answer
	sawData := false
	for {
		// Each member (its key, then its value) is bounded as one value.
		body.value(dec.InputOffset(), "a member of the answer")
		if !dec.More() {
			break
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch tok {
		case "data":
			if sawData {
				return nil, malformed(`the answer has two "data" lists`)
			}
			sawData = true
			if ans.listed, err = s.readActivities(dec, body, c.limit); err != nil {
				return nil, err
			}
		case "hasNext":
			err = dec.Decode(&ans.HasNext)
		case "nextQueryFilters":
			err = dec.Decode(&ans.NextQueryFilters)
		case "total":
			var raw json.RawMessage
			if err = dec.Decode(&raw); err == nil {
				ans.readTotal(raw)
			}
		case "moreThanTotal":
			// Anything but a boolean (null, another type) is as if absent:
			// the total stays a count, an estimate as always.
			var raw json.RawMessage
			if err = dec.Decode(&raw); err == nil {
				var more bool
				if json.Unmarshal(raw, &more) == nil && string(bytes.TrimSpace(raw)) != "null" {
					ans.MoreThanTotal = &more
				}
			}
		default:
			err = skipValue(dec)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	body.value(dec.InputOffset(), "what follows the answer")
	var syntax *json.SyntaxError
	switch _, err := dec.Token(); {
	case err == io.EOF:
	case err == nil || errors.As(err, &syntax):
		return nil, malformed("the answer goes on after its JSON object")
	default: // the connection's error, or a bound's
		return nil, err
	}
	if !sawData {
		return nil, malformed(`the answer has no "data" list`)
	}
	if err := c.check(&ans, s.rec.many); err != nil {
		return nil, err
	}
	return &ans, nil
}

// readActivities decodes the "data" list, refusing more than limit
// activities, and any one larger than MaxActivity (body bounds each).
func (s *Source) readActivities(dec *json.Decoder, body *answerReader, limit int) ([]recovery.Activity, error) {
	if err := expectDelim(dec, '['); err != nil {
		return nil, err
	}
	var (
		acts []recovery.Activity
		d    recovery.Decoder
		raw  json.RawMessage // read into again when the pages keep no Raw
	)
	for {
		body.value(dec.InputOffset(), fmt.Sprintf("%s %d of the answer", s.rec.one, len(acts)))
		if !dec.More() {
			break
		}
		if len(acts) == limit {
			return nil, malformed("the answer holds more %s than the %d asked for", s.rec.many, limit)
		}
		if !s.leaveRaw {
			raw = nil // the activity keeps its text: its own memory
		}
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		a, err := s.rec.decode(&d, raw)
		if err != nil {
			return nil, malformed("%s %d of the answer: %s", s.rec.one, len(acts), s.show(err.Error()))
		}
		if s.leaveRaw {
			a.Raw = nil
		}
		acts = append(acts, a)
	}
	if err := expectDelim(dec, ']'); err != nil {
		return nil, err
	}
	if acts == nil {
		acts = []recovery.Activity{}
	}
	return acts, nil
}

// check tells whether ans can be the answer to c: one that moves on, in
// scan mode to a continuation the reader never followed, and not past
// more than maxEmptyAnswers answers in a row that list nothing new. It
// drops the activities the API listed again (answer.activities).
func (c call) check(ans *answer, many string) error {
	ans.activities = ans.listed
	if c.scan && ans.hasNext() {
		next := bytes.TrimSpace(ans.NextQueryFilters)
		if len(next) == 0 || next[0] != '{' {
			return malformed(`the answer has "hasNext": true but no "nextQueryFilters" object`)
		}
		if bytes.Equal(compact(next), compact(c.filters)) {
			return malformed(`the answer's "nextQueryFilters" are the filters it was asked with: following them would list the same page forever`)
		}
		if c.chain != nil && c.chain.followed(compact(next)) {
			return malformed(`the answer's "nextQueryFilters" are a continuation this pass followed before: following them would list its pages again`)
		}
	}
	if c.scan && c.reached > 0 {
		if last := ans.reached(c.by); len(ans.listed) > 0 && last < c.reached {
			return malformed("the answer's activities end at %s, before %s, where the scan stood on %s: its continuation went back",
				recovery.FormatMillis(last), recovery.FormatMillis(c.reached), c.by)
		}
	}
	if !c.scan && !ans.lastPlainPage(c.limit) {
		acts := ans.listed
		if last := c.by.Of(acts[len(acts)-1]); last < c.gte {
			return malformed("a full page of %d %s ends at %s, before the %s asked for (%s): the %s cursor cannot advance",
				len(acts), many, recovery.FormatMillis(last), c.by, recovery.FormatMillis(c.gte), c.by)
		}
	}
	if c.chain == nil {
		return nil
	}
	repeats := c.chain.repeats(ans.ids())
	kept := ans.listed[:0:0]
	for i, a := range ans.listed {
		if repeats[i] {
			ans.repeated++
			continue
		}
		kept = append(kept, a)
	}
	if ans.repeated > 0 {
		ans.activities = kept
	}
	if c.scan && ans.hasNext() && len(ans.activities) == 0 {
		if n := c.chain.emptyAnswers() + 1; n > maxEmptyAnswers {
			return malformed(`%d answers in a row listed no new activity yet said "hasNext": true: following them may never end`, n)
		}
	}
	return nil
}

// lastPlainPage tells whether a plain page of at most limit activities
// ends the listing: it lists nothing, or says no more follow; an answer
// that does not say is the last when it is not full. A page that holds
// fewer than limit and says more follow is not the last: the API may cap
// its answers below the limit asked for.
func (a *answer) lastPlainPage(limit int) bool {
	switch {
	case len(a.listed) == 0:
		return true
	case a.HasNext != nil:
		return !*a.HasNext
	}
	return len(a.listed) < limit
}

// expectDelim reads the next token, which must be delim.
func expectDelim(dec *json.Decoder, delim json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != delim {
		return malformed("the answer is not the expected JSON: no %q at byte %d", delim, dec.InputOffset())
	}
	return nil
}

// skipValue reads past one value without holding it: a key the source
// does not use may be as large as the answer.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// transportFailure classifies an error of the HTTP client in a request
// to the API.
func (s *Source) transportFailure(ctx context.Context, err error) error {
	var record tls.RecordHeaderError
	if ctx.Err() == nil && !s.answered.Load() && (errors.Is(err, http.ErrSchemeMismatch) || errors.As(err, &record)) {
		// The TLS handshake was answered in plain text: an https://
		// source on a plain-HTTP port (or something else than a web
		// server), not an outage.
		why := record.Error()
		if errors.Is(err, http.ErrSchemeMismatch) {
			why = http.ErrSchemeMismatch.Error()
		}
		return &failure{permanent: recovery.Problemf(recovery.ErrUsage, remedyScheme,
			"%s does not answer over TLS: the server at %s answered the TLS handshake in plain text (%s)", s.Endpoint(), s.endpoint.Host, s.show(why))}
	}
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
		return &failure{reason: "proxy error", cause: s.showError(err)}
	}
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &verify) {
		// The certificate's names come from the server: shown escaped.
		return &failure{permanent: fmt.Errorf("the TLS certificate of %s is not trusted: %w", target, s.showError(err))}
	}
	return &failure{reason: "network error", cause: s.showError(err)}
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
	return recovery.RedactURL(u.String()), u.Hostname(), u.Port()
}

// message is the API's explanation in an error answer, short, redacted
// and escaped.
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
	if msg == "" {
		return "(no explanation)"
	}
	msg = cut(msg, 200)
	return "(" + s.show(msg) + ")"
}

// cut shortens msg to at most n bytes, at a character's start, marking
// the cut with an ellipsis.
func cut(msg string, n int) string {
	if len(msg) <= n {
		return msg
	}
	for n > 0 && !utf8.RuneStart(msg[n]) {
		n--
	}
	return msg[:n] + "…"
}

// show makes text from the API (or from its connection) fit for a log
// line or an error: secrets redacted, control characters escaped.
func (s *Source) show(text string) string { return s.redactor.Show(text) }

// showError is err with its text as show makes it.
func (s *Source) showError(err error) error { return s.redactor.ShowError(err) }

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
