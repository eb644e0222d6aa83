package sink

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/sink/rsyslogtest"
)

// netTimeout bounds every network test.
const netTimeout = 60 * time.Second

// makeActivities returns n activities with distinct ids whose text
// exercises the escaping: |, =, \, CR/LF, non-ASCII, IPv6.
func makeActivities(n int) []recovery.Activity {
	apps := []string{"Microsoft 365", "Box", "ServiceNow", "Salesforce"}
	descs := []string{
		"Log on", "Download file: Q3 | forecast.xlsx", "Set a=b on \\\\share\\x",
		"Line one\r\nline two", "Téléchargement « rapport » — 東京",
	}
	ips := []string{"13.82.149.151", "2001:db8::7", "198.51.100.20"}
	as := make([]recovery.Activity, n)
	for i := range as {
		id := fmt.Sprintf("%013d_%08x-0000-4000-8000-%012d", 1700000000000+int64(i/7), i, i)
		as[i] = recovery.Activity{
			ID:                  id,
			Timestamp:           1700000000000 + int64(i/7), // several per millisecond
			EventTypeName:       "EVENT_CATEGORY_" + fmt.Sprint(i%5),
			Description:         descs[i%len(descs)],
			AppName:             apps[i%len(apps)],
			UserName:            fmt.Sprintf("user%d@contoso.com", i%97),
			ClientIP:            ips[i%len(ips)],
			UserAgent:           "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
			UniqueServiceAppIDs: "APPID_" + fmt.Sprint(i%4),
			TargetObjects:       fmt.Sprintf("file%d.xlsx,user%d@contoso.com", i, i%97),
			Raw:                 []byte(fmt.Sprintf(`{"_id":%q,"timestamp":%d,"description":"x"}`, id, 1700000000000+int64(i/7))),
		}
	}
	return as
}

// testOptions are fast to retry and log to the test.
func testOptions(t *testing.T) Options {
	return Options{
		Version:        "1.0.0-test",
		PortalURL:      "https://contoso.eu2.portal.cloudappsecurity.com",
		Hostname:       "siem-recovery-host",
		Logger:         slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		InitialBackoff: 20 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
		DialTimeout:    5 * time.Second,
		WriteTimeout:   10 * time.Second,
		ConfirmTimeout: 20 * time.Second,
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// logRecorder keeps the messages logged, for tests of what the operator sees.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, string(p))
	return len(p), nil
}

func (r *logRecorder) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// awaitLog waits until the log holds want.
func awaitLog(t *testing.T, logged *logRecorder, want string) {
	t.Helper()
	for deadline := time.Now().Add(netTimeout); !strings.Contains(strings.Join(logged.lines(), ""), want); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("nothing logged %q after %v", want, netTimeout)
		}
	}
}

// expected maps each activity's id to its message as the encoder of the
// sink would send it, without framing.
func expected(t *testing.T, target string, opts Options, as []recovery.Activity) map[string][]byte {
	t.Helper()
	kind, _, err := parseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := opts.withDefaults().encoder(kind)
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[string][]byte, len(as))
	for _, a := range as {
		want[a.ID] = enc.appendMessage(nil, a)
	}
	return want
}

// idOf finds the activity id in a received CEF or JSON message.
func idOf(line []byte) string {
	for _, key := range []string{"externalId=", `"_id":"`} {
		if i := bytes.Index(line, []byte(key)); i >= 0 {
			rest := line[i+len(key):]
			if j := bytes.IndexAny(rest, ` "`); j >= 0 {
				rest = rest[:j]
			}
			return string(rest)
		}
	}
	return ""
}

// compareReceived checks that every line is the exact message of a sent
// activity and that each activity arrived; it returns how many lines were
// duplicates.
func compareReceived(t *testing.T, lines [][]byte, want map[string][]byte) (duplicates int) {
	t.Helper()
	seen := make(map[string]int, len(want))
	bad := 0
	for _, line := range lines {
		id := idOf(line)
		w, ok := want[id]
		if !ok || !bytes.Equal(line, w) {
			if bad++; bad <= 3 {
				t.Errorf("received a line that was not sent:\n got %q\nwant %q", line, w)
			}
			continue
		}
		if seen[id]++; seen[id] > 1 {
			duplicates++
		}
	}
	missing := 0
	for id := range want {
		if seen[id] == 0 {
			if missing++; missing <= 3 {
				t.Errorf("activity %s never arrived", id)
			}
		}
	}
	if missing > 0 || bad > 0 {
		t.Fatalf("%d activities missing, %d lines wrong, out of %d sent and %d received", missing, bad, len(want), len(lines))
	}
	return duplicates
}

// wantEachOnceInOrder checks that rsyslog wrote the message of every
// activity of as, byte for byte, once and in order.
func wantEachOnceInOrder(t *testing.T, srv *rsyslogtest.Server, target string, opts Options, as []recovery.Activity) {
	t.Helper()
	wantMessagesInOrder(t, srv, expected(t, target, opts, as), as)
}

// wantMessagesInOrder is wantEachOnceInOrder with the messages expected
// (expected's) made once for several receivers.
func wantMessagesInOrder(t *testing.T, srv *rsyslogtest.Server, want map[string][]byte, as []recovery.Activity) {
	t.Helper()
	lines := srv.Lines()
	if dup := compareReceived(t, lines, want); dup != 0 || len(lines) != len(as) {
		t.Fatalf("rsyslog wrote %d lines for %d activities, %d duplicates", len(lines), len(as), dup)
	}
	for i, l := range lines {
		if idOf(l) != as[i].ID {
			t.Fatalf("line %d is %s, want %s: out of order", i, idOf(l), as[i].ID)
		}
	}
}

// deliverAll opens a sink to target, sends as through it in batches of
// size batch and closes it, checking that nothing was sent again.
func deliverAll(ctx context.Context, t *testing.T, target string, opts Options, as []recovery.Activity, batch int) {
	t.Helper()
	s, err := Open(ctx, target, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if resent := sendAll(ctx, t, s, as, batch); resent != 0 {
		t.Errorf("resent %d, want 0", resent)
	}
}

// sendAll sends as in batches of size batch and returns the total resent.
func sendAll(ctx context.Context, t *testing.T, s recovery.Sink, as []recovery.Activity, batch int) int {
	t.Helper()
	resent := 0
	for len(as) > 0 {
		n := min(batch, len(as))
		r, err := s.Send(ctx, recovery.Batch{Activities: as[:n]})
		resent += r
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		as = as[n:]
	}
	return resent
}

func TestTCPToRsyslog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TCP})
	target := "tcp://" + srv.Addr
	opts := testOptions(t)
	as := makeActivities(1000)
	deliverAll(ctx, t, target, opts, as, 300)
	// Send returned: rsyslog holds everything, nothing to wait for.
	if dup := compareReceived(t, srv.Lines(), expected(t, target, opts, as)); dup != 0 {
		t.Errorf("%d duplicates", dup)
	}
}

func TestTLSToRsyslog(t *testing.T) {
	pki := rsyslogtest.NewPKI(t)
	tests := []struct {
		name       string
		clientAuth bool
		opts       func(*Options)
	}{
		{"ip address verified", false, func(o *Options) { o.CAFile = pki.CAFile }},
		{"server name", false, func(o *Options) { o.CAFile, o.ServerName = pki.CAFile, rsyslogtest.ServerName }},
		{"client certificate", true, func(o *Options) {
			o.CAFile, o.CertFile, o.KeyFile = pki.CAFile, pki.ClientCertFile, pki.ClientKeyFile
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
			defer cancel()
			srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TLS, PKI: pki, RequireClientCert: tt.clientAuth})
			target := "tls://" + srv.Addr
			opts := testOptions(t)
			opts.Syslog = SyslogRFC3164
			tt.opts(&opts)
			as := makeActivities(500)
			deliverAll(ctx, t, target, opts, as, 200)
			if dup := compareReceived(t, srv.Lines(), expected(t, target, opts, as)); dup != 0 {
				t.Errorf("%d duplicates", dup)
			}
		})
	}
}

// TestHundredThousandToRsyslog sends 100,000 activities over TCP with LF
// framing, over TCP with octet counting, over TLS and over RELP: each
// arrives complete and byte-identical to the formatter's output.
func TestHundredThousandToRsyslog(t *testing.T) {
	pki := rsyslogtest.NewPKI(t)
	as := makeActivities(100_000)
	// Every network sink sends the same messages (RFC 5424, CEF); only
	// their framing differs, and rsyslog writes the messages.
	want := expected(t, "tcp://127.0.0.1:514", testOptions(t), as)
	for _, tt := range []struct {
		name, scheme string
		transport    string
		framing      string
	}{
		{"tcp lf", "tcp", rsyslogtest.TCP, FramingLF},
		{"tcp octet", "tcp", rsyslogtest.TCP, FramingOctet},
		{"tls octet", "tls", rsyslogtest.TLS, FramingOctet},
		{"relp", "relp", rsyslogtest.RELP, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each with its own rsyslog
			ctx, cancel := context.WithTimeout(context.Background(), 2*netTimeout)
			defer cancel()
			srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: tt.transport, PKI: pki})
			target := tt.scheme + "://" + srv.Addr
			opts := testOptions(t)
			opts.Framing = tt.framing
			opts.CAFile = map[string]string{"tls": pki.CAFile}[tt.scheme]
			deliverAll(ctx, t, target, opts, as, 5000)
			wantMessagesInOrder(t, srv, want, as) // once Send returned
		})
	}
}

// TestReceiverCrashLosesNothing kills rsyslog (SIGKILL) while batches are
// streaming, restarts it, and checks that every activity ends up in its
// output; what arrived twice is counted in resent.
func TestReceiverCrashLosesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*netTimeout)
	defer cancel()
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TCP})
	target := "tcp://" + srv.Addr
	opts := testOptions(t)
	var logged logRecorder
	opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	var failures []string
	opts.OnFailure = func(msg string) { failures = append(failures, msg) }
	as := makeActivities(60_000)
	s, err := Open(ctx, target, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan int)
	go func() {
		resent := 0
		for rest := as; len(rest) > 0; {
			n := min(2000, len(rest))
			r, err := s.Send(ctx, recovery.Batch{Activities: rest[:n]})
			resent += r
			if err != nil {
				t.Errorf("Send: %v", err)
				break
			}
			rest = rest[n:]
		}
		done <- resent
	}()
	srv.Await(len(as)/3, netTimeout)
	srv.Kill()
	// Down for a while: the sender keeps retrying, logging the failure once.
	awaitLog(t, &logged, "Data server connection error")
	srv.Restart()
	resent := <-done
	dup := compareReceived(t, srv.AwaitCount(len(as), netTimeout), expected(t, target, opts, as))
	t.Logf("receiver killed mid-stream: %d duplicates, %d counted as resent", dup, resent)
	if dup > resent || resent > 2*2000 {
		t.Fatalf("%d duplicates, %d resent: duplicates must be counted and bounded by the batches in flight", dup, resent)
	}
	var warned, restored int
	for _, l := range logged.lines() {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "Data server connection error: ") &&
			strings.Contains(l, "check the server name and port of the syslog server and that no firewall blocks it") {
			warned++
		}
		if strings.Contains(l, "Data server connection restored") {
			restored++
		}
	}
	if warned == 0 || warned > 3 || restored != 1 || len(failures) != warned {
		t.Fatalf("%d failure warnings (want each distinct failure once), %d restored, %d reported:\n%s",
			warned, restored, len(failures), strings.Join(logged.lines(), ""))
	}
}

// TestPreparedBatchesAreTheCallers: what Prepare makes belongs to the
// caller, who hands it to Send with its very activities: several batches
// prepared at once (by lanes, on their own goroutines, beside a Send)
// never share memory, a prepared value handed back is formatted anew, and
// each Send delivers its own batch, over TCP and over RELP alike.
func TestPreparedBatchesAreTheCallers(t *testing.T) {
	for _, transport := range []string{rsyslogtest.TCP, rsyslogtest.RELP} {
		t.Run(transport, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
			defer cancel()
			srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: transport})
			target := transport + "://" + srv.Addr
			opts := testOptions(t)
			s, err := Open(ctx, target, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p := s.(recovery.Preparer)
			as := makeActivities(8000) // batches of 1000: several parts each
			var batches [][]recovery.Activity
			for i := 0; i < len(as); i += 1000 {
				batches = append(batches, as[i:i+1000])
			}
			prepared := make([]recovery.Prepared, len(batches))
			var wg sync.WaitGroup
			for i := range 4 { // four lanes prepare at once, beside a Send
				wg.Add(1)
				go func() {
					defer wg.Done()
					prepared[i] = p.Prepare(nil, batches[i])
				}()
			}
			if _, err := s.Send(ctx, recovery.Batch{Activities: batches[0], Prepared: p.Prepare(nil, batches[0])}); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			for i := 1; i < len(batches); i++ {
				b := recovery.Batch{Activities: batches[i], Prepared: prepared[i]}
				if b.Prepared == nil { // the memory of a batch already sent
					b.Prepared = p.Prepare(prepared[i-4], batches[i])
				}
				if _, err := s.Send(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			wantEachOnceInOrder(t, srv, target, opts, as)
		})
	}
}
