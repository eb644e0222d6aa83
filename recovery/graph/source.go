package graph

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"siem-recovery/recovery"
	"siem-recovery/recovery/entra"
)

// Source reads a window of CloudAppEvents through Microsoft Graph's
// runHuntingQuery. It implements recovery.Source, recovery.Scoped and
// recovery.Counter. Its methods, and those of the sources Over returns,
// may run side by side, all spending one rate limit and one count of
// consecutive failed requests.
type Source struct {
	endpoint *url.URL
	auth     func(context.Context) (string, error)
	renew    func() bool
	proxy    *url.URL
	client   *http.Client
	budget   *budget
	scope    recovery.Scope // the recovery's window
	where    Predicate
	pageSize int // Config.PageSize
	timeout  time.Duration
	retryMin time.Duration
	retryMax time.Duration
	// maxAnswer bounds the bytes of one answer; tests lower it.
	maxAnswer int64
	log       *slog.Logger
	redactor  *recovery.Redactor
	// identity and validFor are the Entra ID identity's, for check; ""
	// and nil when Config.Authorization authorizes.
	identity string
	validFor func(context.Context) (time.Duration, error)

	// answered is set by the first answer of any kind: until then, a
	// refused connection means a wrong address rather than an outage.
	answered atomic.Bool

	mu         sync.Mutex
	tenant     string // the records' tenantId
	lastHeader string // the Authorization header last sent
	// The shape of the next query, lightened when the API finds a query
	// too heavy and grown back as answers come quickly: limit rows at
	// most, over a time span of at most span (0: to the scope's end).
	// calm counts the quick answers since the last change of shape.
	limit int
	span  Ticks
	calm  int
}

// growAfter is how many quick answers in a row let a lightened query grow
// back (doubling). A query the API stopped took up to its 3 minutes: at
// most one in growAfter+1 queries may be one, where growing after every
// answer could make every other query one.
const growAfter = 16

// New checks cfg and builds a Source. It makes no request. Errors are
// *recovery.Error of kind ErrUsage (base URL, window, a window older than
// 30 days, page size, --by created).
func New(cfg Config) (*Source, error) {
	endpoint, err := ParseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if err := cfg.Window.Validate(); err != nil {
		return nil, recovery.Problemf(recovery.ErrUsage, "give a window whose end is after its start", "%w", err)
	}
	if cfg.By != recovery.ByDate {
		return nil, errByCreated()
	}
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	if err := Validate(cfg.Window, now()); err != nil {
		return nil, err
	}
	if cfg.Authorization == nil && cfg.Identity == nil {
		return nil, recovery.Problemf(recovery.ErrInternal, "", "the Graph source was built without a way to authorize its requests")
	}
	if cfg.PageSize < 0 || cfg.PageSize > MaxPageSize {
		return nil, recovery.Problemf(recovery.ErrUsage, remedyPaging, "a page of %d rows: advanced hunting returns 1 to %d rows a query", cfg.PageSize, MaxPageSize)
	}
	if cfg.RateLimit < 0 || cfg.MaxCriticalErrors < 0 {
		return nil, recovery.Problemf(recovery.ErrUsage, "give a positive number", "a rate limit of %d and a most of %d critical errors must not be negative", cfg.RateLimit, cfg.MaxCriticalErrors)
	}
	s := &Source{
		endpoint:  endpoint,
		auth:      cfg.Authorization,
		renew:     cfg.Renew,
		proxy:     cfg.Proxy,
		budget:    newBudget(orDefault(cfg.RateLimit, DefaultRateLimit), orDefault(cfg.MaxCriticalErrors, DefaultMaxCriticalErrors)),
		scope:     recovery.Scope{Window: cfg.Window},
		where:     cfg.Where,
		pageSize:  orDefault(cfg.PageSize, DefaultPageSize),
		timeout:   orDefault(cfg.RequestTimeout, DefaultRequestTimeout),
		retryMin:  orDefault(cfg.RetryInitial, DefaultRetryInitial),
		retryMax:  orDefault(cfg.RetryMax, DefaultRetryMax),
		maxAnswer: maxAnswer,
		log:       cfg.Logger,
		redactor:  cfg.Redactor,
		tenant:    cfg.TenantID,
	}
	s.limit = s.pageSize
	s.retryMax = max(s.retryMax, s.retryMin)
	if s.redactor == nil {
		s.redactor = recovery.NewRedactor()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if s.proxy != nil {
		transport.Proxy = http.ProxyURL(s.proxy)
	}
	if cfg.TLSConfig != nil {
		transport.TLSClientConfig = cfg.TLSConfig.Clone()
	}
	s.client = newClient(transport)
	if id := cfg.Identity; id != nil && cfg.Authorization == nil {
		s.identity = id.String()
		tokens := s.client
		if id.Managed() {
			// The machine's token endpoint is local to it: a proxy cannot
			// reach it, and IMDS refuses proxied requests.
			direct := transport.Clone()
			direct.Proxy = nil
			tokens = newClient(direct)
		}
		token := entra.NewToken(id, Resource, tokens, s.timeout, s.log, s.redactor)
		s.auth, s.renew, s.validFor = token.Authorization, token.Renew, token.ValidFor
	}
	return s, nil
}

func errByCreated() error {
	return recovery.Problemf(recovery.ErrUsage, remedyByDate,
		"advanced hunting cannot select rows by when they were saved: ingestion_time() is approximate and does not order ingestions")
}

// Endpoint is the URL every request goes to.
func (s *Source) Endpoint() string { return s.endpoint.String() }

// PageSize is the most rows a query asks for (Config.PageSize).
func (s *Source) PageSize() int { return s.pageSize }

// RateLimit is the rate limit, in requests a minute.
func (s *Source) RateLimit() float64 { return s.budget.perMinute() }

// position is the Source's cursor token: the rows from At on (After "":
// At included), or after the row at At whose ReportId is After, in the
// order of (Timestamp, ReportId). At is the canonical text of a Ticks.
type position struct {
	At    string `json:"at"`
	After string `json:"after,omitempty"`
}

// decodePosition reads a cursor this source made; the zero cursor is the
// start of scope.
func decodePosition(c recovery.Cursor, scope recovery.Scope) (from Ticks, after string, err error) {
	from = TicksOfMillis(scope.Window.Start)
	var p position
	if err := c.Decode(&p, "advanced hunting"); err != nil || c.IsZero() {
		return from, "", err
	}
	at, err := ParseTicks(p.At)
	if err == nil && p.After != "" {
		err = checkReportID(p.After)
	}
	if err != nil || at.String() != p.At {
		return 0, "", recovery.Problemf(recovery.ErrCheckpointUnavailable, "start this recovery afresh with another --checkpoint",
			"the checkpoint's position in advanced hunting is not one this source made (%q)", recovery.Escape(p.At))
	}
	return max(at, from), p.After, nil
}

// cursor is the recovery.Cursor of the rows after (at, after), or from
// at on when after is "".
func cursor(at Ticks, after string) recovery.Cursor {
	text := "from " + at.String()
	if after != "" {
		id := after
		if len(id) > 80 {
			id = id[:77] + "…"
		}
		text = "after " + at.String() + " " + columnReportID + " " + recovery.Escape(id)
	}
	return recovery.NewCursor(position{At: at.String(), After: after}, text)
}

// Fetch returns the page of the window's rows that starts at cur (see
// recovery.Source): at most PageSize rows, in the order of (Timestamp,
// ReportId), each as the streaming API's record. The next cursor is the
// last row's Timestamp (to 100 ns) and ReportId, so rows that share a
// millisecond, or a tick, are each read once. Errors are *recovery.Error
// (ErrInvalidToken, ErrInvalidProxy, ErrTooManyCriticalErrors, ErrUsage
// for a query the API refuses, ErrCheckpointUnavailable for a cursor this
// source did not make) or the context's error.
func (s *Source) Fetch(ctx context.Context, cur recovery.Cursor) (recovery.Page, error) {
	return s.fetch(ctx, s.scope, cur)
}

// Over returns the source of scope (recovery.Scoped): another window of
// Timestamp (a lane's slice). It shares this Source's connection, rate
// limit and count of failures. A scope by created, or with bounds on
// when rows were saved (--settle's sweeps), cannot be read: its Fetch
// returns ErrUsage.
func (s *Source) Over(scope recovery.Scope) recovery.Source { return &scoped{s, scope} }

// scoped is a Source reading a scope of its own.
type scoped struct {
	src   *Source
	scope recovery.Scope
}

func (v *scoped) Fetch(ctx context.Context, cur recovery.Cursor) (recovery.Page, error) {
	return v.src.fetch(ctx, v.scope, cur)
}

// Count is Source.Count over the scope (recovery.Counter).
func (v *scoped) Count(ctx context.Context, w recovery.Window) (recovery.Tally, error) {
	return v.src.count(ctx, v.scope.Within(w))
}

// The optional capabilities the replay loop finds by type assertion.
var (
	_ recovery.Scoped       = (*Source)(nil)
	_ recovery.Counter      = (*Source)(nil)
	_ recovery.Counter      = (*scoped)(nil)
	_ recovery.Prober       = (*Source)(nil)
	_ recovery.Credentialed = (*Source)(nil)
)

// Credential describes the identity the source authenticates as, without
// any secret (recovery.Credentialed).
func (s *Source) Credential() string {
	if s.identity == "" {
		return "an access token given by the caller"
	}
	return s.identity
}

// Authorize obtains the identity's access token without asking the API,
// and tells how long it is valid (recovery.Credentialed); it does not
// retry. A Source authorized by Config.Authorization says 0.
func (s *Source) Authorize(ctx context.Context) (time.Duration, error) {
	if s.validFor == nil {
		return 0, nil
	}
	if _, err := s.authorization(ctx); err != nil {
		var f *failure
		if errors.As(err, &f) && f.permanent != nil {
			return 0, f.permanent
		}
		return 0, err
	}
	return s.validFor(ctx)
}

// readable refuses a scope advanced hunting cannot select.
func readable(scope recovery.Scope) error {
	if scope.By != recovery.ByDate {
		return errByCreated()
	}
	if scope.SavedFrom != 0 || scope.SavedBefore != 0 {
		return recovery.Problemf(recovery.ErrUsage, "recover CloudAppEvents without --settle: advanced hunting has no exact time rows were saved",
			"advanced hunting cannot select rows by when they were saved (%s)", scope)
	}
	return nil
}

// fetch is Fetch over scope.
func (s *Source) fetch(ctx context.Context, scope recovery.Scope, c recovery.Cursor) (recovery.Page, error) {
	if err := readable(scope); err != nil {
		return recovery.Page{}, err
	}
	from, after, err := decodePosition(c, scope)
	if err != nil {
		return recovery.Page{}, err
	}
	end := TicksOfMillis(scope.Window.End)
	var page recovery.Page
	if from >= end {
		page.Last, page.Progress, page.Next = true, 1, c
		return page, nil
	}
	for {
		limit, upper := s.shape(from, end)
		q := query{from: from, upper: upper, after: after, limit: limit}
		sent := time.Now()
		ans, requests, err := s.post(ctx, call{query: q.text(s.where), timespan: timespan(scope.Window), limit: limit, page: &q})
		page.Requests += requests
		var heavy *tooHeavy
		if errors.As(err, &heavy) {
			s.lighten(heavy, q)
			continue
		}
		if err != nil {
			return page, err
		}
		s.grow(time.Since(sent), end-from)
		page.Activities = ans.acts
		switch {
		case len(ans.rows) == limit:
			// Full: more may follow, after the last row.
			page.Next = cursor(ans.lastAt, ans.lastID)
			page.Progress = scope.Window.Fraction(ans.lastAt.Millis())
		case upper < end:
			// The span cut short is read whole; the next page starts
			// where it ended.
			page.Next = cursor(upper, "")
			page.Progress = scope.Window.Fraction(upper.Millis())
		default:
			page.Last, page.Progress = true, 1
			page.Next = c
		}
		return page, nil
	}
}

// timespan is the request's Timespan: the window, widened to whole
// seconds and by one more on each side, so that it holds the window
// whether the API reads its ends as inclusive or not. The query's where
// clause is what bounds the rows exactly.
func timespan(w recovery.Window) string {
	from := time.UnixMilli(w.Start).UTC().Truncate(time.Second).Add(-time.Second)
	to := time.UnixMilli(w.End).UTC().Truncate(time.Second).Add(2 * time.Second)
	return from.Format(time.RFC3339) + "/" + to.Format(time.RFC3339)
}

// shape is the next query's limit and upper time bound, from from on.
func (s *Source) shape(from, end Ticks) (limit int, upper Ticks) {
	s.mu.Lock()
	defer s.mu.Unlock()
	upper = end
	if s.span > 0 && s.span < end-from {
		upper = from + s.span
	}
	return s.limit, upper
}

// lighten makes the queries after q lighter, as the API asked: half the
// time span for a query that ran too long (half the rows when the span is
// one tick already), half the rows for a result too large (half the span
// when one row is too large already, in case the API judged it so).
func (s *Source) lighten(h *tooHeavy, q query) {
	s.mu.Lock()
	width := q.upper - q.from
	how := h.cut
	if how == cutSpan && width <= 1 {
		how = cutPage
	}
	if how == cutPage && q.limit <= 1 {
		how = cutSpan
	}
	switch how {
	case cutSpan:
		s.span = max(width/2, 1)
	case cutPage:
		s.limit = max(q.limit/2, 1)
	}
	s.calm = 0
	limit, span := s.limit, s.span
	s.mu.Unlock()
	s.log.Warn("the API found a query too heavy; asking for less", "endpoint", s.Endpoint(), "reason", h.f.reason,
		"error", h.f.cause.Error(), "rows", limit, "span", spanText(span))
}

// spanText describes a query's time span for the log.
func spanText(span Ticks) string {
	if span == 0 {
		return "to the end of the window"
	}
	return (time.Duration(span) * 100).String()
}

// grow lets lightened queries grow back towards the configured page size
// and the whole window: after growAfter answers in a row that each came
// within a quarter of the API's query timeout, the next query may hold
// twice the rows and span twice the time. remaining is the scope's time
// left.
func (s *Source) grow(took time.Duration, remaining Ticks) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if took > QueryTimeout/4 {
		s.calm = 0
		return
	}
	if s.limit == s.pageSize && s.span == 0 {
		return
	}
	if s.calm++; s.calm < growAfter {
		return
	}
	s.calm = 0
	s.limit = min(s.limit*2, s.pageSize)
	if s.span > 0 {
		s.span *= 2
		if s.span >= remaining {
			s.span = 0
		}
	}
}

// activities turns an answer to q into the page's activities (ans.acts):
// each row as the streaming record, in order, and notes the last row's
// place. A row out of place (outside [from, upper), not after the cursor,
// out of order) means the answer is not one to q: a malformed answer. A
// row listed twice in a row is dropped.
func (s *Source) activities(ans *answer, q query) error {
	s.mu.Lock()
	tenant := s.tenant
	s.mu.Unlock()
	acts := make([]recovery.Activity, 0, len(ans.rows))
	prevAt, prevID := q.from, q.after
	first := true
	dropped := 0
	for i, row := range ans.rows {
		rec, at, id, err := buildRecord(row, ans.schema, tenant)
		if err != nil {
			return malformed("row %d of the answer: %s", i, s.show(err.Error()))
		}
		ans.rows[i] = nil // the record holds what is kept of it
		if at < q.from || at >= q.upper {
			return malformed("row %s at %s lies outside the %s asked for, [%s, %s)", s.show(id), at, columnTimestamp, q.from, q.upper)
		}
		order := cmp.Or(cmp.Compare(at, prevAt), strings.Compare(id, prevID))
		switch {
		case !first && order == 0:
			dropped++
			continue
		case first && q.after == "":
			// Rows from q.from on, which the window check above did.
		case order <= 0 && first:
			return malformed("row %s at %s is not after the row the query asked to follow, %s at %s",
				s.show(id), at, s.show(prevID), prevAt)
		case order < 0:
			return malformed("row %s at %s comes after row %s at %s, out of the order (%s, %s) asked for",
				s.show(id), at, s.show(prevID), prevAt, columnTimestamp, columnReportID)
		}
		a, err := parseRecord(rec)
		if err != nil {
			return malformed("row %d of the answer: %s", i, s.show(err.Error()))
		}
		acts = append(acts, a)
		prevAt, prevID, first = at, id, false
	}
	if dropped > 0 {
		s.log.Warn("the API listed rows twice in one answer; dropped the repeats", "count", dropped)
	}
	ans.acts, ans.lastAt, ans.lastID = acts, prevAt, prevID
	return nil
}

// newBackOff is the retry policy of one request: exponential from
// RetryInitial to RetryMax, with jitter, and no overall deadline (the
// critical-error count and the context end it).
func (s *Source) newBackOff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(s.retryMin),
		backoff.WithMaxInterval(s.retryMax),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.2),
		backoff.WithMaxElapsedTime(0),
	)
	b.Reset()
	return b
}
