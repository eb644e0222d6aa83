package graphtest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"siem-recovery/recovery/graph"
)

// DefaultToken is the access token the emulator accepts when
// Options.Tokens is empty.
const DefaultToken = "graphtest-access-token-0123456789abcdefghijklmnopqrstuvwxyz"

// Path is the route of runHuntingQuery.
const Path = "/v1.0/security/runHuntingQuery"

// Options configure a Server. The zero value serves no rows, accepts
// DefaultToken, and has the API's documented limits and no throttling.
type Options struct {
	// Tokens are the bearer tokens the server accepts, for ever; more,
	// with an expiry, come through AcceptToken.
	Tokens []string
	// Rows are the tenant's rows of CloudAppEvents; Add adds more later.
	Rows []Row
	// DynamicAsJSON writes dynamic columns (ActivityObjects,
	// RawEventData, …) as JSON objects and arrays; by default they are
	// strings holding that JSON, as the older advanced hunting API wrote
	// them.
	DynamicAsJSON bool
	// RequestsPerMinute is the tenant's request budget per BudgetPeriod
	// (default one minute, a fixed window from the first request); past it
	// the server answers 429 with Retry-After in whole seconds. Zero: no
	// budget.
	RequestsPerMinute int
	BudgetPeriod      time.Duration
	// MaxRows is the most rows one result holds (default 100,000, the
	// API's): a query asking for more gets the first MaxRows.
	MaxRows int
	// MaxResultBytes is the largest answer (default 124 MB, the API's): a
	// larger result is answered 400 "Query execution has exceeded the
	// allowed result size".
	MaxResultBytes int
	// MaxScanRows, when set, is the most rows a query's Timestamp range
	// may hold before it "runs past 3 minutes": it is answered Heavy
	// instead (default FaultTimeout), until the client asks for a
	// narrower range.
	MaxScanRows int
	Heavy       *Fault
	// Now is the server's clock (default time.Now): advanced hunting
	// holds the last 30 days, and a request without Timespan reads them.
	Now func() time.Time
}

// Fault is an answer the server gives instead of the normal one.
type Fault struct {
	// Status is the HTTP status to answer (500, 503, 504, 429, 400, …),
	// with Graph's JSON error body (or Body). Zero answers normally, after
	// Delay, as the fields below say.
	Status int
	// RetryAfter is the Retry-After header sent with Status ("" for none).
	RetryAfter string
	// Body replaces the error body of Status.
	Body string
	// Delay holds the answer back this long (or until the client gives up).
	Delay time.Duration
	// Malformed answers 200 with a JSON body cut in the middle.
	Malformed bool
	// Overfill appends this many rows to "results", more than the query
	// asked for.
	Overfill int
	// Reversed lists the rows in the reverse of the order asked for.
	Reversed bool
	// Repeated lists each row twice in a row, as many rows in all as the
	// query gave.
	Repeated bool
}

// The faults advanced hunting answers with (docs/graph-source.md cites
// them).
var (
	// FaultTimeout is a query that ran past 3 minutes, as Graph ends it.
	FaultTimeout = Fault{Status: http.StatusGatewayTimeout, Body: `{"error":{"code":"UnknownError","message":"","innerError":{"date":"2026-01-20T11:29:01","request-id":"b354c428-504f-4544-8c90-49180d42a882"}}}`}
	// FaultStopped is a query stopped for the resources it used.
	FaultStopped = Fault{Status: http.StatusBadRequest, Body: `{"error":{"code":"BadRequest","message":"Query execution has exceeded the allowed limits. The query execution was preempted. This could possibly be due to high CPU and/or memory resource consumption. Optimize your query by following best practices and try again."}}`}
	// FaultTooLarge is a result over the size limit.
	FaultTooLarge = Fault{Status: http.StatusBadRequest, Body: `{"error":{"code":"BadRequest","message":"Query execution has exceeded the allowed result size. Optimize your query by limiting the number of results and try again."}}`}
)

type faultRule struct {
	fault     Fault
	remaining int // FailNext: how many more requests it applies to
	every     int // FailEvery: applies to request numbers divisible by it
}

// Stats counts the requests that reached runHuntingQuery, by how they were
// answered.
type Stats struct {
	Requests     int // every request, whatever the answer
	Served       int // answered 200 with a result (Malformed faults excluded)
	Throttled    int // answered 429, by the budget or an injected fault
	Faults       int // answered with an injected fault
	Heavy        int // answered as too heavy by the limits (MaxScanRows, MaxResultBytes)
	Unauthorized int // answered 401
	Expired      int // answered 401 for a token given to AcceptToken that had expired
	BadRequests  int // answered 400 for a query the emulator could not run
	Rows         int // rows sent in all 200 answers
}

// Request is one request the server received, as recorded for assertions.
type Request struct {
	At       time.Time
	Auth     string // the Authorization scheme ("Bearer"), never the token
	Query    string
	Timespan string
	Status   int
	Returned int // rows in the answer
}

// Server is a running emulator of Graph's runHuntingQuery. Its methods are
// safe for concurrent use.
type Server struct {
	// URL is the Graph base URL to give the client, e.g.
	// https://127.0.0.1:41234.
	URL string

	srv     *httptest.Server
	opts    Options
	maxRows int
	maxSize int
	period  time.Duration
	now     func() time.Time

	data sync.RWMutex
	rows []*stored // sorted by (Timestamp, ReportId)

	mu          sync.Mutex
	tokens      map[string]time.Time // accepted token → expiry (zero: none)
	faults      []*faultRule
	stats       Stats
	log         []Request
	budgetStart time.Time
	budgetUsed  int
}

// New starts an emulator on 127.0.0.1 over HTTPS (httptest's certificate:
// TLSConfig, CAPEM) holding opts.Rows; it is closed when the test ends.
func New(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s := &Server{
		opts:    opts,
		maxRows: opts.MaxRows,
		maxSize: opts.MaxResultBytes,
		period:  opts.BudgetPeriod,
		now:     opts.Now,
		tokens:  map[string]time.Time{},
	}
	if s.maxRows <= 0 {
		s.maxRows = graph.MaxPageSize
	}
	if s.maxSize <= 0 {
		s.maxSize = 124_000_000
	}
	if s.period <= 0 {
		s.period = time.Minute
	}
	if s.now == nil {
		s.now = time.Now
	}
	tokens := opts.Tokens
	if len(tokens) == 0 {
		tokens = []string{DefaultToken}
	}
	for _, t := range tokens {
		s.tokens[t] = time.Time{}
	}
	s.Add(opts.Rows...)
	mux := http.NewServeMux()
	mux.HandleFunc(Path, s.serve)
	s.srv = httptest.NewTLSServer(mux)
	s.URL = s.srv.URL
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server; the test's cleanup does it too.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// stored is a row the server holds, with its JSON in an answer, made
// once.
type stored struct {
	Row
	text []byte
}

// Add adds rows, as advanced hunting ingests late ones between two runs:
// each is listed at its place in the order of (Timestamp, ReportId).
func (s *Server) Add(rows ...Row) {
	added := make([]*stored, len(rows))
	for i := range rows {
		st := &stored{Row: rows[i]}
		st.text = st.appendJSON(nil, !s.opts.DynamicAsJSON)
		added[i] = st
	}
	s.data.Lock()
	defer s.data.Unlock()
	// A new slice: a query in progress keeps reading the old one.
	all := slices.Concat(s.rows, added)
	slices.SortStableFunc(all, func(a, b *stored) int { return compareRows(a.Row, b.Row) })
	s.rows = all
}

// Len is the number of rows the server holds.
func (s *Server) Len() int {
	s.data.RLock()
	defer s.data.RUnlock()
	return len(s.rows)
}

// TLSConfig trusts the server's certificate.
func (s *Server) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(s.srv.Certificate())
	return &tls.Config{RootCAs: pool}
}

// CAPEM is the server's certificate in PEM, for a process that reads its
// trusted roots from a file (SSL_CERT_FILE).
func (s *Server) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// AcceptToken makes the server accept token as "Bearer" until expires:
// an access token an Entra ID emulator issued (entratest.Options.OnToken).
// Past expires it answers 401 and counts the request in Stats.Expired.
func (s *Server) AcceptToken(token string, expires time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = expires
}

// RevokeToken makes the server refuse token from now on.
func (s *Server) RevokeToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, token)
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
		panic("graphtest: FailEvery needs k > 0")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultRule{fault: f, every: k})
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
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
	return slices.Clone(s.log)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "BadRequest", "Unsupported method")
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	var in map[string]json.RawMessage
	_ = json.Unmarshal(body, &in)
	var req Request
	req.At = time.Now()
	req.Auth, _, _ = strings.Cut(r.Header.Get("Authorization"), " ")
	for k, v := range in {
		switch strings.ToLower(k) {
		case "query":
			_ = json.Unmarshal(v, &req.Query)
		case "timespan":
			_ = json.Unmarshal(v, &req.Timespan)
		}
	}
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		req.Status = rec.status
		s.mu.Lock()
		s.log = append(s.log, req)
		s.mu.Unlock()
	}()

	s.mu.Lock()
	s.stats.Requests++
	seq := s.stats.Requests
	s.mu.Unlock()

	if status, code, msg := s.authorize(r.Header.Get("Authorization")); status != 0 {
		writeError(rec, status, code, msg)
		return
	}
	if wait, ok := s.spend(); !ok {
		s.count(func(st *Stats) { st.Throttled++ })
		rec.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		writeError(rec, http.StatusTooManyRequests, "TooManyRequests", "You have exceeded processing resources allocated to this tenant. You can run queries again in "+wait.Round(time.Second).String()+".")
		return
	}
	f, faulted := s.takeFault(seq)
	if faulted {
		s.count(func(st *Stats) { st.Faults++ })
		if f.Delay > 0 {
			select {
			case <-time.After(f.Delay):
			case <-r.Context().Done():
				return
			}
		}
		if f.Status != 0 {
			s.writeFault(rec, f)
			return
		}
	}
	result, err := s.run(req.Query, req.Timespan)
	if err != nil {
		if h, ok := err.(*heavyError); ok {
			s.count(func(st *Stats) { st.Heavy++ })
			s.writeFault(rec, h.fault)
			return
		}
		s.count(func(st *Stats) { st.BadRequests++ })
		writeError(rec, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	if f.Reversed {
		result.rows = slices.Clone(result.rows) // they may be the server's own
		slices.Reverse(result.rows)
	}
	if f.Repeated {
		twice := make([]*stored, 0, 2*len(result.rows))
		for _, r := range result.rows {
			twice = append(twice, r, r)
		}
		result.rows = twice[:len(result.rows)]
	}
	out := s.render(result, f.Overfill)
	if len(out) > s.maxSize {
		s.count(func(st *Stats) { st.Heavy++ })
		s.writeFault(rec, FaultTooLarge)
		return
	}
	rec.Header().Set("Content-Type", "application/json")
	if f.Malformed {
		_, _ = rec.Write(out[:len(out)/2])
		return
	}
	req.Returned = len(result.rows) + f.Overfill
	s.count(func(st *Stats) { st.Served++; st.Rows += req.Returned })
	_, _ = rec.Write(out)
}

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) count(fn func(*Stats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.stats)
}

// authorize checks a request's Authorization header: 0 when accepted,
// else the 401 to answer, with Graph's code and message.
func (s *Server) authorize(header string) (status int, code, msg string) {
	scheme, token, _ := strings.Cut(header, " ")
	s.mu.Lock()
	defer s.mu.Unlock()
	expires, known := s.tokens[token]
	switch {
	case !strings.EqualFold(scheme, "Bearer") || !known:
		s.stats.Unauthorized++
		return http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
	case !expires.IsZero() && time.Now().After(expires):
		s.stats.Unauthorized++
		s.stats.Expired++
		return http.StatusUnauthorized, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
	}
	return 0, "", ""
}

// spend takes a request from the tenant's budget, or says how long until
// the budget's window ends.
func (s *Server) spend() (time.Duration, bool) {
	if s.opts.RequestsPerMinute <= 0 {
		return 0, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.budgetStart.IsZero() || now.Sub(s.budgetStart) >= s.period {
		s.budgetStart, s.budgetUsed = now, 0
	}
	if s.budgetUsed >= s.opts.RequestsPerMinute {
		return s.period - now.Sub(s.budgetStart), false
	}
	s.budgetUsed++
	return 0, true
}

func (s *Server) takeFault(seq int) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, rule := range s.faults {
		switch {
		case rule.every > 0 && seq%rule.every == 0:
			return rule.fault, true
		case rule.every == 0 && rule.remaining > 0:
			rule.remaining--
			if rule.remaining == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
			return rule.fault, true
		}
	}
	return Fault{}, false
}

func (s *Server) writeFault(w http.ResponseWriter, f Fault) {
	if f.Status == http.StatusTooManyRequests {
		s.count(func(st *Stats) { st.Throttled++ })
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	body := f.Body
	if body == "" {
		body = fmt.Sprintf(`{"error":{"code":"UnknownError","message":"%s"}}`, http.StatusText(f.Status))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.Status)
	_, _ = io.WriteString(w, body)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": code, "message": msg,
		"innerError": map[string]string{"date": time.Now().UTC().Format("2006-01-02T15:04:05"), "request-id": "00000000-0000-0000-0000-000000000000"}}})
	_, _ = w.Write(b)
}

// heavyError is a query over the emulator's limits.
type heavyError struct{ fault Fault }

func (e *heavyError) Error() string { return "too heavy" }

// result is what a query gives: rows, or a count.
type result struct {
	rows    []*stored
	counted bool
	count   int
}

// run runs a query over the rows the request may see.
func (s *Server) run(query, timespan string) (*result, error) {
	prog, err := parse(query)
	if err != nil {
		return nil, err
	}
	if prog.table != "CloudAppEvents" {
		return nil, semanticError("Failed to resolve table or column expression named '%s'", prog.table)
	}
	for _, st := range prog.steps {
		if st.kind == stepWhere {
			if err := typeCheck(st.where); err != nil {
				return nil, err
			}
		}
	}
	lo, hi, err := s.visible(timespan)
	if err != nil {
		return nil, err
	}
	// The Timestamp range the where clauses before any other operator
	// require: the rows the query scans.
	for _, st := range prog.steps {
		if st.kind != stepWhere {
			break
		}
		lo, hi = timeRange(st.where, lo, hi)
	}
	s.data.RLock()
	all := s.rows
	s.data.RUnlock()
	from := sort.Search(len(all), func(i int) bool { return all[i].Timestamp >= lo })
	to := sort.Search(len(all), func(i int) bool { return all[i].Timestamp >= hi })
	rows := all[from:max(from, to)]
	if n := s.opts.MaxScanRows; n > 0 && len(rows) > n {
		heavy := FaultTimeout
		if s.opts.Heavy != nil {
			heavy = *s.opts.Heavy
		}
		return nil, &heavyError{fault: heavy}
	}
	if res, ok := s.stream(prog, rows); ok {
		return res, nil
	}
	res := &result{}
	owned := false
	for _, st := range prog.steps {
		switch st.kind {
		case stepWhere:
			kept := make([]*stored, 0, len(rows))
			for _, r := range rows {
				ok, err := evalBool(st.where, &r.Row)
				if err != nil {
					return nil, err
				}
				if ok {
					kept = append(kept, r)
				}
			}
			rows, owned = kept, true
		case stepSort:
			if !owned {
				rows, owned = slices.Clone(rows), true
			}
			if err := sortRows(rows, st.keys); err != nil {
				return nil, err
			}
		case stepTake:
			rows = rows[:min(st.n, len(rows))]
		case stepCount:
			res.counted, res.count = true, len(rows)
		}
	}
	res.rows = rows[:min(len(rows), s.maxRows)]
	return res, nil
}

// stream runs a query of where clauses, then an order by Timestamp asc,
// ReportId asc (the order rows are held in) and a take, without sorting:
// it reads rows in order until it has enough. That is the query the
// source writes for each page; ok is false for any other.
func (s *Server) stream(prog *program, rows []*stored) (*result, bool) {
	var wheres []expr
	take := -1
	for i, st := range prog.steps {
		switch {
		case st.kind == stepWhere && take < 0:
			wheres = append(wheres, st.where)
		case st.kind == stepSort && take < 0 && len(st.keys) == 2 &&
			st.keys[0] == sortKey{column: "Timestamp"} && st.keys[1] == sortKey{column: "ReportId"}:
		case st.kind == stepTake && i == len(prog.steps)-1:
			take = st.n
		default:
			return nil, false
		}
	}
	if take < 0 {
		return nil, false
	}
	res := &result{}
	for _, r := range rows {
		if len(res.rows) == min(take, s.maxRows) {
			break
		}
		keep := true
		for _, w := range wheres {
			if ok, err := evalBool(w, &r.Row); err != nil || !ok {
				keep = false
				break
			}
		}
		if keep {
			res.rows = append(res.rows, r)
		}
	}
	return res, true
}

// visible is the Timestamp range a request may see: the last 30 days,
// within its Timespan ("start/end", the form the source sends; none: the
// last 30 days).
func (s *Server) visible(timespan string) (lo, hi graph.Ticks, err error) {
	now := s.now()
	lo = graph.TicksOfMillis(now.Add(-graph.Retention).UnixMilli())
	hi = graph.Ticks(1) << 62
	if timespan == "" {
		return lo, hi, nil
	}
	a, b, ok := strings.Cut(timespan, "/")
	start, err1 := time.Parse(time.RFC3339Nano, a)
	end, err2 := time.Parse(time.RFC3339Nano, b)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, &queryError{msg: fmt.Sprintf("The Timespan %q is not a start/end pair of ISO 8601 times the emulator reads", timespan)}
	}
	lo = max(lo, graph.TicksOfMillis(start.UnixMilli()))
	hi = graph.TicksOfMillis(end.UnixMilli()) + 1 // both ends included
	return lo, hi, nil
}

// typeCheck evaluates every comparison of e on an empty row, as Kusto
// checks a query's types before it runs: a where clause that compares
// strings with < is refused even when no row would reach it.
func typeCheck(e expr) error {
	switch n := e.(type) {
	case *logical:
		if err := typeCheck(n.left); err != nil {
			return err
		}
		return typeCheck(n.right)
	case *call:
		for _, a := range n.args {
			if err := typeCheck(a); err != nil {
				return err
			}
		}
	}
	_, err := e.eval(&Row{})
	return err
}

// sortRows sorts rows by keys, strings ordinally.
func sortRows(rows []*stored, keys []sortKey) error {
	for _, k := range keys {
		if _, ok := (&Row{}).value(k.column); !ok {
			return semanticError("'order' operator: Failed to resolve scalar expression named '%s'", k.column)
		}
	}
	slices.SortStableFunc(rows, func(a, b *stored) int {
		for _, k := range keys {
			va, _ := a.value(k.column)
			vb, _ := b.value(k.column)
			c := 0
			switch x := va.(type) {
			case string:
				c = strings.Compare(x, vb.(string))
			case graph.Ticks:
				c = compareOrdered(x, vb.(graph.Ticks))
			case int64:
				c = compareOrdered(x, vb.(int64))
			case bool:
				c = compareOrdered(boolInt(x), boolInt(vb.(bool)))
			}
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
	return nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// render writes a result as huntingQueryResults, with overfill rows more
// (the last row again) than the query gave.
func (s *Server) render(res *result, overfill int) []byte {
	b := []byte(`{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.security.huntingQueryResults","schema":[`)
	if res.counted {
		b = append(b, `{"name":"Count","type":"Int64"}],"results":[{"Count":`...)
		b = strconv.AppendInt(b, int64(res.count), 10)
		return append(b, "}]}"...)
	}
	for i, c := range Columns {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"name":%q,"type":%q}`, c.Name, c.Type)
	}
	b = append(b, `],"results":[`...)
	for i, r := range res.rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r.text...)
	}
	if n := len(res.rows); n > 0 {
		for range overfill {
			b = append(b, ',')
			b = append(b, res.rows[n-1].text...)
		}
	}
	return append(b, "]}"...)
}
