package mcastest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas/mcastest"
)

var window = recovery.Window{Start: 1714521600000, End: 1714521600000 + 3600*1000}

type listing struct {
	Total            int               `json:"total"`
	HasNext          bool              `json:"hasNext"`
	Data             []json.RawMessage `json:"data"`
	NextQueryFilters json.RawMessage   `json:"nextQueryFilters"`
}

type activity struct {
	ID        string `json:"_id"`
	Timestamp int64  `json:"timestamp"`
	AppID     int    `json:"appId"`
}

func (l listing) activities(t *testing.T) []activity {
	t.Helper()
	out := make([]activity, len(l.Data))
	for i, raw := range l.Data {
		if err := json.Unmarshal(raw, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// post sends body to path with the given Authorization header and
// returns the status, the headers and, for a 200, the listing.
func post(t *testing.T, srv *mcastest.Server, path, auth, body string) (int, http.Header, listing) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var l listing
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, &l); err != nil {
			t.Fatalf("200 with %q: %v", data, err)
		}
	}
	return resp.StatusCode, resp.Header, l
}

func token(srv *mcastest.Server) string { return "Token " + srv.Token() }

func body(filters string, extra string) string {
	return fmt.Sprintf(`{"filters":%s,"sortField":"date","sortDirection":"asc"%s}`, filters, extra)
}

func windowFilter() string {
	return fmt.Sprintf(`{"date":{"gte":%d,"lte":%d}}`, window.Start, window.End-1)
}

func TestPlainPagingLimits(t *testing.T) {
	srv := mcastest.New(t, mcastest.Options{Activities: mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 250})})
	for _, tc := range []struct {
		extra  string
		status int
		n      int
		more   bool
	}{
		{`,"limit":100`, 200, 100, true},
		{`,"skip":200,"limit":100`, 200, 50, false},
		{`,"limit":101`, 400, 0, false},
		{`,"skip":4901,"limit":100`, 400, 0, false},
		{`,"skip":4900,"limit":100`, 200, 0, false},
		{``, 200, 100, true}, // default limit
	} {
		status, _, l := post(t, srv, "/api/v1/activities/", token(srv), body(windowFilter(), tc.extra))
		if status != tc.status || len(l.Data) != tc.n || l.HasNext != tc.more {
			t.Errorf("%s: %d with %d activities (hasNext %v), want %d with %d (%v)", tc.extra, status, len(l.Data), l.HasNext, tc.status, tc.n, tc.more)
		}
		if status == 200 && l.Total != 250 {
			t.Errorf("%s: total %d, want 250", tc.extra, l.Total)
		}
	}
	if got := srv.Stats(); got.BadRequests != 2 || got.Served != 4 {
		t.Errorf("stats %+v", got)
	}
}

func TestScanDropsTheFinalMillisecond(t *testing.T) {
	// 600 activities; positions 497–499 share a millisecond, so a page of
	// 500 ends inside it.
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 600, Burst: 3, BurstIndex: 497})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	var all []activity
	filters := windowFilter()
	for i := 0; ; i++ {
		status, _, l := post(t, srv, "/api/v1/activities/", token(srv), body(filters, `,"isScan":true,"limit":500`))
		if status != 200 {
			t.Fatalf("page %d: status %d", i, status)
		}
		page := l.activities(t)
		all = append(all, page...)
		if i == 0 {
			if len(page) != 497 || !l.HasNext {
				t.Fatalf("first page: %d activities, hasNext %v; want 497 and true", len(page), l.HasNext)
			}
			burstTS := mustTS(t, acts[497])
			want := fmt.Sprintf(`{"date":{"gte":%d,"lte":%d}}`, burstTS, window.End-1)
			var got bytes.Buffer
			_ = json.Compact(&got, l.NextQueryFilters)
			if page[496].Timestamp >= burstTS {
				t.Fatalf("the first page reaches the burst's millisecond")
			}
			if got.String() != want {
				t.Errorf("nextQueryFilters %s, want %s", got.String(), want)
			}
		}
		if !l.HasNext {
			if l.NextQueryFilters != nil {
				t.Errorf("nextQueryFilters %s on the last page", l.NextQueryFilters)
			}
			break
		}
		filters = string(l.NextQueryFilters)
	}
	assertOrderedOnce(t, all, 600)
}

func TestScanInsideOneMillisecond(t *testing.T) {
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 1300, Burst: 1200, BurstIndex: 50})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	var all []activity
	filters := windowFilter()
	for i := 0; i < 10; i++ {
		status, _, l := post(t, srv, "/api/v1/activities/", token(srv), body(filters, `,"isScan":true,"limit":500`))
		if status != 200 {
			t.Fatalf("page %d: status %d", i, status)
		}
		all = append(all, l.activities(t)...)
		if !l.HasNext {
			break
		}
		filters = string(l.NextQueryFilters)
	}
	assertOrderedOnce(t, all, 1300)
}

func mustTS(t *testing.T, raw json.RawMessage) int64 {
	t.Helper()
	var a activity
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	return a.Timestamp
}

func assertOrderedOnce(t *testing.T, all []activity, n int) {
	t.Helper()
	seen := map[string]bool{}
	for i, a := range all {
		if seen[a.ID] {
			t.Fatalf("%s listed twice", a.ID)
		}
		seen[a.ID] = true
		if i > 0 && a.Timestamp < all[i-1].Timestamp {
			t.Fatalf("activity %d out of order", i)
		}
	}
	if len(seen) != n {
		t.Fatalf("listed %d activities, want %d", len(seen), n)
	}
}

func TestScanLimits(t *testing.T) {
	srv := mcastest.New(t, mcastest.Options{})
	for extra, want := range map[string]int{
		`,"isScan":true,"limit":499`:            400,
		`,"isScan":true,"limit":5001`:           400,
		`,"isScan":true,"limit":5000`:           200,
		`,"isScan":true`:                        200,
		`,"isScan":true,"limit":500,"skip":100`: 400,
	} {
		if status, _, _ := post(t, srv, "/api/v1/activities/", token(srv), body(windowFilter(), extra)); status != want {
			t.Errorf("%s: %d, want %d", extra, status, want)
		}
	}
	noScan := mcastest.New(t, mcastest.Options{NoScan: true})
	if status, _, _ := post(t, noScan, "/api/v1/activities/", token(noScan), body(windowFilter(), `,"isScan":true`)); status != 400 {
		t.Errorf("NoScan answered %d to isScan, want 400", status)
	}
}

func TestWithoutTrailingSlashTheBodyIsIgnored(t *testing.T) {
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 150})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	filters := fmt.Sprintf(`{"date":{"eq":%d}}`, mustTS(t, acts[0]))
	_, _, l := post(t, srv, "/api/v1/activities", token(srv), body(filters, `,"limit":1`))
	got := l.activities(t)
	if len(got) != 100 || got[0].Timestamp != mustTS(t, acts[149]) {
		t.Errorf("without the slash: %d activities from %d; want the default 100, newest first", len(got), got[0].Timestamp)
	}
	_, _, l = post(t, srv, "/api/v1/activities/", token(srv), body(filters, `,"limit":1`))
	if len(l.Data) != 1 {
		t.Errorf("with the slash: %d activities, want 1", len(l.Data))
	}
	if s := srv.Stats(); s.NoSlash != 1 || s.Requests != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestAuth(t *testing.T) {
	legacy := mcastest.New(t, mcastest.Options{})
	jwt := mcastest.MakeJWT("test")
	bearer := mcastest.New(t, mcastest.Options{Token: jwt})
	for _, tc := range []struct {
		srv    *mcastest.Server
		auth   string
		status int
	}{
		{legacy, "Token " + mcastest.DefaultToken, 200},
		{legacy, "", 401},
		{legacy, "Token wrong", 401},
		{legacy, "Bearer " + mcastest.DefaultToken, 401},
		{bearer, "Bearer " + jwt, 200},
		{bearer, "Token " + jwt, 401},
	} {
		if status, _, _ := post(t, tc.srv, "/api/v1/activities/", tc.auth, body(windowFilter(), "")); status != tc.status {
			t.Errorf("%.20q: %d, want %d", tc.auth, status, tc.status)
		}
	}
	if !mcastest.IsJWT(jwt) || mcastest.IsJWT(mcastest.DefaultToken) {
		t.Error("IsJWT")
	}
}

func TestFilters(t *testing.T) {
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 100})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	ts := func(i int) int64 { return mustTS(t, acts[i]) }
	for _, tc := range []struct {
		filters string
		want    []int // positions in acts
	}{
		{fmt.Sprintf(`{"date":{"gte":%d,"lt":%d}}`, ts(10), ts(13)), []int{10, 11, 12}},
		{fmt.Sprintf(`{"date":{"gt":%d,"lte":%d}}`, ts(10), ts(13)), []int{11, 12, 13}},
		{fmt.Sprintf(`{"date":{"eq":[%d,%d]}}`, ts(3), ts(7)), []int{3, 7}},
		{fmt.Sprintf(`{"date":{"range":[{"start":%d,"end":%d},{"start":%d,"end":%d}]}}`, ts(1), ts(2), ts(50), ts(50)), []int{1, 2, 50}},
		{fmt.Sprintf(`{"date":{"lte":%d},"service":{"eq":[%d]}}`, ts(20), mcastest.Services[1].ID), []int{1, 6, 11, 16}},
		{fmt.Sprintf(`{"date":{"lte":%d},"service":{"neq":[%d,%d,%d]}}`, ts(9), mcastest.Services[0].ID, mcastest.Services[1].ID, mcastest.Services[2].ID), []int{3, 4, 8, 9}},
		{fmt.Sprintf(`{"date":{"lte":%d},"activity.eventType":{"eq":["%s"]}}`, ts(20), mcastest.EventTypes[2].Value), []int{2, 9, 16}},
		{fmt.Sprintf(`{"date":{"lte":%d},"user.username":{"eq":["user3@contoso.com"]}}`, ts(60)), []int{3, 53}},
	} {
		status, _, l := post(t, srv, "/api/v1/activities/", token(srv), body(tc.filters, `,"limit":100`))
		if status != 200 {
			t.Errorf("%s: status %d", tc.filters, status)
			continue
		}
		var got []string
		for _, a := range l.activities(t) {
			got = append(got, a.ID)
		}
		var want []string
		for _, i := range tc.want {
			want = append(want, mcastest.IDs(acts[i : i+1])[0])
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s:\n got %v\nwant %v", tc.filters, got, want)
		}
	}
	for _, bad := range []string{`{"date":{"lte_ndays":3}}`, `{"date":{"gte":"yesterday"}}`, `{"service":{"like":[1]}}`, `[1]`} {
		if status, _, _ := post(t, srv, "/api/v1/activities/", token(srv), body(bad, "")); status != 400 {
			t.Errorf("%s: %d, want 400", bad, status)
		}
	}
	// Descending order, the API's default.
	_, _, l := post(t, srv, "/api/v1/activities/", token(srv), `{"limit":2}`)
	if got := l.activities(t); got[0].Timestamp != ts(99) || got[1].Timestamp != ts(98) {
		t.Errorf("default order: %v", got)
	}
}

func TestBudgetAndFaults(t *testing.T) {
	srv := mcastest.New(t, mcastest.Options{RequestsPerMinute: 2})
	for i, want := range []int{200, 200, 429} {
		status, h, _ := post(t, srv, "/api/v1/activities/", token(srv), body(windowFilter(), ""))
		if status != want {
			t.Fatalf("request %d: %d, want %d", i, status, want)
		}
		if status == 429 {
			secs, err := strconv.Atoi(h.Get("Retry-After"))
			if err != nil || secs < 1 || secs > 60 {
				t.Errorf("Retry-After %q, want 1–60 seconds", h.Get("Retry-After"))
			}
		}
	}

	faulty := mcastest.New(t, mcastest.Options{})
	faulty.FailNext(2, mcastest.Fault{Status: 503})
	faulty.FailEvery(4, mcastest.Fault{Status: 429, RetryAfter: "7"})
	var got []string
	for range 8 {
		status, h, _ := post(t, faulty, "/api/v1/activities/", token(faulty), body(windowFilter(), ""))
		got = append(got, strconv.Itoa(status)+h.Get("Retry-After"))
	}
	if want := "503 503 200 4297 200 200 200 4297"; strings.Join(got, " ") != want {
		t.Errorf("answers %v, want %s", got, want)
	}
	faulty.ClearFaults()
	faulty.FailNext(1, mcastest.Fault{Malformed: true})
	req, _ := http.NewRequest(http.MethodPost, faulty.Endpoint(), strings.NewReader(`{}`))
	req.Header.Set("Authorization", token(faulty))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || json.Valid(data) {
		t.Errorf("malformed fault: %d %q", resp.StatusCode, data)
	}
	s := faulty.Stats()
	if s.Requests != 9 || s.Faults != 5 || s.Throttled != 2 || s.Served != 4 {
		t.Errorf("stats %+v", s)
	}
	if n := len(faulty.Requests()); n != 9 {
		t.Errorf("%d requests recorded, want 9", n)
	}
}

// TestAcceptToken: an access token given to AcceptToken is accepted as
// Bearer until it expires, then refused and counted as expired; an
// unknown one is refused.
func TestAcceptToken(t *testing.T) {
	srv := mcastest.New(t, mcastest.Options{Activities: mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 3})})
	srv.AcceptToken("fresh", time.Now().Add(time.Hour))
	srv.AcceptToken("stale", time.Now().Add(-time.Second))
	body := `{"filters":{},"limit":10}`
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"Bearer fresh", http.StatusOK},
		{"Token fresh", http.StatusUnauthorized},
		{"Bearer stale", http.StatusUnauthorized},
		{"Bearer unknown", http.StatusUnauthorized},
		{"Token " + mcastest.DefaultToken, http.StatusOK},
	} {
		if status, _, _ := post(t, srv, "/api/v1/activities/", tc.auth, body); status != tc.want {
			t.Errorf("%s: status %d, want %d", tc.auth, status, tc.want)
		}
	}
	if st := srv.Stats(); st.Unauthorized != 3 || st.Expired != 1 {
		t.Errorf("stats %+v, want 3 unauthorized of which 1 expired", st)
	}
}

func TestHostileFaults(t *testing.T) {
	early := mcastest.Generate(mcastest.GenerateOptions{Window: recovery.Window{Start: window.Start - 60_000, End: window.Start}, Count: 20})
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 600})
	srv := mcastest.New(t, mcastest.Options{Activities: append(early, acts...)})

	srv.FailNext(1, mcastest.Fault{RepeatFilters: true})
	status, _, l := post(t, srv, "/api/v1/activities/", token(srv), body(windowFilter(), `,"isScan":true,"limit":500`))
	if status != 200 || len(l.Data) == 0 || !l.HasNext || string(l.NextQueryFilters) != windowFilter() {
		t.Errorf("RepeatFilters: %d with %d activities, hasNext %v, next %s; want the page pointing at its own filters", status, len(l.Data), l.HasNext, l.NextQueryFilters)
	}

	srv.FailNext(1, mcastest.Fault{Overfill: 50})
	status, _, l = post(t, srv, "/api/v1/activities/", token(srv), body(windowFilter(), `,"limit":100`))
	if got := l.activities(t); status != 200 || len(got) != 150 || got[100].ID != "overfill-0" || got[149].ID != "overfill-49" {
		t.Errorf("Overfill: %d with %d activities, want the 100 asked for and 50 more", status, len(got))
	}

	srv.FailNext(1, mcastest.Fault{IgnoreStart: true})
	status, _, l = post(t, srv, "/api/v1/activities/", token(srv), body(windowFilter(), `,"limit":100`))
	if got := l.activities(t); status != 200 || len(got) != 100 || got[0].Timestamp >= window.Start || got[20].Timestamp < window.Start {
		t.Errorf("IgnoreStart: %d with %d activities, want the 20 before the window first", status, len(got))
	}

	// A raw answer, and a redirect the client must not follow (it would
	// leave 127.0.0.1).
	srv.FailNext(1, mcastest.Fault{Status: 302, Location: "https://login.example/", Body: "teapot\n"})
	req, _ := http.NewRequest(http.MethodPost, srv.Endpoint(), strings.NewReader(`{}`))
	req.Header.Set("Authorization", token(srv))
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "https://login.example/" || string(data) != "teapot\n" {
		t.Errorf("redirect: %d to %q with %q", resp.StatusCode, resp.Header.Get("Location"), data)
	}
}

// IDs reads the ids of generated activities without decoding them, and
// any other activity as encoding/json does: an escaped id unescaped, the
// last of two "_id" members, none.
func TestIDs(t *testing.T) {
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: recovery.Window{Start: 1714521600000, End: 1714521700000}, Count: 50})
	acts = append(acts,
		json.RawMessage(`{"_id":"a\"b","timestamp":1}`),
		json.RawMessage(`{"_id":"first","timestamp":1,"_id":"second"}`),
		json.RawMessage(`{ "_id":"spaced"}`),
		json.RawMessage(`{"timestamp":1}`))
	got := mcastest.IDs(acts)
	for i, raw := range acts {
		var a struct {
			ID string `json:"_id"`
		}
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatal(err)
		}
		if got[i] != a.ID {
			t.Errorf("activity %d: id %q, want %q", i, got[i], a.ID)
		}
	}
	if got[len(got)-3] != "second" || got[len(got)-1] != "" {
		t.Errorf("ids %q", got[len(got)-4:])
	}
}
