package sink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/sink/rsyslogtest"
)

func TestRELPToRsyslog(t *testing.T) {
	for _, header := range []string{SyslogRFC5424, SyslogRFC3164} {
		t.Run(header, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
			defer cancel()
			srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.RELP})
			target := "relp://" + srv.Addr
			opts := testOptions(t)
			opts.Syslog = header
			opts.RELPWindow = 16 // several windows in a batch
			as := makeActivities(1000)
			deliverAll(ctx, t, target, opts, as, 300)
			// Send returned: rsyslog acknowledged everything, and its
			// direct queue wrote each message before acknowledging it.
			wantEachOnceInOrder(t, srv, target, opts, as)
		})
	}
}

// TestRELPOverTLSToRsyslog: relp+tls:// is RELP inside TLS, to imrelp with
// tls="on", which always asks the client for a certificate: with the CA
// and a client certificate every activity arrives once, in order; without
// the certificate, or with a server certificate not trusted, Send ends on
// the Data server connection error and its remedy, and rsyslog writes
// nothing.
func TestRELPOverTLSToRsyslog(t *testing.T) {
	pki := rsyslogtest.NewPKI(t)
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.RELPTLS, PKI: pki})
	target := "relp+tls://" + srv.Addr
	t.Run("delivered", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
		defer cancel()
		opts := testOptions(t)
		opts.CAFile, opts.CertFile, opts.KeyFile = pki.CAFile, pki.ClientCertFile, pki.ClientKeyFile
		opts.RELPWindow = 16 // several windows in a batch
		as := makeActivities(1000)
		deliverAll(ctx, t, target, opts, as, 300)
		wantEachOnceInOrder(t, srv, target, opts, as)
	})
	refused := []struct {
		name string
		opts func(*Options)
		want string
	}{
		{"no client certificate", func(o *Options) { o.CAFile = pki.CAFile },
			target + " asked for a client certificate, then dropped the connection; check --tls-cert and --tls-key: it wants a client certificate signed by a CA it trusts"},
		{"server not trusted", func(o *Options) { o.CertFile, o.KeyFile = pki.ClientCertFile, pki.ClientKeyFile },
			"the TLS handshake with " + target + " failed: the server certificate is not trusted: x509: certificate signed by unknown authority; give --ca-file the CA certificate (PEM) that signed the syslog server's certificate"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
			defer cancel()
			before := srv.Count()
			opts := testOptions(t)
			tt.opts(&opts)
			s, err := Open(ctx, target, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.Send(ctx, recovery.Batch{Activities: makeActivities(3)})
			if !errors.Is(err, recovery.ErrSink) || ctx.Err() != nil {
				t.Fatalf("Send: %v, want a Data server connection error before the test's deadline", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Send's error:\n got %s\nwant %s", got, tt.want)
			}
			if n := srv.Count() - before; n != 0 {
				t.Errorf("rsyslog wrote %d messages", n)
			}
		})
	}
}

// startRELP starts rsyslog with imrelp and opens a relp:// sink to it,
// whose log the returned recorder keeps.
func startRELP(ctx context.Context, t *testing.T) (*rsyslogtest.Server, recovery.Sink, Options, *logRecorder) {
	t.Helper()
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.RELP})
	opts := testOptions(t)
	logged := &logRecorder{}
	opts.Logger = slog.New(slog.NewTextHandler(logged, nil))
	s, err := Open(ctx, "relp://"+srv.Addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return srv, s, opts, logged
}

// TestRELPReceiverKilledMidBatchLosesNothing kills rsyslog (SIGKILL) in the
// middle of a batch, restarts it, and checks that every activity is in its
// output, that what was sent again is at most the window that was not
// acknowledged, and that the outage was logged once and its end once.
func TestRELPReceiverKilledMidBatchLosesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*netTimeout)
	defer cancel()
	srv, s, opts, logged := startRELP(ctx, t)
	target := "relp://" + srv.Addr
	as := makeActivities(60_000)
	type result struct {
		resent int
		err    error
	}
	done := make(chan result)
	go func() {
		resent, err := s.Send(ctx, recovery.Batch{Activities: as}) // one batch: the kill falls inside it
		done <- result{resent, err}
	}()
	srv.Await(len(as)/3, netTimeout)
	srv.Kill()
	// rsyslog writes a message before it acknowledges it: with fewer lines
	// than activities written, Send was still waiting when it died.
	if n := srv.Count(); n == len(as) {
		t.Fatal("rsyslog took the whole batch before it was killed: nothing was tested")
	}
	awaitLog(t, logged, "Data server connection error")
	srv.Restart()
	r := <-done
	if r.err != nil {
		t.Fatalf("Send: %v", r.err)
	}
	dup := compareReceived(t, srv.AwaitCount(len(as), netTimeout), expected(t, target, opts, as))
	t.Logf("receiver killed mid-batch: %d duplicates, %d sent again", dup, r.resent)
	if dup > r.resent || r.resent > DefaultRELPWindow {
		t.Fatalf("%d duplicates, %d sent again: both must be within the window of %d unacknowledged messages",
			dup, r.resent, DefaultRELPWindow)
	}
	var warned, restored int
	for _, l := range logged.lines() {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "Data server connection error: ") {
			warned++
		}
		if strings.Contains(l, "Data server connection restored") {
			restored++
		}
	}
	if warned == 0 || warned > 3 || restored != 1 {
		t.Fatalf("%d failure warnings (want each distinct failure once), %d restored:\n%s",
			warned, restored, strings.Join(logged.lines(), ""))
	}
}

// TestRELPReceiverDownAtStart: Send waits while nothing listens, logging
// the failure once, and delivers everything, with nothing sent again, once
// rsyslog is up.
func TestRELPReceiverDownAtStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	srv, s, opts, logged := startRELP(ctx, t)
	target := "relp://" + srv.Addr
	srv.Stop()
	as := makeActivities(500)
	done := make(chan error, 1)
	resent := -1
	go func() {
		var err error
		resent, err = s.Send(ctx, recovery.Batch{Activities: as})
		done <- err
	}()
	awaitLog(t, logged, "Data server connection error")
	select {
	case err := <-done:
		t.Fatalf("Send returned while the receiver was down: %v", err)
	default:
	}
	want := fmt.Sprintf(`level=WARN msg="Data server connection error: cannot connect to %s: connection refused; check the server name and port of the syslog server and that no firewall blocks it"`, target)
	if l := logged.lines(); !strings.Contains(l[0], want) {
		t.Errorf("logged %s\nwant %s", l[0], want)
	}
	srv.Restart()
	if err := <-done; err != nil {
		t.Fatalf("Send: %v", err)
	}
	if resent != 0 {
		t.Errorf("sent %d again, want 0: nothing had left", resent)
	}
	if dup := compareReceived(t, srv.Lines(), expected(t, target, opts, as)); dup != 0 {
		t.Errorf("%d duplicates", dup)
	}
}

// TestRELPReceiverRestartedBetweenBatches: the session the receiver closed
// while it was idle is opened anew without a word, and nothing is sent
// again.
func TestRELPReceiverRestartedBetweenBatches(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	srv, s, opts, logged := startRELP(ctx, t)
	target := "relp://" + srv.Addr
	as := makeActivities(400)
	if resent := sendAll(ctx, t, s, as[:200], 200); resent != 0 {
		t.Fatalf("sent %d again", resent)
	}
	srv.Stop()
	srv.Restart()
	if resent := sendAll(ctx, t, s, as[200:], 200); resent != 0 {
		t.Fatalf("sent %d again after the restart", resent)
	}
	wantEachOnceInOrder(t, srv, target, opts, as)
	if log := logged.lines(); len(log) != 0 {
		t.Errorf("logged a failure for a session closed while idle:\n%s", strings.Join(log, ""))
	}
}

func TestRELPProbe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.RELP})
	s, err := Open(ctx, "relp://"+srv.Addr, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := s.(interface{ Probe(context.Context) error })
	if err := p.Probe(ctx); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	srv.Stop()
	err = p.Probe(ctx)
	want := "cannot connect to relp://" + srv.Addr + ": connection refused; check the server name and port of the syslog server and that no firewall blocks it"
	if !errors.Is(err, recovery.ErrSink) || err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Probe with rsyslog down: %v, want a sink error saying %q", err, want)
	}
	if n := srv.Count(); n != 0 {
		t.Errorf("the probes delivered %d messages", n)
	}
}

// A fake RELP receiver, to play what rsyslog does not do on demand. Each
// session runs script, which reads the client's frames and answers them.
type fakeRELP struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
}

func startFakeRELP(t *testing.T, script func(n int, s *fakeSession)) *fakeRELP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRELP{addr: ln.Addr().String(), ln: ln}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for n := 0; ; n++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(netTimeout))
				script(n, &fakeSession{t: t, conn: conn, r: bufio.NewReader(conn)})
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

type fakeSession struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// frame reads one frame the way the spec writes it, independently of the
// sink's own reader.
func (s *fakeSession) frame() (txnr int, command string, data []byte, err error) {
	head, err := s.r.ReadString(' ')
	if err != nil {
		return 0, "", nil, err
	}
	if txnr, err = strconv.Atoi(strings.TrimSuffix(head, " ")); err != nil {
		return 0, "", nil, err
	}
	if command, err = s.r.ReadString(' '); err != nil {
		return 0, "", nil, err
	}
	command = strings.TrimSuffix(command, " ")
	var size int
	var end byte
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return 0, "", nil, err
		}
		if c < '0' || c > '9' {
			end = c
			break
		}
		size = size*10 + int(c-'0')
	}
	if end == ' ' {
		data = make([]byte, size+1)
		if _, err := io.ReadFull(s.r, data); err != nil {
			return 0, "", nil, err
		}
		end, data = data[size], data[:size]
	}
	if end != '\n' {
		return 0, "", nil, fmt.Errorf("frame %d %s does not end in LF", txnr, command)
	}
	return txnr, command, data, nil
}

func (s *fakeSession) send(frame string) {
	if _, err := io.WriteString(s.conn, frame); err != nil {
		s.t.Logf("fake RELP receiver: %v", err)
	}
}

// rsp is the frame answering txnr with data.
func rsp(txnr int, data string) string { return fmt.Sprintf("%d rsp %d %s\n", txnr, len(data), data) }

// open answers the client's open as librelp does.
func (s *fakeSession) open() bool {
	txnr, command, data, err := s.frame()
	if err != nil || command != "open" || txnr != 1 {
		s.t.Errorf("first frame: %d %s %q %v, want the open", txnr, command, data, err)
		return false
	}
	if want := "relp_version=0\nrelp_software=siem-recovery,1.0.0-test\ncommands=syslog"; string(data) != want {
		s.t.Errorf("offers %q, want %q", data, want)
	}
	s.send(rsp(1, "200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog"))
	return true
}

// TestRELPResendsExactlyTheUnacknowledged: the receiver acknowledges the
// first 40 messages, then says serverclose and drops the session; the next
// session must start with message 40 and carry every message after it once,
// in order, and the sink closes it with "close".
func TestRELPResendsExactlyTheUnacknowledged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	as := makeActivities(100)
	type session struct {
		received []string // the ids of the syslog messages, in order
		closed   bool     // it ended with "close"
	}
	sessions := make(chan session, 4)
	fake := startFakeRELP(t, func(n int, s *fakeSession) {
		var got session
		defer func() { sessions <- got }()
		if !s.open() {
			return
		}
		for {
			txnr, command, data, err := s.frame()
			if err != nil {
				return
			}
			switch command {
			case "syslog":
				got.received = append(got.received, idOf(data))
				if n == 0 && len(got.received) > 40 {
					// Everything after the 40th stays unanswered.
					s.send("0 serverclose 0\n")
					return
				}
				s.send(rsp(txnr, "200 OK"))
			case "close":
				got.closed = true
				s.send(fmt.Sprintf("%d rsp 0\n0 serverclose 0\n", txnr))
				return
			}
		}
	})
	opts := testOptions(t)
	opts.RELPWindow = 8
	var logged logRecorder
	opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	s, err := Open(ctx, "relp://"+fake.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	resent, err := s.Send(ctx, recovery.Batch{Activities: as})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	first, second := <-sessions, <-sessions
	if len(first.received) < 41 || len(first.received) > 40+opts.RELPWindow {
		t.Fatalf("the first session carried %d messages, want 41 to %d", len(first.received), 40+opts.RELPWindow)
	}
	// Sent again: what was written and not acknowledged, whether or not
	// the receiver had read it before it closed.
	if dup := len(first.received) - 40; resent < dup || resent > opts.RELPWindow {
		t.Errorf("Send says %d sent again; the receiver got %d twice, and the window is %d", resent, dup, opts.RELPWindow)
	}
	var want []string
	for _, a := range as[40:] {
		want = append(want, a.ID)
	}
	if strings.Join(second.received, ",") != strings.Join(want, ",") {
		t.Fatalf("the second session carried\n%v\nwant the unacknowledged messages from the 41st on:\n%v", second.received, want)
	}
	if !second.closed {
		t.Error("the sink did not close its session with \"close\"")
	}
	wantLog := `msg="Data server connection error: relp://` + fake.addr + ` did not acknowledge the messages sent: it closed the session;`
	if log := strings.Join(logged.lines(), ""); !strings.Contains(log, wantLog) {
		t.Errorf("log does not say %s:\n%s", wantLog, log)
	}
}

// TestRELPRefusals: what the operator reads when the receiver refuses the
// session or a message, or does not speak RELP at all.
func TestRELPRefusals(t *testing.T) {
	tests := []struct {
		name   string
		script func(s *fakeSession)
		want   string
	}{
		{"open refused", func(s *fakeSession) {
			s.frame()
			s.send(rsp(1, "500 required command missing"))
		}, `did not open a RELP session: it answered 500 required command missing; check that the port is the syslog server's RELP input (rsyslog: module imrelp, Debian package rsyslog-relp)`},
		{"no syslog command", func(s *fakeSession) {
			s.frame()
			s.send(rsp(1, "200 OK\nrelp_version=0\ncommands="))
		}, `did not open a RELP session: it does not accept the syslog command;`},
		{"not RELP", func(s *fakeSession) {
			s.frame()
			s.send("HTTP/1.1 400 Bad Request\r\n\r\n")
		}, `did not open a RELP session: it sent a frame with 'H' where a number was due;`},
		{"silent", func(s *fakeSession) {
			s.frame()
			io.Copy(io.Discard, s.r) // a plain syslog port takes it as a message
		}, `did not open a RELP session: timed out;`},
		{"message refused", func(s *fakeSession) {
			s.open()
			txnr, _, _, _ := s.frame()
			s.send(rsp(txnr, "500 command disabled"))
			io.Copy(io.Discard, s.r)
		}, `did not acknowledge the messages sent: it answered 500 command disabled; check the syslog server's log for why it refused the messages`},
		{"answer out of order", func(s *fakeSession) {
			s.open()
			s.frame()
			s.send("7 rsp 6 200 OK\n")
			io.Copy(io.Discard, s.r)
		}, `did not acknowledge the messages sent: it answered transaction 7 where 2 was due;`},
		{"control characters", func(s *fakeSession) {
			s.open()
			txnr, _, _, _ := s.frame()
			s.send(rsp(txnr, "500 bad\x1b[31m"))
			io.Copy(io.Discard, s.r)
		}, `it answered 500 \"bad\\x1b[31m\"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
			defer cancel()
			fake := startFakeRELP(t, func(n int, s *fakeSession) { tt.script(s) })
			var logged logRecorder
			opts := testOptions(t)
			opts.DialTimeout = 200 * time.Millisecond // for "silent"
			opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
			opts.OnFailure = func(string) { cancel() }
			s, err := Open(ctx, "relp://"+fake.addr, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Send(ctx, recovery.Batch{Activities: makeActivities(3)}); !errors.Is(err, context.Canceled) {
				t.Fatalf("Send: %v, want it cancelled once the failure was logged", err)
			}
			if log := strings.Join(logged.lines(), ""); !strings.Contains(log, tt.want) {
				t.Errorf("log does not say %s:\n%s", tt.want, log)
			}
		})
	}
}

func TestRELPFrames(t *testing.T) {
	tests := []struct {
		in      string
		want    relpFrame
		wantErr string
	}{
		{"2 rsp 6 200 OK\n", relpFrame{2, "rsp", []byte("200 OK")}, ""},
		{"4 rsp 0\n", relpFrame{4, "rsp", nil}, ""},
		{"0 serverclose 0\n", relpFrame{0, "serverclose", nil}, ""},
		{"999999999 rsp 6 200 OK\n", relpFrame{999999999, "rsp", []byte("200 OK")}, ""},
		{"", relpFrame{}, "EOF"},
		{"1000000000 rsp 6 200 OK\n", relpFrame{}, `with '0' where a number was due`},
		{"2 rsp 6 200 OKK\n", relpFrame{}, "does not end in LF"},
		{"2 rsp 6\n", relpFrame{}, "length does not match its data"},
		{"2 rsp 0 \n", relpFrame{}, "length does not match its data"},
		{"2 r5p 6 200 OK\n", relpFrame{}, `the command r5p`},
		{"2 rsp 70000 x", relpFrame{}, "at most 65536 expected"},
		{"2 rsp 6 200", relpFrame{}, "unexpected EOF"},
		{"x rsp 6 200 OK\n", relpFrame{}, `with 'x' where a number was due`},
	}
	for _, tt := range tests {
		rr := &relpReader{r: bufio.NewReader(strings.NewReader(tt.in))}
		got, err := rr.next()
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want one saying %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.txnr != tt.want.txnr || got.command != tt.want.command || !bytes.Equal(got.data, tt.want.data) {
			t.Errorf("%q: %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	if got := string(appendRELPFrame(nil, 3, "syslog", []byte("<134>1 x"))); got != "3 syslog 8 <134>1 x\n" {
		t.Errorf("frame %q", got)
	}
	if got := string(appendRELPFrame(nil, 9, "close", nil)); got != "9 close 0\n" {
		t.Errorf("frame %q", got)
	}
	if nextTxnr(relpMaxTxnr) != 1 || nextTxnr(1) != 2 {
		t.Error("transaction numbers must wrap from 999,999,999 to 1")
	}
}

func TestRELPOffers(t *testing.T) {
	for offers, want := range map[string]string{
		"relp_version=0\nrelp_software=librelp,1.11.0\ncommands=syslog": "",
		"relp_version=1\ncommands=eventlog,syslog":                      "",
		"commands=syslog":                  "no relp_version",
		"relp_version=2\ncommands=syslog":  "version 2",
		"relp_version=0\ncommands=syslogx": "syslog command",
		"relp_version=0":                   "syslog command",
	} {
		err := checkRELPOffers([]byte(offers))
		if (want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", offers, err, want)
		}
	}
}

// stepAcks are Acks whose record advances only when the test says.
type stepAcks struct {
	mu       sync.Mutex
	acked    int
	recorded int
	grown    chan struct{}
}

func (a *stepAcks) Acked(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acked = max(a.acked, n)
}

func (a *stepAcks) Recorded() (int, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.recorded, a.grown
}

// record records up to n of the acknowledged.
func (a *stepAcks) record(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recorded = min(n, a.acked)
	close(a.grown)
	a.grown = make(chan struct{})
}

func (a *stepAcks) get() (acked, recorded int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.acked, a.recorded
}

// TestRELPWindowCountsFromTheRecorded: with its acknowledgements recorded,
// the sink keeps at most AckWindow messages past the recorded ones on the
// wire, however fast the receiver acknowledges, and tells Acks every
// acknowledgement.
func TestRELPWindowCountsFromTheRecorded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	const window = 8
	var mu sync.Mutex
	received := 0
	fake := startFakeRELP(t, func(n int, s *fakeSession) {
		if !s.open() {
			return
		}
		for {
			txnr, command, _, err := s.frame()
			if err != nil {
				return
			}
			if command == "syslog" {
				mu.Lock()
				received++
				mu.Unlock()
			}
			s.send(rsp(txnr, "200 OK"))
		}
	})
	got := func() int { mu.Lock(); defer mu.Unlock(); return received }
	opts := testOptions(t)
	opts.RELPWindow = window
	s, err := Open(ctx, "relp://"+fake.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ahead := s.(recovery.Acknowledger).AckWindow()
	if ahead != window {
		t.Fatalf("AckWindow %d, want the window, %d", ahead, window)
	}
	as := makeActivities(100)
	acks := &stepAcks{grown: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := s.Send(ctx, recovery.Batch{Activities: as, Acks: acks})
		done <- err
	}()
	// While the record holds the sink back, it sends up to AckWindow past
	// it and no more.
	for recorded := 0; recorded+ahead < len(as); recorded += 5 {
		want := recorded + ahead
		for got() < want || func() bool { a, _ := acks.get(); return a < want }() {
			select {
			case err := <-done:
				t.Fatalf("Send returned with %d received, %d recorded: %v", got(), recorded, err)
			case <-ctx.Done():
				t.Fatalf("the receiver got %d messages with %d recorded, want %d", got(), recorded, want)
			case <-time.After(time.Millisecond):
			}
		}
		if n := got(); n != want {
			t.Fatalf("the receiver got %d messages with %d recorded: the sink may run %d past the record", n, recorded, ahead)
		}
		acks.record(recorded + 5)
	}
	acks.record(len(as))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if acked, _ := acks.get(); acked != len(as) || got() != len(as) {
		t.Fatalf("acknowledged %d, received %d, of %d", acked, got(), len(as))
	}
}
