package graph_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/graph"
	"siem-recovery/recovery/graph/graphtest"
)

// TestParseWhere is the table of what a --where file may hold: one
// condition, understood far enough that a pipe in a string or a comment is
// text, and anything that would run more than a where clause refused with
// its line and column.
func TestParseWhere(t *testing.T) {
	for _, tc := range []struct {
		text, want string // want: the predicate kept; "" when refused
		err        string // the refusal, without the remedy
	}{
		{text: `ActionType == "FileDownloaded"`, want: `ActionType == "FileDownloaded"`},
		{text: "where Application in (\"Microsoft Teams\", 'Salesforce')\n", want: `Application in ("Microsoft Teams", 'Salesforce')`},
		{text: `  where   ApplicationId == 11161 and not(IsAdminOperation)`, want: `ApplicationId == 11161 and not(IsAdminOperation)`},
		{text: `ObjectName has "a|b;c" or ObjectName == 'it\'s | here'`, want: `ObjectName has "a|b;c" or ObjectName == 'it\'s | here'`},
		{text: `ObjectName == @"C:\share\a|b" or ObjectName == @"say ""|"""`, want: `ObjectName == @"C:\share\a|b" or ObjectName == @"say ""|"""`},
		{text: `AccountId == h"secret@contoso.com" and City in~ ("Paris") and Isp !in ("x")`, want: `AccountId == h"secret@contoso.com" and City in~ ("Paris") and Isp !in ("x")`},
		{text: "ActionType != \"Send\" // not | mail; nor ; union\nand Application !has \"Teams\"", want: "ActionType != \"Send\" // not | mail; nor ; union\nand Application !has \"Teams\""},
		{text: `Timestamp between (datetime(2024-05-01) .. 1h) and toint(AppInstanceId) >= 0`, want: `Timestamp between (datetime(2024-05-01) .. 1h) and toint(AppInstanceId) >= 0`},
		{text: `RawEventData.Workload =~ "Exchange" and tostring(ActivityObjects[0].Name) startswith "Q3"`, want: `RawEventData.Workload =~ "Exchange" and tostring(ActivityObjects[0].Name) startswith "Q3"`},
		{text: `hasRole == true`, want: `hasRole == true`},

		{text: ``, err: "the where clause holds no condition"},
		{text: "where\n// only a comment", err: "the where clause holds no condition"},
		{text: `ActionType == "x" | take 10`, err: "the where clause has a pipe (|): it would run an operator after the condition (line 1, column 19)"},
		{text: "ActionType == \"x\";\nDeviceEvents", err: "the where clause has a semicolon (;): it would start another statement (line 1, column 18)"},
		{text: `let x = 1`, err: `the where clause has "let", which does not belong in one condition (it starts another statement or reads another table) (line 1, column 1)`},
		{text: "ActionType in (\n  union DeviceEvents)", err: `the where clause has "union", which does not belong in one condition (it starts another statement or reads another table) (line 2, column 3)`},
		{text: `AccountId in (toscalar(IdentityInfo))`, err: `the where clause has "toscalar", which does not belong`},
		{text: `ActionType == database("other").CloudAppEvents`, err: `the where clause has "database", which does not belong`},
		{text: `ActionType == "a" where ActionType == "b"`, err: `the where clause has "where", which does not belong`},
		{text: `Application in (externaldata(x:string) [@"https://example.com/x"])`, err: `the where clause has "externaldata"`},
		{text: `(ActionType == "x"`, err: `the where clause leaves 1 "(" unclosed (line 1, column 19)`},
		{text: `ActionType == "x")`, err: `the where clause has a ")" that closes nothing (line 1, column 18)`},
		{text: `ActionType == "x`, err: `the where clause has a string literal that does not end (line 1, column 15)`},
		{text: "ActionType == \"x\ny\"", err: `the where clause has a string literal that does not end on its line (line 1, column 15)`},
		{text: "ActionType == {\"a\":1}", err: `the where clause has "{", which has no place in a condition (line 1, column 15)`},
		{text: "ActionType == ```x```", err: "the where clause has \"`\", which has no place in a condition (line 1, column 15)"},
		{text: "ActionType == \"x\"\x00", err: `the where clause has "\x00", which has no place in a condition`},
		{text: "ActionType == \"a\x1bb\"", err: `the where clause has the control character '\x1b' in a string literal`},
		{text: "ActionType == \"x\" // \x07bell", err: `the where clause has the control character '\a'`},
		{text: `$left.ActionType == "x"`, err: `the where clause has "$", which has no place in a condition`},
		{text: "\xff", err: "the where clause is not UTF-8 text"},
	} {
		p, err := graph.ParseWhere(tc.text)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: refused: %v", tc.text, err)
		case tc.err == "" && p.String() != tc.want:
			t.Errorf("%q: kept %q, want %q", tc.text, p, tc.want)
		case tc.err != "" && err == nil:
			t.Errorf("%q: accepted as %q, want %s", tc.text, p, tc.err)
		case tc.err != "" && (!errors.Is(err, recovery.ErrUsage) || !strings.HasPrefix(err.Error(), tc.err)):
			t.Errorf("%q:\n got %v\nwant %s…", tc.text, err, tc.err)
		case tc.err != "" && !strings.HasSuffix(err.Error(), `; give one KQL predicate, the condition of a where clause over CloudAppEvents, e.g. ActionType == "FileDownloaded" and Application in ("Microsoft OneDrive for Business")`):
			t.Errorf("%q: no remedy in %v", tc.text, err)
		}
	}
	if _, err := graph.ParseWhere(strings.Repeat("a", graph.MaxWhere+1)); err == nil {
		t.Error("a predicate over MaxWhere bytes was accepted")
	}
}

// TestWhereSelectsRows: the predicate reaches the API in its own where
// clause, a pipe in a string and a comment with a pipe included, and only
// the rows it selects come.
func TestWhereSelectsRows(t *testing.T) {
	all, _ := rowsFor(2_000, 100, 700)
	srv := graphtest.New(t, graphtest.Options{Rows: all})
	where, err := graph.ParseWhere("where (ActionType == \"FileDownloaded\" and ObjectName == \"Q3 budget|draft=v2.xlsx\") // | not this\n" +
		"   or Application in (\"Microsoft Teams\", \"Salesforce\") and not(IsAdminOperation)")
	if err != nil {
		t.Fatal(err)
	}
	src, _ := newSource(t, srv, func(c *graph.Config) { c.PageSize = 150; c.Where = where })
	var want []string
	for _, r := range all {
		if testWindow.Contains(r.Timestamp.Millis()) &&
			(r.ActionType == "FileDownloaded" && r.ObjectName == "Q3 budget|draft=v2.xlsx" ||
				(r.Application == "Microsoft Teams" || r.Application == "Salesforce") && !r.IsAdminOperation) {
			want = append(want, r.ReportID)
		}
	}
	if len(want) < 300 || len(want) > 1000 {
		t.Fatalf("the predicate selects %d rows of 2000: the test needs a part of them", len(want))
	}
	drainAll(t, src, want)
	n, requests, err := countAll(ctxFor(t, time.Minute), src)
	if err != nil || n != int64(len(want)) || requests != 1 {
		t.Errorf("Count: %d in %d requests (%v), want %d in 1", n, requests, err, len(want))
	}
}

// TestWhereTheAPIRefuses: a predicate the API cannot run (an unknown
// column, strings ordered with <) is a usage error with the API's reason,
// after one request.
func TestWhereTheAPIRefuses(t *testing.T) {
	for _, tc := range []struct{ where, reason string }{
		{`Actiontype == "x"`, "(BadRequest: Semantic error: 'where' operator: Failed to resolve scalar expression named 'Actiontype')"},
		{`ReportId > "x"`, "(BadRequest: Semantic error: Cannot compare values of types string and string. Try adding explicit casts)"},
		{`ActionType == "x" and frobnicate(ActionType)`, "(BadRequest: Syntax error: the emulator does not know the function frobnicate() (line 4, position 23))"},
	} {
		srv := graphtest.New(t, graphtest.Options{})
		where, err := graph.ParseWhere(tc.where)
		if err != nil {
			t.Fatal(err)
		}
		src, _ := newSource(t, srv, func(c *graph.Config) { c.Where = where })
		_, err = src.Fetch(ctxFor(t, time.Minute), recovery.Cursor{})
		want := "the API refused the query (400) at " + srv.URL + graphtest.Path + ": " + tc.reason
		if !errors.Is(err, recovery.ErrUsage) || !strings.HasPrefix(err.Error(), want+"; give one KQL predicate") {
			t.Errorf("%s:\n got %v\nwant %s; give one KQL predicate…", tc.where, err, want)
		}
		if n := srv.Stats().Requests; n != 1 {
			t.Errorf("%s: %d requests, want 1", tc.where, n)
		}
		if err := src.Probe(ctxFor(t, time.Minute)); !errors.Is(err, recovery.ErrUsage) {
			t.Errorf("%s: Probe: %v, want the same usage error", tc.where, err)
		}
	}
}
