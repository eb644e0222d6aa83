package mcas

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
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

// Paging chooses how the source pages through the window.
type Paging int

const (
	// PagingAuto uses scan mode, unless the page size is 100 or less, or
	// the API refuses scan mode on the first request of a run (400): then
	// it pages by date cursor. A resumed cursor keeps the mode it was made
	// in.
	PagingAuto Paging = iota
	// PagingScan always uses scan mode ("isScan": true, nextQueryFilters).
	PagingScan
	// PagingPlain always pages by date cursor (skip/limit, limit ≤ 100).
	PagingPlain
)

func (p Paging) String() string {
	switch p {
	case PagingScan:
		return "scan"
	case PagingPlain:
		return "plain"
	}
	return "auto"
}

// Limits of the activities API.
const (
	ScanMinLimit   = 500  // smallest scan-mode page
	ScanMaxLimit   = 5000 // largest scan-mode page
	PlainMaxLimit  = 100  // largest plain page
	PlainMaxWindow = 5000 // skip+limit of plain paging
)

// Defaults of Config.
const (
	DefaultRateLimit         = 20 // requests per minute; the tenant allows 30
	DefaultPageSize          = ScanMaxLimit
	DefaultMaxCriticalErrors = 10
	DefaultRetryInitial      = time.Second
	DefaultRetryMax          = time.Minute
	DefaultRequestTimeout    = 2 * time.Minute
	// MaxRetryAfter caps the wait a 429's Retry-After can ask for.
	MaxRetryAfter = 15 * time.Minute
)

// Config is what New needs to build a Source. Zero values take the
// defaults above.
type Config struct {
	// BaseURL is --source: https://TENANT.REGION.portal.cloudappsecurity.com.
	BaseURL string
	// Token is the API token: a legacy MCAS token or an Entra ID JWT.
	Token recovery.Token
	// Identity, when set, replaces Token: the Source obtains Entra ID
	// access tokens for it (through Proxy) and renews them.
	Identity *entra.Identity
	// Proxy is --proxy, http://host:port or host:port. Empty: the
	// HTTPS_PROXY / NO_PROXY environment, as any Go program.
	Proxy string
	// RateLimit is the most API requests per minute, for every request of
	// this Source (retries included). Default 20.
	RateLimit int
	// PageSize is the limit of each request: 500–5000 in scan mode
	// (default 5000), 1–100 in plain paging (default 100).
	PageSize int
	// MaxCriticalErrors is how many consecutive requests may fail (5xx,
	// timeout, network error, malformed answer) before Fetch gives up
	// with ErrTooManyCriticalErrors. Default 10.
	MaxCriticalErrors int
	// Data is the data type the Source reads: activities (the default,
	// "") or alerts (POST /api/v1/alerts/, in plain paging only: the
	// alerts API has no scan mode; a PageSize over 100, a scan size for
	// activities, is 100 for alerts).
	Data recovery.DataType
	// Window is the recovery window, on the activities' time By (--by:
	// when they happened, or when MCAS saved them; alerts have one time,
	// their date, and By created is a usage error for them); Filter the
	// original agent's filter of that data type.
	Window recovery.Window
	By     recovery.TimeField
	Filter recovery.Filter
	// Paging selects scan mode, plain paging, or the automatic choice.
	Paging Paging
	// Logger receives retry reasons and mode changes; nil discards them.
	// The token never reaches it.
	Logger *slog.Logger

	// RetryInitial and RetryMax bound the exponential backoff between
	// retries (defaults 1s and 1m); tests shorten them.
	RetryInitial, RetryMax time.Duration
	// RequestTimeout bounds one request, answer included (default 2m).
	RequestTimeout time.Duration
	// TLSConfig overrides the TLS settings of the API connection (tests
	// trust the emulator's certificate with it); nil: system roots.
	TLSConfig *tls.Config
	// Redactor hides secrets in every error and log line that shows what
	// the API sent; New adds the token to it. Share it with whatever else
	// shows or stores errors of the run (the checkpoint's last error).
	// Nil: a Redactor of the Source's own.
	Redactor *recovery.Redactor
	// LeaveRaw leaves Activity.Raw, the text of each activity, out of the
	// pages: for a reader of the decoded fields only (the CEF format, a
	// count, a list of ids). A page, one a scan lane, then holds no copy
	// of its activities' text.
	LeaveRaw bool
}

// Source reads a window's activities from the MCAS activities API. It
// implements recovery.Source. Its methods, and those of the sources Over
// returns, may run side by side (scan lanes), all spending one Budget.
type Source struct {
	endpoint   *url.URL
	auth       authorizer
	proxy      *url.URL
	client     *http.Client
	budget     *Budget
	rec        records                    // the data type read: activities or alerts
	scope      recovery.Scope             // the recovery's window, on its time
	filter     map[string]json.RawMessage // the operator's filter, without date or created
	paging     Paging
	pageSize   int // Config.PageSize, for OpenData
	scanLimit  int
	plainLimit int
	timeout    time.Duration
	retryMin   time.Duration
	retryMax   time.Duration
	maxAnswer  int64 // bytes of one answer
	leaveRaw   bool  // Config.LeaveRaw
	log        *slog.Logger
	redactor   *recovery.Redactor

	// answered is set by the first answer of any kind: until then, a
	// refused connection means a wrong address rather than an outage,
	// and a TLS handshake answered in plain text a wrong scheme or port.
	answered atomic.Bool
	// valid is set by the first answer accepted as the activities API's:
	// until then, a web page or a 501 means --source is not the API; after
	// it, a gateway's error page in front of the API, retried.
	valid atomic.Bool
	// badTotal is set once a total that is not a count was logged.
	badTotal atomic.Bool
	// pageSeen is the most activities a scan answer held (notePageSize):
	// the page size the API actually gives, which may be less than the
	// limit asked for; 0 before any answer showed it.
	pageSeen atomic.Int64

	mu       sync.Mutex
	fellBack bool // auto paging switched to plain for this run
	// chain is what Fetch remembers of the pages it followed; each scope
	// read through Over has its own.
	chain *chain
}

// New checks cfg and builds a Source. It makes no request. Errors are
// *recovery.Error of kind ErrUsage (source URL, window, page size),
// ErrInvalidToken (missing or malformed token) or ErrInvalidProxy (a
// proxy that does not parse).
func New(cfg Config) (*Source, error) {
	endpoint, err := ParseSource(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	rec, err := recordsOf(cfg.Data)
	if err != nil {
		return nil, err
	}
	endpoint.Path = strings.TrimSuffix(endpoint.Path, endpointPath) + rec.path
	s := &Source{
		endpoint:  endpoint,
		rec:       rec,
		paging:    cfg.Paging,
		timeout:   orDefault(cfg.RequestTimeout, DefaultRequestTimeout),
		retryMin:  orDefault(cfg.RetryInitial, DefaultRetryInitial),
		retryMax:  orDefault(cfg.RetryMax, DefaultRetryMax),
		maxAnswer: MaxAnswer,
		leaveRaw:  cfg.LeaveRaw,
		log:       cfg.Logger,
		redactor:  cfg.Redactor,
		chain:     newChain(),
	}
	if s.redactor == nil {
		s.redactor = recovery.NewRedactor()
	}
	s.redactor.Add(cfg.Token.Reveal())
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.retryMax < s.retryMin {
		s.retryMax = s.retryMin
	}
	if err := s.setData(recovery.Scope{Window: cfg.Window, By: cfg.By}, cfg.Filter); err != nil {
		return nil, err
	}
	if err := s.setPageSize(cfg.PageSize); err != nil {
		return nil, err
	}
	if cfg.RateLimit < 0 || cfg.MaxCriticalErrors < 0 {
		return nil, recovery.Problemf(recovery.ErrUsage, "give a positive number", "--rate-limit %d and --max-critical-errors %d must not be negative", cfg.RateLimit, cfg.MaxCriticalErrors)
	}
	s.budget = newBudget(orDefault(cfg.RateLimit, DefaultRateLimit), orDefault(cfg.MaxCriticalErrors, DefaultMaxCriticalErrors))
	if cfg.Identity == nil {
		if s.auth, err = newStaticToken(cfg.Token); err != nil {
			return nil, err
		}
	}
	if s.proxy, err = recovery.ParseProxy(cfg.Proxy); err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if s.proxy != nil {
		transport.Proxy = http.ProxyURL(s.proxy)
	}
	if cfg.TLSConfig != nil {
		transport.TLSClientConfig = cfg.TLSConfig.Clone()
	}
	s.client = newClient(transport)
	if id := cfg.Identity; id != nil {
		tokens := s.client
		if id.Managed() {
			// The machine's token endpoint (IMDS, App Service) is local to
			// it: a proxy cannot reach it, and IMDS refuses proxied requests.
			direct := transport.Clone()
			direct.Proxy = nil
			tokens = newClient(direct)
		}
		s.auth = &entraAuth{token: entra.NewToken(id, Resource, tokens, s.timeout, s.log, s.redactor), network: s.networkFailure}
	}
	return s, nil
}

func newClient(t http.RoundTripper) *http.Client {
	return &http.Client{
		Transport: t,
		// A redirect means --source is not the API (a portal login page,
		// say); following it would also drop the Authorization header.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// setData sets what the Source reads: scope (its window and time) and
// the filter of its data type.
func (s *Source) setData(scope recovery.Scope, filter recovery.Filter) error {
	if err := scope.Window.Validate(); err != nil {
		return recovery.Problemf(recovery.ErrUsage, "give a window whose end is after its start", "%w", err)
	}
	if s.rec.alerts() && scope.By == recovery.ByCreated {
		return errAlertsByCreated()
	}
	s.scope = scope
	if f := filter.JSON(); f != "" {
		if err := json.Unmarshal([]byte(f), &s.filter); err != nil {
			return recovery.Problemf(recovery.ErrUsage, s.rec.remedyFilter, "the filter is not a JSON object: %w", err)
		}
	}
	return nil
}

func (s *Source) setPageSize(n int) error {
	s.pageSize = n
	if s.rec.alerts() {
		return s.setAlertPageSize(n)
	}
	switch {
	case n == 0:
		s.scanLimit, s.plainLimit = DefaultPageSize, PlainMaxLimit
		if s.paging == PagingPlain {
			s.scanLimit = 0
		}
	case n >= 1 && n <= PlainMaxLimit && s.paging != PagingScan:
		s.scanLimit, s.plainLimit = 0, n // too small for scan mode
	case n >= ScanMinLimit && n <= ScanMaxLimit && s.paging != PagingPlain:
		s.scanLimit, s.plainLimit = n, PlainMaxLimit
	default:
		return recovery.Problemf(recovery.ErrUsage, remedyPaging, "--page-size %d does not fit %s paging", n, s.paging)
	}
	return nil
}

// Endpoint is the URL every request goes to.
func (s *Source) Endpoint() string { return s.endpoint.String() }

// position is the Source's cursor token: the scan continuation, or the
// plain-paging cursor (the millisecond of the scope's time reached and the
// ids already sent at it). Its keys are those of the cursors checkpoints
// held before cursors were opaque, so those resume as they are.
type position struct {
	NextFilters json.RawMessage `json:"next_filters,omitempty"`
	// Reached is, in scan mode, the time (on the scope's field) of the
	// last activity listed before the continuation: where the scan stands,
	// which the next page may not end before. 0: not known (a cursor of
	// an older checkpoint, or no activity listed yet).
	Reached int64    `json:"reached,omitempty"`
	At      int64    `json:"timestamp,omitempty"`
	SeenIDs []string `json:"seen_ids,omitempty"`
}

func decodePosition(c recovery.Cursor) (position, error) {
	var p position
	err := c.Decode(&p, "the API")
	return p, err
}

// cursor is p as a recovery.Cursor. It has no text: a continuation means
// nothing to people, and the pass shows the time it reached instead.
func (p position) cursor() recovery.Cursor { return recovery.NewCursor(p, "") }

// Fetch returns the page of activities of the recovery's window that
// starts at cur (see recovery.Source). A cursor made by a scan continues
// it exactly where it stopped; one made by plain paging continues after
// the ids it lists at its millisecond (of the window's time: date or
// created); the zero cursor starts the window in the configured mode.
// Errors are *recovery.Error (ErrInvalidToken, ErrInvalidProxy,
// ErrTooManyCriticalErrors, ErrUsage for a request the API refuses,
// ErrCheckpointUnavailable for a cursor this source did not make) or the
// context's error.
func (s *Source) Fetch(ctx context.Context, cur recovery.Cursor) (recovery.Page, error) {
	return s.fetch(ctx, s.scope, s.chain, cur)
}

// Over returns the source of scope (recovery.Scoped): another window (a
// scan lane's slice), or the recovery's with a range of created. It shares
// this Source's connection, Budget and paging mode; its calls may run side
// by side with this Source's and other scopes'. It remembers the pages it
// followed on its own (a chain): give each reader of a pass its own.
func (s *Source) Over(scope recovery.Scope) recovery.Source {
	return &scoped{src: s, scope: scope, chain: newChain()}
}

// scoped is a Source reading a scope of its own.
type scoped struct {
	src   *Source
	scope recovery.Scope
	chain *chain
}

func (v *scoped) Fetch(ctx context.Context, cur recovery.Cursor) (recovery.Page, error) {
	return v.src.fetch(ctx, v.scope, v.chain, cur)
}

// Count is Source.Count over the scope (recovery.Counter).
func (v *scoped) Count(ctx context.Context, w recovery.Window) (recovery.Tally, error) {
	return v.src.tally(ctx, v.scope.Within(w))
}

// The optional capabilities the replay loop finds by type assertion.
var (
	_ recovery.Scoped       = (*Source)(nil)
	_ recovery.Counter      = (*Source)(nil)
	_ recovery.Counter      = (*scoped)(nil)
	_ recovery.LaneSizer    = (*Source)(nil)
	_ recovery.Prober       = (*Source)(nil)
	_ recovery.Credentialed = (*Source)(nil)
)

// fetch is Fetch over scope, following ch.
func (s *Source) fetch(ctx context.Context, scope recovery.Scope, ch *chain, c recovery.Cursor) (recovery.Page, error) {
	if s.rec.alerts() {
		return s.fetchAlerts(ctx, scope, ch, c)
	}
	cur, err := decodePosition(c)
	if err != nil {
		return recovery.Page{}, err
	}
	switch {
	case len(cur.NextFilters) > 0:
		return s.fetchScan(ctx, scope, ch, c, cur)
	case cur.At != 0 || len(cur.SeenIDs) > 0:
		return s.fetchPlain(ctx, scope, ch, c, cur)
	case s.usePlain():
		return s.fetchPlain(ctx, scope, ch, c, cur)
	}
	page, err := s.fetchScan(ctx, scope, ch, c, cur)
	if err == nil || s.paging != PagingAuto || !isRefused(err) {
		return page, err
	}
	// A 400 to the first scan request: if the same filters work in plain
	// paging, the API refused scan mode itself, and this run pages by date
	// cursor from here on. If they do not, the filter is at fault and
	// plain paging's refusal is the answer.
	plain, perr := s.fetchPlain(ctx, scope, ch, c, cur)
	plain.Requests += page.Requests
	if perr == nil {
		s.log.Warn("the API refused scan mode; paging by date cursor instead",
			"endpoint", s.Endpoint(), "page_size", s.plainLimit, "answer", err.Error())
		s.mu.Lock()
		s.fellBack = true
		s.mu.Unlock()
	}
	return plain, perr
}

func (s *Source) usePlain() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.scanLimit == 0 || s.fellBack
}

// filters is the operator's filter ANDed with scope, from the time from
// on (on the scope's field: where plain paging resumes). The API documents
// gte and lte, not lt, for date: times are whole milliseconds, so lte
// End-1 is the half-open window's end. created takes lt, so its bounds are
// the half-open ones as they are.
func (s *Source) filters(scope recovery.Scope, from int64) (json.RawMessage, error) {
	m := make(map[string]json.RawMessage, len(s.filter)+2)
	for k, v := range s.filter {
		m[k] = v
	}
	saved := bounds{GTE: scope.SavedFrom, LT: scope.SavedBefore}
	w := scope.Window
	var err error
	if scope.By == recovery.ByCreated {
		saved.GTE = max(saved.GTE, w.Start, from)
		saved.LT = min(cmp.Or(saved.LT, w.End), w.End)
	} else if m["date"], err = json.Marshal(bounds{GTE: max(w.Start, from), LTE: w.End - 1}); err != nil {
		return nil, err
	}
	if saved != (bounds{}) {
		if m["created"], err = json.Marshal(saved); err != nil {
			return nil, err
		}
	}
	return json.Marshal(m) // sorted keys: the same scope and filter give the same bytes
}

// bounds are the operators of a time filter; zero ones are left out.
type bounds struct {
	GTE int64 `json:"gte,omitempty"`
	LT  int64 `json:"lt,omitempty"`
	LTE int64 `json:"lte,omitempty"`
}

// scanRequest and plainRequest are the bodies of the two paging modes.
type scanRequest struct {
	Filters       json.RawMessage `json:"filters"`
	SortField     string          `json:"sortField"`
	SortDirection string          `json:"sortDirection"`
	IsScan        bool            `json:"isScan"`
	Limit         int             `json:"limit"`
}

type plainRequest struct {
	Filters       json.RawMessage `json:"filters"`
	SortField     string          `json:"sortField"`
	SortDirection string          `json:"sortDirection"`
	Skip          int             `json:"skip"`
	Limit         int             `json:"limit"`
}

// fetchScan fetches the scan page at cur (c as decoded), following ch.
func (s *Source) fetchScan(ctx context.Context, scope recovery.Scope, ch *chain, c recovery.Cursor, cur position) (recovery.Page, error) {
	filters := cur.NextFilters
	if len(filters) == 0 {
		var err error
		if filters, err = s.filters(scope, scope.Window.Start); err != nil {
			return recovery.Page{}, err
		}
	}
	ch.begin(c.Token, filters)
	limit := s.scanLimit
	if limit == 0 { // a scan cursor resumed with a plain page size
		limit = ScanMinLimit
	}
	body, err := json.Marshal(scanRequest{Filters: filters, SortField: scope.By.String(), SortDirection: "asc", IsScan: true, Limit: limit})
	if err != nil {
		return recovery.Page{}, err
	}
	ans, requests, err := s.post(ctx, call{body: body, scan: true, limit: limit, filters: filters, by: scope.By, reached: cur.Reached, chain: ch})
	page := recovery.Page{Requests: requests}
	if err != nil {
		return page, err
	}
	s.logRepeats(ans)
	// A continuation made for a wider scope (a lane whose slice was cut
	// short while it scanned) lists past the slice's end: that is no fault
	// of the API's. Filters made for this scope are.
	page.Activities = s.inScope(scope, ans.activities, len(cur.NextFilters) == 0)
	reached := max(cur.Reached, ans.reached(scope.By))
	// The answers are sorted on the scope's time, oldest first: one that
	// reaches the scope's end lists the last of it.
	if !ans.hasNext() || reached >= scope.Window.End {
		page.Last, page.Progress = true, 1
		page.Next = cur.cursor()
		ch.advance(page.Next.Token, nil, nil, true)
		return page, nil
	}
	next := position{NextFilters: ans.NextQueryFilters, Reached: reached}
	page.Next = next.cursor()
	page.Progress = scope.Window.Fraction(reached)
	ch.advance(page.Next.Token, ans.NextQueryFilters, ans.ids(), len(ans.activities) > 0)
	return page, nil
}

// fetchPlain fetches the plain page at cur (c as decoded), following ch.
func (s *Source) fetchPlain(ctx context.Context, scope recovery.Scope, ch *chain, c recovery.Cursor, cur position) (recovery.Page, error) {
	ch.begin(c.Token, nil)
	by := scope.By
	gte, skip := scope.Window.Start, 0
	if cur.At != 0 || len(cur.SeenIDs) > 0 {
		gte, skip = max(cur.At, scope.Window.Start), len(cur.SeenIDs)
	}
	if gte >= scope.Window.End {
		// A cursor at or past the end of a scope narrowed since it was
		// made: nothing of the scope is left, and no request is needed.
		return recovery.Page{Next: c, Last: true, Progress: 1}, nil
	}
	limit := s.plainLimit
	if skip+limit > PlainMaxWindow {
		limit = PlainMaxWindow - skip
	}
	if limit <= 0 {
		return recovery.Page{}, recovery.Problemf(recovery.ErrInternal, s.rec.remedyCrowded,
			"more than %d %s share the millisecond %s, which plain paging (skip+limit ≤ %d) cannot page through",
			PlainMaxWindow-1, s.rec.many, recovery.FormatMillis(cur.At), PlainMaxWindow)
	}
	filters, err := s.filters(scope, gte)
	if err != nil {
		return recovery.Page{}, err
	}
	body, err := json.Marshal(plainRequest{Filters: filters, SortField: by.String(), SortDirection: "asc", Skip: skip, Limit: limit})
	if err != nil {
		return recovery.Page{}, err
	}
	ans, requests, err := s.post(ctx, call{body: body, limit: limit, by: by, gte: gte, chain: ch})
	page := recovery.Page{Requests: requests}
	if err != nil {
		return page, err
	}
	all := ans.listed
	page.Last = ans.lastPlainPage(limit)

	// The records at cur.At come first, and "skip" passes over
	// those already delivered. One of them listed again means the API's
	// order within that millisecond changed: the skipped records then
	// hold one never delivered, so paging must stop, not go on without it.
	seen := make(map[string]bool, len(cur.SeenIDs))
	for _, id := range cur.SeenIDs {
		seen[id] = true
	}
	for _, a := range all {
		if by.Of(a) == gte && seen[a.ID] {
			return page, recovery.Problemf(recovery.ErrInternal, s.rec.remedyCrowded,
				"the API answered %s with %s %s, already delivered at %s: its order within one millisecond is not stable, so plain paging cannot go on without losing %s",
				s.Endpoint(), s.rec.one, s.show(a.ID), recovery.FormatMillis(gte), s.rec.many)
		}
	}
	s.logRepeats(ans)
	page.Activities = s.inScope(scope, ans.activities, true)
	// Sorted on the scope's time, oldest first: a page that reaches the
	// scope's end lists the last of it.
	if page.Last = page.Last || by.Of(all[len(all)-1]) >= scope.Window.End; page.Last {
		page.Progress = 1
		page.Next = cur.cursor()
		ch.advance(page.Next.Token, nil, nil, true)
		return page, nil
	}
	// The next cursor: the last millisecond listed, and every id listed
	// at it (all of them, so skip stays the count of records before).
	last := by.Of(all[len(all)-1])
	var ids []string
	if last == gte {
		ids = append(ids, cur.SeenIDs...)
	}
	for _, a := range all {
		if by.Of(a) == last {
			ids = append(ids, a.ID)
		}
	}
	page.Next = position{At: last, SeenIDs: ids}.cursor()
	page.Progress = scope.Window.Fraction(last)
	ch.advance(page.Next.Token, nil, ans.ids(), true)
	return page, nil
}

// logRepeats says that the API listed activities again, which check
// dropped.
func (s *Source) logRepeats(ans *answer) {
	if ans.repeated > 0 {
		s.log.Warn("the API listed "+s.rec.many+" again (within a page, or from the page before); dropped the repeats", "count", ans.repeated)
	}
}

// inScope drops what lies outside scope: activities outside the window
// (or the range of created) asked for, which the API should not have
// sent; and activities past the scope's end, which a continuation made
// for a wider scope lists (asked says the request's filters were made for
// scope: then those are the API's fault too).
func (s *Source) inScope(scope recovery.Scope, acts []recovery.Activity, asked bool) []recovery.Activity {
	kept := acts[:0:0]
	past := 0
	for _, a := range acts {
		switch {
		case scope.Contains(a):
			kept = append(kept, a)
		case !asked && scope.By.Of(a) >= scope.Window.End:
			past++
		}
	}
	if n := len(acts) - len(kept) - past; n > 0 {
		s.log.Warn("the API sent "+s.rec.many+" outside the window; dropped them", "count", n, "window", scope.String())
	}
	return kept
}

func compact(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return b
	}
	return out.Bytes()
}

// Probe makes one cheap request (one activity of the window, plain
// paging) to check the token, the proxy and the route to the API, for a
// doctor command. It does not retry and does not count toward
// MaxCriticalErrors; it shares the rate limit. A nil error means the API
// accepted the token.
func (s *Source) Probe(ctx context.Context) error {
	c, err := s.singleActivity(s.scope)
	if err != nil {
		return err
	}
	if err := s.budget.wait(ctx); err != nil {
		return fmt.Errorf("probe %s: %w", s.Endpoint(), err)
	}
	header, err := s.auth.authorization(ctx)
	if err == nil {
		_, err = s.once(ctx, header, c)
	}
	return s.probeError(err)
}

// probeError is the error of a single try, without retry: a permanent
// failure as it is, a retryable one with its reason.
func (s *Source) probeError(err error) error {
	if err == nil {
		return nil
	}
	var f *failure
	if asFailure(err, &f) {
		if f.permanent != nil {
			return f.permanent
		}
		return fmt.Errorf("probe %s: %s: %w", s.Endpoint(), f.reason, f.cause)
	}
	return fmt.Errorf("probe %s: %w", s.Endpoint(), err)
}

// Credential describes how the Source authenticates, without any secret:
// the kind of token given by hand, or the Entra ID identity.
func (s *Source) Credential() string { return s.auth.String() }

// Authorize obtains an access token for the Source's Identity, without
// any API request, and tells how long it is valid; it does not retry. A
// token given by hand is not checked here: it returns 0 and nil.
func (s *Source) Authorize(ctx context.Context) (time.Duration, error) {
	e, ok := s.auth.(*entraAuth)
	if !ok {
		return 0, nil
	}
	d, err := e.validFor(ctx)
	return d, s.probeError(err)
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
