package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/entra/entratest"
	"siem-recovery/recovery/graph/graphtest"
)

// The Graph source (issue 27) through the binary: --source graph against
// the Graph emulator, authenticated as an Entra ID application by the
// Entra ID emulator, both over TLS trusted through SSL_CERT_FILE.

// graphRun is a recovery of CloudAppEvents rows from the Graph emulator.
type graphRun struct {
	api   *graphtest.Server
	entra *entratest.Server
	rows  []graphtest.Row
	dir   string
	args  []string
	env   []string
}

// graphWindow is a window of the last days: advanced hunting keeps 30.
func graphWindow() recovery.Window {
	end := time.Now().Add(-48 * time.Hour).Truncate(time.Hour)
	return recovery.Window{Start: end.Add(-6 * time.Hour).UnixMilli(), End: end.UnixMilli()}
}

func newGraphRun(t *testing.T, opts graphtest.GenerateOptions) *graphRun {
	t.Helper()
	g := &graphRun{rows: graphtest.Generate(opts)}
	g.api = graphtest.New(t, graphtest.Options{Rows: g.rows})
	g.entra = entratest.New(t, entratest.Options{OnToken: func(tok string, exp time.Time) { g.api.AcceptToken(tok, exp) }})
	g.entra.Register(entraTenant, entratest.App{ClientID: entraClient, Secret: entraSecret})
	g.dir = t.TempDir()
	ca := writeFile(t, g.dir, "ca.pem", string(g.entra.CAPEM())+string(g.api.CAPEM()))
	g.env = []string{"SSL_CERT_FILE=" + ca, "AZURE_TENANT_ID=" + entraTenant, "AZURE_CLIENT_ID=" + entraClient,
		"AZURE_CLIENT_SECRET=" + entraSecret, "AZURE_AUTHORITY_HOST=" + g.entra.URL}
	g.args = []string{"--start", strconv.FormatInt(opts.Window.Start, 10), "--end", strconv.FormatInt(opts.Window.End, 10),
		"--source", "graph", "--graph-url", g.api.URL, "--checkpoint", "cp.db", "--rate-limit", "6000"}
	return g
}

func (g *graphRun) run(t *testing.T, extra ...string) result {
	t.Helper()
	return runBin(t, g.dir, g.env, append(append([]string{"run"}, g.args...), extra...)...)
}

// streamedIDs reads a file of streaming API records: each line's
// properties.ReportId, and checks each line is the record the streaming
// API writes for a CloudAppEvents row.
func streamedIDs(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for n := 1; sc.Scan(); n++ {
		var rec struct {
			Time          string         `json:"time"`
			TenantID      string         `json:"tenantId"`
			OperationName string         `json:"operationName"`
			Category      string         `json:"category"`
			Properties    map[string]any `json:"properties"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("line %d is no JSON record: %v: %.200s", n, err, sc.Bytes())
		}
		if rec.OperationName != "Publish" || rec.Category != "AdvancedHunting-CloudAppEvents" || rec.TenantID != entraTenant || rec.Time == "" {
			t.Fatalf("line %d is not a streaming API record of the tenant: %.300s", n, sc.Bytes())
		}
		id, _ := rec.Properties["ReportId"].(string)
		ids[id]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// wantEachOnce fails unless got holds each of the rows' ids exactly once,
// and nothing else.
func wantEachOnce(t *testing.T, got map[string]int, rows []graphtest.Row) {
	t.Helper()
	missing, twice := 0, 0
	want := graphtest.IDs(rows)
	for _, id := range want {
		switch got[id] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	if missing > 0 || twice > 0 || len(got) != len(want) {
		t.Fatalf("%d rows: %d missing, %d more than once, %d ids in all", len(want), missing, twice, len(got))
	}
}

// The "done when": a 30,000-row window with 200 rows in one
// millisecond arrives exactly once in a file as the streaming API's
// records, also across three kill -9.
func TestGraphWindowExactlyOnceAcrossKills(t *testing.T) {
	t.Parallel()
	g := newGraphRun(t, graphtest.GenerateOptions{Window: graphWindow(), Count: 30_000, Burst: 200, BurstIndex: 14_950})
	// Answers slow enough that the kills land in the middle of the run.
	g.api.FailEvery(1, graphtest.Fault{Delay: 40 * time.Millisecond})
	out := filepath.Join(g.dir, "out.jsonl")
	args := append(append([]string{"run"}, g.args...), "--format", "json", "--sink", "file:out.jsonl", "--page-size", "500")
	for kill := 1; kill <= 3; kill++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd, stderr, done := startBinIn(ctx, t, g.dir, g.env, args...)
		size := int64(kill) * 3 << 20 // a few MB more each time
		waitForSize(t, out, size, done)
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		cancel()
		if t.Failed() {
			t.Fatalf("run %d: %s", kill, stderr.String())
		}
	}
	g.api.ClearFaults()
	r := runBin(t, g.dir, g.env, args...)
	wantCode(t, r, 0)
	wantEachOnce(t, streamedIDs(t, out), g.rows)
	if st := statusJSON(t, g.dir, "cp.db"); st.State != "completed" || st.Sent != 30_000 {
		t.Errorf("status %s, %d sent; want completed, 30000", st.State, st.Sent)
	}
}

// CEF lines carry the row's columns where Microsoft's mapping of the
// agent's fields says: ReportId, ActionType, Application, IPAddress,
// UserAgent; cs1 is empty (a row has no page in the MCAS portal).
func TestGraphCEFMapping(t *testing.T) {
	t.Parallel()
	g := newGraphRun(t, graphtest.GenerateOptions{Window: graphWindow(), Count: 40})
	r := g.run(t, "--sink", "file:out.cef")
	wantCode(t, r, 0)
	data, err := os.ReadFile(filepath.Join(g.dir, "out.cef"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 40 {
		t.Fatalf("%d CEF lines, want 40", len(lines))
	}
	byID := map[string]graphtest.Row{}
	for _, row := range g.rows {
		byID[row.ReportID] = row
	}
	for _, line := range lines {
		i := strings.Index(line, "externalId=")
		id := line[i+len("externalId=") : i+strings.Index(line[i:], " ")]
		row, ok := byID[id]
		if !ok {
			t.Fatalf("a line of no row: %s", line)
		}
		for _, want := range []string{"|" + row.ActionType + "|" + row.ActionType + "|0|", " destinationServiceName=" + row.Application + " ",
			" requestClientApplication=" + row.UserAgent + " ", " cs1Label=portalURL cs1= "} {
			if !strings.Contains(line, strings.ReplaceAll(want, "=", "=")) {
				t.Errorf("line of %s lacks %q:\n%s", id, want, line)
			}
		}
		if ip := row.IPAddress; ip != "" && !strings.Contains(ip, ":") && !strings.Contains(line, " dvc="+ip+" ") {
			t.Errorf("line of %s lacks dvc=%s:\n%s", id, ip, line)
		}
	}
}

// 429s, queries that time out and results too large still end with each
// row exactly once.
func TestGraphThrottlingAndHeavyQueriesLoseNothing(t *testing.T) {
	t.Parallel()
	g := newGraphRun(t, graphtest.GenerateOptions{Window: graphWindow(), Count: 6000, Burst: 300, BurstIndex: 2900})
	g.api.FailEvery(3, graphtest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "0"})
	g.api.FailEvery(7, graphtest.FaultTimeout)
	g.api.FailEvery(11, graphtest.FaultTooLarge)
	r := g.run(t, "--format", "json", "--sink", "file:out.jsonl", "--page-size", "1000", "--max-critical-errors", "30")
	wantCode(t, r, 0)
	wantEachOnce(t, streamedIDs(t, filepath.Join(g.dir, "out.jsonl")), g.rows)
	if st := g.api.Stats(); st.Throttled == 0 || st.Faults < 3 {
		t.Errorf("the faults did not happen: %+v", st)
	}
	if !bytes.Contains([]byte(r.stderr), []byte("halves")) && !bytes.Contains([]byte(r.stderr), []byte("half")) {
		t.Logf("no word of a cut in the log:\n%s", r.stderr)
	}
}

// A window older than the 30 days advanced hunting keeps is a usage error
// that names the MCAS activities API, which keeps 180.
func TestGraphWindowTooOld(t *testing.T) {
	t.Parallel()
	end := time.Now().Add(-31 * 24 * time.Hour).Truncate(time.Hour)
	g := newGraphRun(t, graphtest.GenerateOptions{Window: recovery.Window{Start: end.Add(-time.Hour).UnixMilli(), End: end.UnixMilli()}, Count: 1})
	r := g.run(t)
	wantCode(t, r, exitUsage)
	wantStderr(t, r, "Usage error: the window starts at ", "older than the 30 days advanced hunting keeps",
		"recover windows older than 30 days from the MCAS activities API (--source https://TENANT.REGION.portal.cloudappsecurity.com), which keeps activities for 180 days")
	if st := g.api.Stats(); st.Requests != 0 {
		t.Errorf("%d requests for a window it cannot hold", st.Requests)
	}
	if _, err := os.Stat(filepath.Join(g.dir, "cp.db")); err == nil {
		t.Error("a checkpoint was made for a window refused")
	}
}

// follow refuses the Graph source: advanced hunting keeps no time a row
// was saved, so a feed would lose the rows that arrive after its margin.
// Nothing is asked of Graph and no checkpoint is made.
func TestGraphFollowRefused(t *testing.T) {
	t.Parallel()
	g := newGraphRun(t, graphtest.GenerateOptions{Window: graphWindow(), Count: 1})
	r := runBin(t, g.dir, g.env, "follow", "--source", "graph", "--graph-url", g.api.URL, "--checkpoint", "cp.db", "--sink", "file:out.cef", "--once")
	wantCode(t, r, exitUsage)
	wantStderr(t, r, "Usage error: Defender XDR advanced hunting (--source graph) keeps no time a record was saved: a feed would lose the records that arrive late",
		"follow the MCAS API (--source https://TENANT.REGION.portal.cloudappsecurity.com); recover windows of Defender XDR advanced hunting (--source graph) with run")
	if st := g.api.Stats(); st.Requests != 0 {
		t.Errorf("%d requests for a feed refused", st.Requests)
	}
	if _, err := os.Stat(filepath.Join(g.dir, "cp.db")); err == nil {
		t.Error("a checkpoint was made for a feed refused")
	}
}

// check on the Graph source: the identity, a token obtained and accepted
// (one query), the count (one count() query), the where clause as the
// filter.
func TestGraphCheck(t *testing.T) {
	t.Parallel()
	g := newGraphRun(t, graphtest.GenerateOptions{Window: graphWindow(), Count: 120})
	where := writeFile(t, g.dir, "where.kql", `ActionType == "`+g.rows[0].ActionType+`"`)
	r := runBin(t, g.dir, g.env, append(append([]string{"check"}, g.args...), "--where", where, "--sink", "file:out.cef")...)
	wantCode(t, r, 0)
	want := 0
	for _, row := range g.rows {
		if row.ActionType == g.rows[0].ActionType {
			want++
		}
	}
	out := strings.Join(strings.Fields(r.stdout), " ")
	for _, line := range []string{
		"OK filter where ActionType == \"" + g.rows[0].ActionType + "\"",
		"OK source graph:" + g.api.URL,
		"OK identity Entra ID application (client secret), client " + entraClient + ", tenant " + entraTenant,
		"OK token obtained, valid for 1h0m0s; the API accepted it (one request)",
		"OK count " + strconv.Itoa(want) + " activities in the window (one more request)",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("check lacks %q:\n%s", line, r.stdout)
		}
	}
}

// The dry run of the Graph source counts with one count() query, and
// verify compares that count with what the checkpoint sent, and with what
// the SIEM holds (the streaming records it received).
func TestGraphDryRunAndVerify(t *testing.T) {
	t.Parallel()
	g := newGraphRun(t, graphtest.GenerateOptions{Window: graphWindow(), Count: 700})
	r := g.run(t, "--dry-run")
	wantCode(t, r, 0)
	wantStderr(t, r, "activities=700", "api_requests=1")
	wantCode(t, g.run(t, "--format", "json", "--sink", "file:out.jsonl"), 0)
	v := runBin(t, g.dir, g.env, append([]string{"verify"}, g.args...)...)
	wantCode(t, v, 0)
	v = runBin(t, g.dir, g.env, append(append([]string{"verify"}, g.args...), "--received", "out.jsonl")...)
	wantCode(t, v, 0)
}
