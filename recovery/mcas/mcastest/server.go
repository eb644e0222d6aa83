package mcastest

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"siem-recovery/recovery"
)

// DefaultToken is the legacy API token the emulator accepts when
// Options.Token is empty: 64 characters of the legacy alphabet.
const DefaultToken = "mcastest-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS"

// Options configure a Server. The zero value is a plain-HTTP server with
// no activities, DefaultToken, scan mode supported and no throttling.
type Options struct {
	// Token is the one token the server accepts. A JWT (three base64url
	// parts) must come as "Bearer", anything else as "Token".
	Token string
	// Activities are the tenant's activities, one JSON object each with at
	// least "_id" and a numeric "timestamp"; "created" (else "createdRaw",
	// else the timestamp) is when MCAS saved it. Add saves more later.
	Activities []json.RawMessage
	// IndexDelay is how long after it was saved ("created") an activity
	// is listed: MCAS indexes what it saves before a query finds it. The
	// server's clock (Now) decides; Advance moves it. Zero lists every
	// activity at once, whatever its created time.
	IndexDelay time.Duration
	// TLS serves HTTPS with httptest's self-signed certificate (for
	// 127.0.0.1 and example.com); see TLSConfig and CAPEM.
	TLS bool
	// NoScan refuses "isScan": true with 400, like an API without scan
	// support.
	NoScan bool
	// RequestsPerMinute is the tenant's request budget per BudgetPeriod;
	// past it the server answers 429. Zero means no budget.
	RequestsPerMinute int
	// BudgetPeriod is the length of the budget window; default one minute.
	// Tests shorten it.
	BudgetPeriod time.Duration
	// UnstableTies makes plain paging list the first activity of each
	// millisecond after the others on every second plain request: an API
	// whose order within a millisecond is not stable.
	UnstableTies bool
	// Generated adds Generate(Generated)'s activities (when its Count is
	// not zero) without holding them: each keeps its times and id, and its
	// JSON is made again whenever an answer or a filter needs it, so a
	// benchmark serves 200,000 activities in a few MiB.
	Generated GenerateOptions
	// AnswerTime holds back every answer to a listing or a count this
	// long, as a real tenant takes seconds to answer a page of several
	// MB: what scan lanes are for. Throttled (429) and refused (401)
	// requests answer at once; an injected Delay comes on top.
	AnswerTime time.Duration
	// TotalCap stops every activities answer's "total" at this many, with
	// "moreThanTotal": true when the request matches more: the API's total
	// is an estimate, a lower bound where it says so. Zero counts all.
	TotalCap int
	// AnswerCap makes every activities answer list at most this many
	// activities, whatever the limit asked for, with "hasNext" and a
	// continuation as usual: the 100-item cap Microsoft documents for
	// answers to API-token requests. Zero lists up to the limit.
	AnswerCap int

	// Alerts are the tenant's alerts, listed by POST /api/v1/alerts/
	// (alerts.go), one JSON object each with at least "_id" and a numeric
	// "timestamp"; AddAlerts saves more later.
	Alerts []json.RawMessage
	// GeneratedAlerts adds GenerateAlerts(GeneratedAlerts)'s alerts (when
	// its Count is not zero) without holding them, as Generated does for
	// activities.
	GeneratedAlerts GenerateOptions
	// AlertsTotalLimit bounds the total of an alerts answer: past it the
	// answer says "total": AlertsTotalLimit, "moreThanTotal": true, as the
	// API does when it stops counting. Zero: the exact total always.
	AlertsTotalLimit int
}

// Fault is an answer the server gives instead of the normal one.
type Fault struct {
	// Status is the HTTP status to answer (500, 502, 503, 429, …), with a
	// small JSON error body. Zero answers normally, after Delay, unless
	// Malformed is set.
	Status int
	// RetryAfter is the Retry-After header sent with Status ("" for none).
	RetryAfter string
	// Delay holds the answer back this long (or until the client gives up).
	Delay time.Duration
	// Malformed answers 200 with a JSON body cut in the middle.
	Malformed bool
	// Body replaces the small JSON error body of Status (an API message
	// with a newline or an escape sequence, say).
	Body string
	// Location is the Location header sent with Status (a redirect).
	Location string
	// ContentType is the Content-Type of Body (default application/json):
	// text/html for a web page.
	ContentType string

	// The faults below answer 200 with a hostile version of the normal
	// answer.

	// RepeatFilters makes a scan answer say "hasNext": true with the
	// request's own filters as nextQueryFilters, while it carries the
	// page: a client that follows it lists the same page forever.
	RepeatFilters bool
	// Overfill appends this many activities to the answer's "data", more
	// than the limit asked for. They are made while the answer is written
	// and never held whole, so a test can send millions; the answer stops
	// when the client stops reading.
	Overfill int
	// IgnoreStart lists as if the request's time filters (date, created)
	// had no lower bound, so that a page can lie before the time asked for
	// (and before the window).
	IgnoreStart bool
	// Rewind makes a scan answer carry its page with "hasNext": true and,
	// as nextQueryFilters, the filters of the last scan request before it
	// whose filters were not its own: a continuation pointing back to an
	// earlier page, which a client that follows it lists again.
	Rewind bool
	// EmptyNext answers a scan request with no activity, "hasNext": true
	// and nextQueryFilters that are new every time (the request's with a
	// counter under a private key the server ignores): a client that
	// follows it asks forever.
	EmptyNext bool
	// Repeat makes an answer list its first activity twice and, in scan
	// mode, begin with the last activity of the scan answer before it
	// again; it lists that many fewer activities otherwise, so that it
	// stays within the limit asked for.
	Repeat bool

	// Pad makes each activity of a 200 answer this many bytes larger: a
	// member PadField ("padding" when empty) of that many x's, first in
	// the object (where a key given twice counts, for the API's readers).
	// It is made as it is written, never held: one activity of 120 MiB,
	// or, with Gzip, a bomb of a GiB in a MiB on the wire, costs the
	// server nothing.
	Pad      int64
	PadField string
	// Gzip sends a 200 answer gzipped, with "Content-Encoding: gzip",
	// whatever the request asked for.
	Gzip bool
	// ContentEncoding sends a 200 answer (not encoded) with this
	// Content-Encoding: one the client did not ask for.
	ContentEncoding string
	// Total replaces the answer's "total" with this JSON (a string, a
	// float, a negative number); NoTotal leaves it out.
	Total   string
	NoTotal bool
	// LongerBy announces a Content-Length this many bytes longer than the
	// answer; Stall then holds the connection open until the client gives
	// up, instead of closing it after the answer.
	LongerBy int64
	Stall    bool
}

type faultRule struct {
	fault     Fault
	remaining int // FailNext, FailFrom: how many more requests it applies to
	every     int // FailEvery: applies to request numbers divisible by it
	from      int // FailFrom: the first request number it applies to
}

// Stats counts the requests that reached the activities or the alerts
// endpoint (with or without its trailing slash), by how they were
// answered.
type Stats struct {
	Requests     int // every request, whatever the answer, to either endpoint
	Served       int // answered 200 with activities or alerts (Malformed faults excluded)
	Throttled    int // answered 429, by the budget or an injected fault
	Faults       int // answered with an injected fault (including 429s and slow answers)
	Unauthorized int // answered 401
	Expired      int // answered 401 for an access token given to AcceptToken that had expired
	BadRequests  int // answered 400
	NoSlash      int // POST /api/v1/activities (or /api/v1/alerts) without the trailing slash
	Activities   int // activities sent in all 200 answers
	// AlertRequests counts the requests (of Requests) to the alerts
	// endpoint, and Alerts the alerts sent in their 200 answers.
	AlertRequests int
	Alerts        int
	// MaxInFlight is the most requests the server was answering at once:
	// 1 for a client that waits for each answer before the next request.
	MaxInFlight int
}

// Request is one request the server received, as recorded for assertions.
type Request struct {
	At       time.Time
	Path     string
	Auth     string // the Authorization scheme ("Token", "Bearer"), never the secret
	Via      string // the Via header a proxy adds to plain-HTTP requests
	Body     json.RawMessage
	Status   int
	Returned int // activities in the answer
}

// Server is a running emulator. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL to give the client (the --source), e.g.
	// http://127.0.0.1:41234, without a trailing slash.
	URL string

	srv        *httptest.Server
	token      string
	bearer     bool
	noScan     bool
	unstable   bool
	rpm        int
	period     time.Duration
	answerTime time.Duration
	indexDelay time.Duration
	totalCap   int
	answerCap  int

	data sync.RWMutex
	// sorted holds the records twice: sorted[fieldDate] by (ts, id),
	// sorted[fieldCreated] by (created, id). alerts holds the alerts by
	// (ts, id).
	sorted      [2][]record
	alerts      []record
	alertsLimit int           // Options.AlertsTotalLimit
	ahead       time.Duration // Advance: the server's clock is this far ahead

	plainCalls atomic.Int64

	mu          sync.Mutex
	faults      []*faultRule
	stats       Stats
	inFlight    int
	log         []Request
	budgetStart time.Time
	budgetUsed  int
	accepted    map[string]time.Time // AcceptToken: bearer token → expiry
	// scans are the filters of the scan requests answered, the latest
	// last (a few: Rewind goes back one page); lastListed is the last
	// activity of the latest scan answer (Repeat).
	scans      []json.RawMessage
	lastListed *record
	lastBefore *record // the last activity of the scan answer before the latest
	emptyPages int     // EmptyNext's counter
}

type record struct {
	ts      int64 // date
	created int64
	id      string
	raw     json.RawMessage // nil for a generated record: see json
	seq     int             // a generated record's number, and when it was saved
	saved   int64           // (GenerateOptions.SavedAt)
	alert   bool            // a generated alert, not an activity
}

// json is the record as the API sends it: as given, or made again.
func (r record) json() json.RawMessage {
	if r.raw != nil {
		return r.raw
	}
	if r.alert {
		return alert(r.seq, r.ts)
	}
	return activity(r.seq, r.ts, r.saved)
}

// key is the record's time on field f.
func (r record) key(f field) int64 {
	if f == fieldCreated {
		return r.created
	}
	return r.ts
}

// less orders records on field f, ties broken by _id so the order is
// stable.
func (r record) less(o record, f field) bool {
	if r.key(f) != o.key(f) {
		return r.key(f) < o.key(f)
	}
	return r.id < o.id
}

// New starts an emulator on 127.0.0.1 holding opts.Activities; it is
// closed when the test ends. An activity without "_id" or a numeric
// "timestamp" fails the test.
func New(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s := &Server{
		token:       opts.Token,
		noScan:      opts.NoScan,
		unstable:    opts.UnstableTies,
		rpm:         opts.RequestsPerMinute,
		period:      opts.BudgetPeriod,
		indexDelay:  opts.IndexDelay,
		answerTime:  opts.AnswerTime,
		totalCap:    opts.TotalCap,
		answerCap:   opts.AnswerCap,
		alertsLimit: opts.AlertsTotalLimit,
	}
	if s.token == "" {
		s.token = DefaultToken
	}
	s.bearer = IsJWT(s.token)
	if s.period <= 0 {
		s.period = time.Minute
	}
	s.Add(tb, opts.Activities...)
	var made []record
	generate(opts.Generated, func(i int, ts int64) {
		a, err := recovery.ParseActivity(activity(i, ts, opts.Generated.SavedAt))
		if err != nil {
			tb.Fatalf("mcastest: generated activity %d: %v", i, err)
		}
		made = append(made, record{ts: ts, created: a.Created, id: a.ID, seq: i, saved: opts.Generated.SavedAt})
	})
	s.insert(made)
	s.AddAlerts(tb, opts.Alerts...)
	s.insertAlerts(generatedAlerts(tb, opts.GeneratedAlerts))

	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/activities/", s.serve)
	mux.HandleFunc("/api/v1/activities", s.serve)
	mux.HandleFunc("/api/v1/alerts/", s.serve)
	mux.HandleFunc("/api/v1/alerts", s.serve)
	if opts.TLS {
		s.srv = httptest.NewTLSServer(mux)
	} else {
		s.srv = httptest.NewServer(mux)
	}
	s.URL = s.srv.URL
	tb.Cleanup(s.Close)
	return s
}

// Add saves more activities, as MCAS does between two runs of a
// recovery: each is listed from its "created" time on (plus IndexDelay),
// at its place in the order of either field. An activity without "_id" or
// a numeric "timestamp" fails the test.
func (s *Server) Add(tb testing.TB, acts ...json.RawMessage) {
	tb.Helper()
	added := make([]record, 0, len(acts))
	for i, raw := range acts {
		a, err := recovery.ParseActivity(raw)
		if err != nil {
			tb.Fatalf("mcastest: activity %d: %v: %.200s", i, err, raw)
		}
		r := record{ts: a.Timestamp, created: a.Created, id: a.ID, raw: bytes.Clone(raw)}
		if r.created == 0 {
			r.created = r.ts
		}
		added = append(added, r)
	}
	s.insert(added)
}

// insert adds records at their place in the order of either field.
func (s *Server) insert(added []record) {
	s.data.Lock()
	defer s.data.Unlock()
	for _, f := range []field{fieldDate, fieldCreated} {
		// A new slice: a listing in progress keeps reading the old one.
		all := slices.Concat(s.sorted[f], added)
		sort.SliceStable(all, func(i, j int) bool { return all[i].less(all[j], f) })
		s.sorted[f] = all
	}
}

// Now is the server's clock: the machine's, moved on by Advance. It says
// which saved activities are indexed yet (Options.IndexDelay).
func (s *Server) Now() time.Time {
	s.data.RLock()
	defer s.data.RUnlock()
	return time.Now().Add(s.ahead)
}

// Advance moves the server's clock on by d: activities saved less than
// IndexDelay before now are listed once it has passed.
func (s *Server) Advance(d time.Duration) {
	s.data.Lock()
	defer s.data.Unlock()
	s.ahead += d
}

// Close stops the server; the test's cleanup does it too.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// Endpoint is the activities endpoint, with its trailing slash.
func (s *Server) Endpoint() string { return s.URL + "/api/v1/activities/" }

// Token is the token the server accepts.
func (s *Server) Token() string { return s.token }

// TLSConfig trusts the server's certificate (nil for a plain-HTTP server).
func (s *Server) TLSConfig() *tls.Config {
	cert := s.srv.Certificate()
	if cert == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{RootCAs: pool}
}

// CAPEM is the server's certificate in PEM, for a process that reads its
// trusted roots from a file (SSL_CERT_FILE); nil for plain HTTP.
func (s *Server) CAPEM() []byte {
	cert := s.srv.Certificate()
	if cert == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// Len is the number of activities the server holds, indexed or not.
func (s *Server) Len() int {
	s.data.RLock()
	defer s.data.RUnlock()
	return len(s.sorted[fieldDate])
}

// FailNext answers the next n requests with f.
func (s *Server) FailNext(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultRule{fault: f, remaining: n})
}

// FailEvery answers every k-th request (counting every request the server
// receives, from the first) with f, until ClearFaults.
func (s *Server) FailEvery(k int, f Fault) {
	if k <= 0 {
		panic("mcastest: FailEvery needs k > 0")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultRule{fault: f, every: k})
}

// FailFrom answers n requests with f, from request number seq on (the
// first request the server receives is 1): a fault that comes once a run
// has delivered its first pages, so that its checkpoint exists.
func (s *Server) FailFrom(seq, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultRule{fault: f, remaining: n, from: seq})
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// AcceptToken makes the server accept token as "Bearer" until expires,
// beside Options.Token: an access token an Entra ID emulator issued
// (entratest.Options.OnToken). Past expires it answers 401, and counts
// the request in Stats.Expired.
func (s *Server) AcceptToken(token string, expires time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.accepted == nil {
		s.accepted = map[string]time.Time{}
	}
	s.accepted[token] = expires
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Requests returns the requests received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// query is the request body of the activities API.
type query struct {
	Filters       json.RawMessage `json:"filters"`
	SortField     string          `json:"sortField"`
	SortDirection string          `json:"sortDirection"`
	Skip          *int            `json:"skip"`
	Limit         *int            `json:"limit"`
	IsScan        bool            `json:"isScan"`
	// fewer is how many activities fewer than the limit a page lists
	// (Fault.Repeat makes room for its repeats).
	fewer int
}

// serve answers a request to the activities or the alerts endpoint: the
// same auth, faults, budget and answer time, and the same request
// numbering (FailFrom, FailEvery) for both.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	alerts := strings.HasPrefix(r.URL.Path, "/api/v1/alerts")
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	req := Request{At: time.Now(), Path: r.URL.Path, Via: r.Header.Get("Via"), Body: json.RawMessage(body)}
	if scheme, _, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok {
		req.Auth = scheme
	}

	s.mu.Lock()
	s.stats.Requests++
	s.inFlight++
	s.stats.MaxInFlight = max(s.stats.MaxInFlight, s.inFlight)
	seq := s.stats.Requests
	noSlash := r.URL.Path == "/api/v1/activities" || r.URL.Path == "/api/v1/alerts"
	if alerts {
		s.stats.AlertRequests++
	}
	if noSlash {
		s.stats.NoSlash++
	}
	s.mu.Unlock()

	rec := &recorder{ResponseWriter: w}
	defer func() {
		req.Status = rec.status
		req.Returned = rec.returned
		s.mu.Lock()
		defer s.mu.Unlock()
		s.inFlight--
		s.log = append(s.log, req)
		switch {
		case rec.status == http.StatusOK && !rec.malformed:
			s.stats.Served++
			if alerts {
				s.stats.Alerts += rec.returned
			} else {
				s.stats.Activities += rec.returned
			}
		case rec.status == http.StatusTooManyRequests:
			s.stats.Throttled++
		case rec.status == http.StatusUnauthorized:
			s.stats.Unauthorized++
		case rec.status == http.StatusBadRequest:
			s.stats.BadRequests++
		}
	}()

	if r.Method != http.MethodPost {
		rec.error(http.StatusMethodNotAllowed, "use POST")
		return
	}
	if !s.authorized(r.Header.Get("Authorization")) {
		rec.error(http.StatusUnauthorized, "Invalid token")
		return
	}
	f, faulted := s.takeFault(seq)
	if faulted && !s.applyFault(rec, r, f) {
		return
	}
	if wait, ok := s.spend(); !ok {
		rec.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		rec.error(http.StatusTooManyRequests, "Request was throttled. Expected available in "+wait.Round(time.Second).String())
		return
	}

	if !s.hold(rec, r, s.answerTime) {
		return
	}
	var q query
	if noSlash {
		// The real API ignores the body of a request to the URL without
		// its trailing slash and lists with its defaults.
		q = query{}
	} else if err := json.Unmarshal(body, &q); err != nil {
		rec.error(http.StatusBadRequest, "the body is not JSON: "+err.Error())
		return
	}
	answerOf := s.answer
	if alerts {
		answerOf = s.answerAlerts
	}
	ans, status, msg := answerOf(q, f)
	if status != http.StatusOK {
		rec.error(status, msg)
		return
	}
	ans.pad, ans.padField = f.Pad, cmp.Or(f.PadField, "padding")
	ans.max = ans.total
	if s.totalCap > 0 {
		ans.max = s.totalCap
		if ans.total > s.totalCap {
			ans.total, ans.more = s.totalCap, true
		}
	}
	ans.totalJSON = strconv.Itoa(ans.total)
	switch {
	case f.NoTotal:
		ans.totalJSON = ""
	case f.Total != "":
		ans.totalJSON = f.Total
	}
	if f.LongerBy > 0 {
		s.lie(rec, r, ans, f)
		return
	}
	switch {
	case f.Gzip:
		rec.Header().Set("Content-Encoding", "gzip")
		gz, _ := gzip.NewWriterLevel(rec, gzip.BestSpeed)
		rec.json(ans, gz)
		_ = gz.Close()
	case f.ContentEncoding != "":
		rec.Header().Set("Content-Encoding", f.ContentEncoding)
		fallthrough
	default:
		rec.json(ans, rec)
	}
}

func (s *Server) authorized(header string) bool {
	scheme, secret, ok := strings.Cut(header, " ")
	if !ok {
		return false
	}
	if scheme == "Bearer" && secret != s.token {
		s.mu.Lock()
		defer s.mu.Unlock()
		expires, known := s.accepted[secret]
		live := known && time.Now().Before(expires)
		if known && !live {
			s.stats.Expired++
		}
		return live
	}
	if secret != s.token {
		return false
	}
	if s.bearer {
		return scheme == "Bearer"
	}
	return scheme == "Token"
}

// takeFault returns the fault that applies to request number seq, if any.
func (s *Server) takeFault(seq int) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.faults {
		switch {
		case r.remaining > 0 && seq >= r.from:
			r.remaining--
			if r.remaining == 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
			s.stats.Faults++
			return r.fault, true
		case r.every > 0 && seq%r.every == 0:
			s.stats.Faults++
			return r.fault, true
		}
	}
	return Fault{}, false
}

// applyFault answers with f; it reports whether the normal answer should
// follow (a fault that only delays).
func (s *Server) applyFault(rec *recorder, r *http.Request, f Fault) bool {
	if !s.hold(rec, r, f.Delay) {
		return false
	}
	switch {
	case f.Malformed:
		rec.malformed = true
		rec.Header().Set("Content-Type", "application/json")
		rec.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(rec, `{"total":3,"hasNext":true,"data":[{"_id":"1511373015679_167ae3eb","timest`)
		return false
	case f.Status != 0:
		if f.RetryAfter != "" {
			rec.Header().Set("Retry-After", f.RetryAfter)
		}
		if f.Location != "" {
			rec.Header().Set("Location", f.Location)
		}
		if f.Body != "" {
			rec.Header().Set("Content-Type", cmp.Or(f.ContentType, "application/json"))
			rec.WriteHeader(f.Status)
			_, _ = io.WriteString(rec, f.Body)
			return false
		}
		rec.error(f.Status, fmt.Sprintf("injected fault: %d %s", f.Status, http.StatusText(f.Status)))
		return false
	}
	return true
}

// hold holds the answer back for d; it reports false when the client
// went away meanwhile.
func (s *Server) hold(rec *recorder, r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		rec.status = 499 // the client went away; nothing can be written
		return false
	}
}

// spend takes one request from the budget; when none is left it reports
// how long until the window ends.
func (s *Server) spend() (time.Duration, bool) {
	if s.rpm <= 0 {
		return 0, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.budgetStart.IsZero() || !now.Before(s.budgetStart.Add(s.period)) {
		s.budgetStart, s.budgetUsed = now, 0
	}
	if s.budgetUsed >= s.rpm {
		return s.budgetStart.Add(s.period).Sub(now), false
	}
	s.budgetUsed++
	return 0, true
}

// answer is the body of a 200 answer: the activities are written as
// stored, without re-encoding.
type answer struct {
	total   int
	hasNext bool
	data    []record
	next    json.RawMessage // nil: no nextQueryFilters
	extra   int             // Fault.Overfill: activities made up after data
	// pad and padField are Fault.Pad and Fault.PadField.
	pad      int64
	padField string
	// totalJSON is written as "total"; "": none. With it (and always
	// in an alerts answer) come "max", the bound the count stops at (or
	// the total when there is none), and "moreThanTotal", more: whether
	// the total stopped there (Options.TotalCap, AlertsTotalLimit).
	totalJSON string
	// alerts: an alerts answer.
	alerts bool
	max    int
	more   bool
}

// lie writes ans with a Content-Length f.LongerBy bytes longer than it,
// then closes the connection, or with f.Stall holds it until the client
// goes away.
func (s *Server) lie(rec *recorder, r *http.Request, ans answer, f Fault) {
	var body bytes.Buffer
	probe := &recorder{ResponseWriter: httptest.NewRecorder()}
	probe.json(ans, &body)
	rec.returned = probe.returned
	rec.Header().Set("Content-Type", "application/json")
	rec.Header().Set("Content-Length", strconv.Itoa(body.Len()+int(f.LongerBy)))
	rec.WriteHeader(http.StatusOK)
	_, _ = rec.Write(body.Bytes())
	if fl, ok := rec.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
	if f.Stall {
		<-r.Context().Done()
		return
	}
	// Short of its length, the answer can only end with the connection.
	if hj, ok := rec.ResponseWriter.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
		}
	}
}

// answer lists what q asks for, as the hostile faults of f change it.
func (s *Server) answer(q query, f Fault) (answer, int, string) {
	var c conditions
	if err := c.parse(q.Filters); err != nil {
		return answer{}, http.StatusBadRequest, err.Error()
	}
	if f.IgnoreStart {
		c.date.lo, c.created.lo = math.MinInt64, math.MinInt64
	}
	if f.Repeat {
		q.fewer = 1
		if q.IsScan {
			q.fewer = 2
		}
	}
	if f.EmptyNext && q.IsScan {
		return s.emptyPage(q)
	}
	a, status, msg := s.list(q, c)
	if status != http.StatusOK {
		return a, status, msg
	}
	previous := s.scanned(q, a)
	switch {
	case f.RepeatFilters && q.IsScan:
		a.hasNext, a.next = true, q.Filters
	case f.Rewind && q.IsScan && previous != nil:
		a.hasNext, a.next = true, previous
	}
	if f.Repeat && len(a.data) > 0 {
		repeated := []record{a.data[0], a.data[0]}
		if q.IsScan && previous != nil && s.lastBefore != nil {
			repeated = append([]record{*s.lastBefore}, repeated...)
		}
		a.data = append(repeated, a.data[1:]...)
	}
	a.extra = f.Overfill
	return a, status, msg
}

// scanned records the scan answer a to q, and returns the filters of the
// last scan request before it whose filters were not q's (nil for none).
// It keeps the last activity the answer before it listed in lastBefore.
func (s *Server) scanned(q query, a answer) json.RawMessage {
	if !q.IsScan {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var previous json.RawMessage
	for i := len(s.scans) - 1; i >= 0; i-- {
		if !bytes.Equal(s.scans[i], q.Filters) {
			previous = s.scans[i]
			break
		}
	}
	if n := len(s.scans); n == 0 || !bytes.Equal(s.scans[n-1], q.Filters) {
		s.scans = append(s.scans[max(0, n-3):], bytes.Clone(q.Filters))
	}
	s.lastBefore = s.lastListed
	if len(a.data) > 0 {
		last := a.data[len(a.data)-1]
		s.lastListed = &last
	}
	return previous
}

// emptyPage is EmptyNext's answer to q: nothing, more to follow, and a
// continuation never given before.
func (s *Server) emptyPage(q query) (answer, int, string) {
	s.mu.Lock()
	s.emptyPages++
	n := s.emptyPages
	s.mu.Unlock()
	top := map[string]json.RawMessage{}
	if f := bytes.TrimSpace(q.Filters); len(f) > 0 && string(f) != "null" {
		if err := json.Unmarshal(f, &top); err != nil {
			return answer{}, http.StatusBadRequest, err.Error()
		}
	}
	top[emptyPageKey] = json.RawMessage(strconv.Itoa(n))
	next, err := marshalSorted(top)
	if err != nil {
		return answer{}, http.StatusInternalServerError, err.Error()
	}
	return answer{hasNext: true, next: next}, http.StatusOK, ""
}

func (s *Server) list(q query, c conditions) (answer, int, string) {
	by := fieldDate
	switch q.SortField {
	case "", "date":
	case "created":
		by = fieldCreated
	default:
		return answer{}, http.StatusBadRequest, fmt.Sprintf("sortField %q: use date or created", q.SortField)
	}
	desc, msg := q.descending()
	if msg != "" {
		return answer{}, http.StatusBadRequest, msg
	}
	if q.IsScan {
		if s.noScan {
			return answer{}, http.StatusBadRequest, "isScan is not supported"
		}
		return s.scan(q, c, by, desc)
	}
	return s.plain(q, c, by, desc)
}

// descending reads q's sortDirection: "desc" (the default) or "asc";
// msg says why any other is refused.
func (q query) descending() (desc bool, msg string) {
	switch q.SortDirection {
	case "", "desc":
		return true, ""
	case "asc":
		return false, ""
	}
	return false, fmt.Sprintf("sortDirection %q: use asc or desc", q.SortDirection)
}

// plainPage reads q's skip and limit for plain paging (limit ≤ 100,
// default 100, and skip+limit ≤ 5000); msg says why they are refused.
func (q query) plainPage() (skip, limit int, msg string) {
	skip, limit = 0, 100
	if q.Skip != nil {
		skip = *q.Skip
	}
	if q.Limit != nil {
		limit = *q.Limit
	}
	switch {
	case skip < 0 || limit < 0:
		msg = "skip and limit must not be negative"
	case limit > 100:
		msg = fmt.Sprintf("limit %d: at most 100 without isScan", limit)
	case skip+limit > 5000:
		msg = fmt.Sprintf("skip %d + limit %d: at most 5000 without isScan", skip, limit)
	}
	return skip, max(limit-q.fewer, 1), msg
}

func (s *Server) plain(q query, c conditions, by field, desc bool) (answer, int, string) {
	skip, limit, msg := q.plainPage()
	if msg != "" {
		return answer{}, http.StatusBadRequest, msg
	}
	if s.answerCap > 0 {
		limit = min(limit, s.answerCap)
	}
	var listed []record
	s.each(c, by, desc, func(r record) bool {
		listed = append(listed, r)
		return true
	})
	if s.unstable && s.plainCalls.Add(1)%2 == 0 {
		for i := 0; i < len(listed); {
			j := i
			for j < len(listed) && listed[j].key(by) == listed[i].key(by) {
				j++
			}
			// The first of the millisecond moves to its end.
			first := listed[i]
			copy(listed[i:j-1], listed[i+1:j])
			listed[j-1] = first
			i = j
		}
	}
	a := answer{total: len(listed)}
	if skip < len(listed) {
		a.data = listed[skip:min(skip+limit, len(listed))]
	}
	a.hasNext = skip+len(a.data) < a.total
	return a, http.StatusOK, ""
}

func (s *Server) scan(q query, c conditions, by field, desc bool) (answer, int, string) {
	limit := 500
	if q.Limit != nil {
		limit = *q.Limit
	}
	if limit < 500 || limit > 5000 {
		return answer{}, http.StatusBadRequest, fmt.Sprintf("limit %d: scan mode takes 500 to 5000", limit)
	}
	if q.Skip != nil && *q.Skip != 0 {
		return answer{}, http.StatusBadRequest, "skip is not supported with isScan"
	}
	limit -= q.fewer
	if s.answerCap > 0 {
		limit = min(limit, s.answerCap)
	}
	var a answer
	s.each(c, by, desc, func(r record) bool {
		a.data = append(a.data, r)
		return len(a.data) <= limit
	})
	a.total = len(a.data)
	if len(a.data) <= limit {
		return a, http.StatusOK, ""
	}
	// More follow: drop the records that share the page's final
	// millisecond, so the next query, which starts at that millisecond,
	// lists them whole.
	a.data = a.data[:limit]
	a.hasNext = true
	final := a.data[limit-1]
	k := sort.Search(len(a.data), func(i int) bool { return a.data[i].key(by) == final.key(by) })
	var after *scanAfter
	if k == 0 {
		after = &scanAfter{Timestamp: final.key(by), ID: final.id}
	} else {
		a.data = a.data[:k]
	}
	next, err := nextFilters(q.Filters, by, final.key(by), desc, after)
	if err != nil {
		return answer{}, http.StatusInternalServerError, err.Error()
	}
	a.next = next
	return a, http.StatusOK, ""
}

// each calls fn with the indexed records that match c, in the order of
// field by, until fn returns false.
func (s *Server) each(c conditions, by field, desc bool, fn func(record) bool) {
	s.data.RLock()
	records := s.sorted[by]
	indexed := int64(math.MaxInt64) // saved at or before: listed
	if s.indexDelay > 0 {
		indexed = time.Now().Add(s.ahead).Add(-s.indexDelay).UnixMilli()
	}
	s.data.RUnlock()
	bounds := c.on(by)
	lo := sort.Search(len(records), func(i int) bool { return records[i].key(by) >= bounds.lo })
	hi := sort.Search(len(records), func(i int) bool { return records[i].key(by) > bounds.hi })
	visit := func(i int) bool {
		r := records[i]
		return r.created > indexed || !c.match(r, by, desc) || fn(r)
	}
	if desc {
		for i := hi - 1; i >= lo && visit(i); i-- {
		}
		return
	}
	for i := lo; i < hi && visit(i); i++ {
	}
}

// recorder remembers what was answered, for the request log and stats.
type recorder struct {
	http.ResponseWriter
	status    int
	returned  int
	malformed bool
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) error(code int, msg string) {
	r.Header().Set("Content-Type", "application/json")
	r.WriteHeader(code)
	b, _ := json.Marshal(map[string]string{"detail": msg})
	_, _ = r.Write(b)
}

// json writes the 200 answer a to w: r itself, or an encoder over it.
// The activities are written as stored, or padded (answer.pad) and made
// up (answer.extra) as they are written, so that an answer of any size is
// never held whole; writing stops when the client stops reading.
func (r *recorder) json(a answer, w io.Writer) {
	r.returned = len(a.data) + a.extra
	r.Header().Set("Content-Type", "application/json")
	r.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteByte('{')
	if a.totalJSON != "" {
		fmt.Fprintf(bw, `"total":%s,`, a.totalJSON)
	}
	if a.totalJSON != "" || a.alerts {
		fmt.Fprintf(bw, `"max":%d,"moreThanTotal":%t,`, a.max, a.more)
	}
	fmt.Fprintf(bw, `"hasNext":%t,"data":[`, a.hasNext)
	var ts int64
	if len(a.data) > 0 {
		ts = a.data[len(a.data)-1].ts
	}
	var item []byte
	for i := range len(a.data) + a.extra {
		if i > 0 {
			bw.WriteByte(',')
		}
		if i < len(a.data) {
			item = append(item[:0], a.data[i].json()...)
		} else {
			item = strconv.AppendInt(append(item[:0], `{"_id":"overfill-`...), int64(i-len(a.data)), 10)
			item = strconv.AppendInt(append(item, `","timestamp":`...), ts, 10)
			item = append(item, '}')
		}
		if a.pad > 0 && len(item) > 1 {
			if writePadding(bw, a.padField, a.pad) != nil {
				return // the client stopped reading
			}
			item = item[1:]
			if item[0] != '}' {
				bw.WriteByte(',')
			}
		}
		if _, err := bw.Write(item); err != nil {
			return
		}
	}
	bw.WriteByte(']')
	if a.next != nil {
		bw.WriteString(`,"nextQueryFilters":`)
		bw.Write(a.next)
	}
	bw.WriteByte('}')
	_ = bw.Flush()
}

// writePadding writes the start of an object with its member field set to
// n x's.
func writePadding(w *bufio.Writer, field string, n int64) error {
	fmt.Fprintf(w, `{%q:"`, field)
	chunk := bytes.Repeat([]byte{'x'}, 64<<10)
	for n > 0 {
		k := min(n, int64(len(chunk)))
		if _, err := w.Write(chunk[:k]); err != nil {
			return err
		}
		n -= k
	}
	_, err := w.WriteString(`"`)
	return err
}
