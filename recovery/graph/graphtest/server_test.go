package graphtest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/graph/graphtest"
)

var now = time.Now()

var window = func() recovery.Window {
	start := now.Add(-72 * time.Hour).Truncate(time.Hour).UnixMilli()
	return recovery.Window{Start: start, End: start + 3600_000}
}()

type answer struct {
	Schema  []struct{ Name, Type string }
	Results []map[string]any
	Error   struct{ Code, Message string }
}

// run posts a query (and a Timespan, when given) and returns the status
// and the decoded answer.
func run(t *testing.T, srv *graphtest.Server, token, query, timespan string) (int, answer) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"Query": query, "Timespan": timespan})
	req, err := http.NewRequest(http.MethodPost, srv.URL+graphtest.Path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: srv.TLSConfig()}, Timeout: time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("%d answer: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, a
}

func ids(a answer) string {
	var out []string
	for _, r := range a.Results {
		out = append(out, fmt.Sprint(r["ReportId"]))
	}
	return strings.Join(out, ",")
}

func rowIDs(rows []graphtest.Row, keep func(graphtest.Row) bool) string {
	var out []string
	for _, r := range rows {
		if keep(r) {
			out = append(out, r.ReportID)
		}
	}
	return strings.Join(out, ",")
}

// TestQueries runs the predicates the emulator understands against the
// same selection made in Go.
func TestQueries(t *testing.T) {
	rows := graphtest.Generate(graphtest.GenerateOptions{Window: window, Count: 120, Burst: 20, BurstIndex: 30})
	graphtest.Sort(rows)
	srv := graphtest.New(t, graphtest.Options{Rows: rows})
	mid := rows[60].Timestamp
	for _, tc := range []struct {
		where string
		keep  func(graphtest.Row) bool
	}{
		{`ActionType == "FileDownloaded"`, func(r graphtest.Row) bool { return r.ActionType == "FileDownloaded" }},
		{`ActionType != "FileDownloaded" and ApplicationId == 11161`, func(r graphtest.Row) bool { return r.ActionType != "FileDownloaded" && r.ApplicationID == 11161 }},
		{`Application in ("Salesforce", "Microsoft Teams") or IsAdminOperation == true`, func(r graphtest.Row) bool {
			return r.Application == "Salesforce" || r.Application == "Microsoft Teams" || r.IsAdminOperation
		}},
		{`Application !in~ ("salesforce") and not(ActivityType =~ "LOGIN")`, func(r graphtest.Row) bool {
			return r.Application != "Salesforce" && r.ActivityType != "Login"
		}},
		{`ObjectName has "budget" or AccountDisplayName startswith "megan"`, func(r graphtest.Row) bool {
			return strings.Contains(r.ObjectName, "budget") || strings.HasPrefix(r.AccountDisplayName, "Megan")
		}},
		{fmt.Sprintf(`Timestamp > datetime(%s) or (Timestamp == datetime(%s) and strcmp(ReportId, %q) > 0)`, mid, mid, rows[60].ReportID),
			func(r graphtest.Row) bool {
				return r.Timestamp > mid || r.Timestamp == mid && r.ReportID > rows[60].ReportID
			}},
	} {
		status, a := run(t, srv, graphtest.DefaultToken, "CloudAppEvents\n| where "+tc.where+"\n| order by Timestamp asc, ReportId asc", "")
		if got, want := ids(a), rowIDs(rows, tc.keep); status != 200 || got != want || want == "" {
			t.Errorf("%s: %d\n got %s\nwant %s", tc.where, status, got, want)
		}
	}
	status, a := run(t, srv, graphtest.DefaultToken, "CloudAppEvents | where ApplicationId == 11114 | count", "")
	if want := strings.Count(rowIDs(rows, func(r graphtest.Row) bool { return r.ApplicationID == 11114 }), ",") + 1; status != 200 || len(a.Results) != 1 || a.Results[0]["Count"] != float64(want) {
		t.Errorf("count: %d %+v, want %d", status, a.Results, want)
	}
	status, a = run(t, srv, graphtest.DefaultToken, "CloudAppEvents | top 3 by Timestamp desc, ReportId desc", "")
	if status != 200 || ids(a) != strings.Join([]string{rows[119].ReportID, rows[118].ReportID, rows[117].ReportID}, ",") {
		t.Errorf("top 3 desc: %d %s", status, ids(a))
	}
	if len(a.Schema) != len(graphtest.Columns) || a.Schema[0].Name != "Timestamp" || a.Schema[0].Type != "DateTime" {
		t.Errorf("schema %+v", a.Schema)
	}
	if s, ok := a.Results[0]["ActivityObjects"].(string); !ok || !strings.HasPrefix(s, `[{"Type":`) {
		t.Errorf("a dynamic column is not a string holding JSON: %#v", a.Results[0]["ActivityObjects"])
	}
}

// TestRefusedQueries: what Kusto would refuse, the emulator answers 400.
func TestRefusedQueries(t *testing.T) {
	srv := graphtest.New(t, graphtest.Options{})
	for query, msg := range map[string]string{
		`CloudAppEvents | where ReportId > "a"`:               "Semantic error: Cannot compare values of types string and string. Try adding explicit casts",
		`CloudAppEvents | where Nope == 1`:                    "Semantic error: 'where' operator: Failed to resolve scalar expression named 'Nope'",
		`DeviceEvents | take 1`:                               "Semantic error: Failed to resolve table or column expression named 'DeviceEvents'",
		`CloudAppEvents | project ReportId`:                   `Syntax error: the emulator does not know the operator "project" (line 1, position 18)`,
		"CloudAppEvents\n| where ActionType == \"x\n| take 1": "Syntax error: a string literal does not end on its line (line 2, position 23)",
	} {
		status, a := run(t, srv, graphtest.DefaultToken, query, "")
		if status != 400 || a.Error.Code != "BadRequest" || a.Error.Message != msg {
			t.Errorf("%s: %d %+v, want 400 %s", query, status, a.Error, msg)
		}
	}
	if st := srv.Stats(); st.BadRequests != 5 {
		t.Errorf("stats %+v", st)
	}
}

// TestTokensAndData: tokens are accepted until they expire; a request
// sees the last 30 days within its Timespan, and at most MaxRows rows.
func TestTokensAndData(t *testing.T) {
	old := graphtest.Generate(graphtest.GenerateOptions{Window: recovery.Window{Start: now.Add(-31 * 24 * time.Hour).UnixMilli(), End: now.Add(-31*24*time.Hour).UnixMilli() + 1000}, Count: 2, First: 100})
	rows := graphtest.Generate(graphtest.GenerateOptions{Window: window, Count: 30})
	srv := graphtest.New(t, graphtest.Options{Rows: append(old, rows...), MaxRows: 25})
	srv.AcceptToken("fresh", time.Now().Add(time.Hour))
	srv.AcceptToken("stale", time.Now().Add(-time.Second))
	for token, want := range map[string]int{graphtest.DefaultToken: 200, "fresh": 200, "stale": 401, "wrong": 401} {
		if status, _ := run(t, srv, token, "CloudAppEvents | take 1", ""); status != want {
			t.Errorf("token %s: %d, want %d", token, status, want)
		}
	}
	if st := srv.Stats(); st.Unauthorized != 2 || st.Expired != 1 {
		t.Errorf("stats %+v", st)
	}
	if _, a := run(t, srv, graphtest.DefaultToken, "CloudAppEvents | count", ""); a.Results[0]["Count"] != float64(30) {
		t.Errorf("rows older than 30 days are visible: %v", a.Results)
	}
	span := time.UnixMilli(rows[10].Timestamp.Millis()).UTC().Format(time.RFC3339Nano) + "/" + time.UnixMilli(rows[19].Timestamp.Millis()).UTC().Format(time.RFC3339Nano)
	if _, a := run(t, srv, graphtest.DefaultToken, "CloudAppEvents | count", span); a.Results[0]["Count"] != float64(10) {
		t.Errorf("Timespan %s: %v, want 10 rows", span, a.Results)
	}
	if _, a := run(t, srv, graphtest.DefaultToken, "CloudAppEvents | take 1000", ""); len(a.Results) != 25 {
		t.Errorf("%d rows, want MaxRows 25", len(a.Results))
	}
	srv.FailEvery(2, graphtest.Fault{Status: 503})
	statuses := []int{}
	for range 4 {
		status, _ := run(t, srv, graphtest.DefaultToken, "CloudAppEvents | take 1", "")
		statuses = append(statuses, status)
	}
	if fmt.Sprint(statuses) != "[503 200 503 200]" && fmt.Sprint(statuses) != "[200 503 200 503]" {
		t.Errorf("FailEvery(2): %v", statuses)
	}
	if reqs := srv.Requests(); len(reqs) != srv.Stats().Requests || reqs[0].Auth != "Bearer" || reqs[0].Query != "CloudAppEvents | take 1" {
		t.Errorf("requests %+v", reqs[0])
	}
}
