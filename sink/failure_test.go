package sink

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/sink/rsyslogtest"
)

// Failure handling of the TCP and TLS sinks: what the operator is told and
// when Send gives up.

func TestUnreachableReceiverIsLoggedOnceUntilCancelled(t *testing.T) {
	port := rsyslogtest.FreePort(t, "tcp")
	target := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	var logs logRecorder
	opts := testOptions(t)
	opts.InitialBackoff, opts.MaxBackoff = 5*time.Millisecond, 20*time.Millisecond
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s, err := Open(context.Background(), target, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = s.Send(ctx, recovery.Batch{Activities: makeActivities(3)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send: %v, want one wrapping context.DeadlineExceeded", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "Data server connection error: cannot connect to "+target+": connection refused") {
		t.Errorf("Send's error %q does not name the last failure", err)
	}
	lines := logs.lines()
	if len(lines) != 1 {
		t.Fatalf("logged %d lines, want the failure once:\n%s", len(lines), strings.Join(lines, ""))
	}
	want := fmt.Sprintf(`level=WARN msg="Data server connection error: cannot connect to %s: connection refused; check the server name and port of the syslog server and that no firewall blocks it" sink=%s`, target, target)
	if !strings.Contains(lines[0], want) {
		t.Errorf("logged %s\nwant %s", lines[0], want)
	}
}

// TestTLSRefusalIsAConfigurationError: a receiver that refuses our TLS
// setup (its certificate is not trusted or not for the name, it wants a
// client certificate we do not have or one from another CA, the port does
// not speak TLS) ends Send with the Data server connection error and its
// remedy, instead of being retried forever; the receiver gets nothing.
func TestTLSRefusalIsAConfigurationError(t *testing.T) {
	pki, other := rsyslogtest.NewPKI(t), rsyslogtest.NewPKI(t)
	anon := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TLS, PKI: pki})
	strict := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TLS, PKI: pki, RequireClientCert: true})
	notTLS := nonTLSServer(t)
	clientCert := "; check --tls-cert and --tls-key: it wants a client certificate signed by a CA it trusts"
	tests := []struct {
		name     string
		srv      *rsyslogtest.Server // nil: notTLS
		opts     func(*Options)
		want     string // the error after the target
		attempts int    // how many connections it took
	}{
		{"untrusted", anon, func(o *Options) {},
			" failed: the server certificate is not trusted: x509: certificate signed by unknown authority; give --ca-file the CA certificate (PEM) that signed the syslog server's certificate", 1},
		{"name mismatch", anon, func(o *Options) { o.CAFile, o.ServerName = pki.CAFile, "siem.example" },
			` failed: the server certificate is not trusted: x509: certificate is valid for rsyslog.test, not siem.example; give --tls-server-name one of the names the syslog server's certificate carries (rsyslog.test, 127.0.0.1), ` +
				`or name the server by one of them in --sink, or give the server a certificate with a subjectAltName for siem.example (docs/runbook.md, "The receiving rsyslog")`, 1},
		{"no client certificate", strict, func(o *Options) { o.CAFile = pki.CAFile },
			" asked for a client certificate, then dropped the connection" + clientCert, refusalsToStop},
		{"client certificate of another CA", strict, func(o *Options) {
			o.CAFile, o.CertFile, o.KeyFile = pki.CAFile, other.ClientCertFile, other.ClientKeyFile
		}, " asked for a client certificate, then dropped the connection" + clientCert, refusalsToStop},
		{"not TLS", nil, func(o *Options) { o.CAFile = pki.CAFile },
			" failed: the receiver does not speak TLS on this port; use the syslog server's TLS port, or a tcp:// sink", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
			defer cancel()
			addr, before := notTLS.addr, notTLS.count()
			if tt.srv != nil {
				addr = tt.srv.Addr
			}
			opts := testOptions(t)
			tt.opts(&opts)
			s, err := Open(ctx, "tls://"+addr, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.Send(ctx, recovery.Batch{Activities: makeActivities(3)})
			var problem *recovery.Error
			if !errors.As(err, &problem) || !errors.Is(err, recovery.ErrSink) || ctx.Err() != nil {
				t.Fatalf("Send: %v, want a Data server connection error before the test's deadline", err)
			}
			prefix := "tls://" + addr
			if !strings.HasSuffix(tt.want, clientCert) {
				prefix = "the TLS handshake with tls://" + addr
			}
			if got := err.Error(); got != prefix+tt.want {
				t.Errorf("Send's error:\n got %s\nwant %s", got, prefix+tt.want)
			}
			if tt.srv == nil {
				if n := notTLS.count() - before; n != tt.attempts {
					t.Errorf("%d connections, want %d", n, tt.attempts)
				}
			} else if n := tt.srv.Count(); n != 0 {
				t.Errorf("rsyslog wrote %d messages", n)
			}
		})
	}
}

// nonTLSServer answers every connection with a line of plain text, as a
// service that is not a TLS syslog receiver would.
func nonTLSServer(t *testing.T) *plainTextServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s := &plainTextServer{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.n++
			s.mu.Unlock()
			c.Write([]byte("220 ready\r\n"))
			c.Close()
		}
	}()
	return s
}

type plainTextServer struct {
	addr string
	mu   sync.Mutex
	n    int
}

func (s *plainTextServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// TestCheckProbeSeesARefusedClientCertificate: with TLS 1.3 the handshake
// ends on our side before rsyslog has refused our missing certificate;
// Probe, which check uses, still sees the refusal, in one attempt.
func TestCheckProbeSeesARefusedClientCertificate(t *testing.T) {
	pki := rsyslogtest.NewPKI(t)
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TLS, PKI: pki, RequireClientCert: true})
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	opts := testOptions(t)
	opts.CAFile = pki.CAFile
	probe := func(o Options) error {
		s, err := Open(ctx, "tls://"+srv.Addr, o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return s.(interface{ Probe(context.Context) error }).Probe(ctx)
	}
	want := "tls://" + srv.Addr + " asked for a client certificate, then dropped the connection; check --tls-cert and --tls-key: it wants a client certificate signed by a CA it trusts"
	if err := probe(opts); err == nil || err.Error() != want || !errors.Is(err, recovery.ErrSink) {
		t.Fatalf("Probe without a client certificate: %v\nwant %s", err, want)
	}
	opts.CertFile, opts.KeyFile = pki.ClientCertFile, pki.ClientKeyFile
	if err := probe(opts); err != nil {
		t.Fatalf("Probe with the client certificate: %v", err)
	}
	if n := srv.Count(); n != 0 {
		t.Errorf("Probe sent %d messages", n)
	}
}

// TestLastingOutageIsLoggedEveryInterval: the first failure is logged at
// once, then, while it lasts, a reminder at least every RemindEvery that
// says since when and after how many attempts.
func TestLastingOutageIsLoggedEveryInterval(t *testing.T) {
	target := fmt.Sprintf("tcp://127.0.0.1:%d", rsyslogtest.FreePort(t, "tcp"))
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	reminder := regexp.MustCompile(`^time=\S+ level=WARN msg="still waiting for the SIEM since (\S+) \((\d+) attempts\)" sink=` +
		regexp.QuoteMeta(target) + ` error="Data server connection error: cannot connect to ` + regexp.QuoteMeta(target) +
		`: connection refused; check the server name and port of the syslog server and that no firewall blocks it"\n$`)
	var logs logRecorder
	opts := testOptions(t)
	opts.InitialBackoff, opts.MaxBackoff, opts.RemindEvery = 2*time.Millisecond, 10*time.Millisecond, 50*time.Millisecond
	opts.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) {
		logs.Write(p)
		if reminder.Match(p) && len(logs.lines()) == 4 {
			cancel() // the failure and three reminders
		}
	}), nil))
	start := time.Now().UTC().Truncate(time.Second)
	s, err := Open(ctx, target, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(ctx, recovery.Batch{Activities: makeActivities(1)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send: %v", err)
	}
	lines := logs.lines()
	if len(lines) != 4 || !strings.Contains(lines[0], `level=WARN msg="Data server connection error: cannot connect to `+target) {
		t.Fatalf("want the failure, then 3 reminders:\n%s", strings.Join(lines, ""))
	}
	since, attempts := "", 0
	for _, l := range lines[1:] {
		m := reminder.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("not a reminder: %s", l)
		}
		n, _ := strconv.Atoi(m[2])
		at, err := time.Parse(time.RFC3339, m[1])
		if err != nil || at.Before(start) || (since != "" && m[1] != since) || n <= attempts {
			t.Fatalf("reminders must name the outage's start (not before %v) and count up:\n%s", start, strings.Join(lines, ""))
		}
		since, attempts = m[1], n
	}
}

// TestFailureClassification: which failures of an attempt end the retries
// (and after how many), and what the operator reads for each.
func TestFailureClassification(t *testing.T) {
	timeout := &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}
	reset := &net.OpError{Op: "read", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}
	alert := &net.OpError{Op: "remote error", Err: errors.New("tls: handshake failure")}
	tests := []struct {
		name    string
		f       failure
		refusal int
		text    string // Error(), then "; " and the remedy
	}{
		{"tcp refused", failure{stage: stageConnect, target: "tcp://siem:514", err: syscall.ECONNREFUSED}, notRefused,
			"cannot connect to tcp://siem:514: connection refused; check the server name and port of the syslog server and that no firewall blocks it"},
		{"tcp reset mid-batch", failure{stage: stageSend, target: "tcp://siem:514", err: reset}, notRefused,
			"the connection to tcp://siem:514 broke while sending: connection reset by the receiver; check the server name and port of the syslog server and that no firewall blocks it"},
		{"tls handshake timeout", failure{stage: stageHandshake, target: "tls://siem:6514", err: timeout}, notRefused,
			"the TLS handshake with tls://siem:6514 failed: timed out; check that the syslog server speaks TLS on this port (a plain TCP port never answers the handshake)"},
		{"tls alert", failure{stage: stageHandshake, target: "tls://siem:6514", err: alert}, refusedNow,
			"the TLS handshake with tls://siem:6514 failed: the receiver refused the TLS session: tls: handshake failure; check that the server speaks TLS on this port, and --tls-cert and --tls-key if it asks for a client certificate"},
		{"tls alert after a certificate request", failure{stage: stageConfirm, target: "tls://siem:6514", err: alert, certRequested: true}, refusedNow,
			"tls://siem:6514 did not confirm it read the batch to its end: the receiver refused the TLS session: tls: handshake failure; check --tls-cert and --tls-key: it wants a client certificate signed by a CA it trusts"},
		{"no common version", failure{stage: stageHandshake, target: "tls://siem:6514", err: errors.New("tls: server selected unsupported protocol version 301")}, refusedNow,
			"the TLS handshake with tls://siem:6514 failed: tls: server selected unsupported protocol version 301; check the syslog server's TLS settings: this tool speaks TLS 1.2 and 1.3 with Go's default cipher suites"},
		{"dropped during the handshake", failure{stage: stageHandshake, target: "tls://siem:6514", err: io.EOF}, refusedIfRepeated,
			"tls://siem:6514 dropped the connection during the TLS handshake; check that the server speaks TLS on this port, and --tls-cert and --tls-key if it asks for a client certificate"},
		{"dropped after a certificate request", failure{stage: stageSend, target: "tls://siem:6514", err: reset, certRequested: true}, refusedIfRepeated,
			"tls://siem:6514 asked for a client certificate, then dropped the connection; check --tls-cert and --tls-key: it wants a client certificate signed by a CA it trusts"},
		{"tls reset mid-batch, no certificate asked", failure{stage: stageSend, target: "tls://siem:6514", err: reset}, notRefused,
			"the connection to tls://siem:6514 broke while sending: connection reset by the receiver; check the server name and port of the syslog server and that no firewall blocks it"},
		{"tls probe refused", failure{stage: stageProbe, target: "tls://siem:6514", err: syscall.ECONNREFUSED, certRequested: true}, notRefused,
			"tls://siem:6514 stopped accepting connections right after the batch, which may not all have been processed: connection refused; check the server name and port of the syslog server and that no firewall blocks it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.refusal(); got != tt.refusal {
				t.Errorf("refusal %d, want %d", got, tt.refusal)
			}
			if got := tt.f.problem().Error(); got != tt.text {
				t.Errorf("got  %s\nwant %s", got, tt.text)
			}
		})
	}
	// Three drops in a row end the retries; anything else between starts
	// the count again.
	r := reconnector{}
	dropped := &failure{stage: stageSend, target: "tls://siem:6514", err: reset, certRequested: true}
	other := &failure{stage: stageConnect, target: "tls://siem:6514", err: syscall.ECONNREFUSED}
	for i, f := range []*failure{dropped, dropped, other, dropped, dropped, dropped} {
		if got, want := r.refused(f), i == 5; got != want {
			t.Fatalf("attempt %d: refused %v, want %v", i, got, want)
		}
	}
}

type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// TestStopEndsRetriesButNotTheAttempt: a planned stop (Options.Stop) ends
// the retries of a receiver that is down at once, but lets an attempt in
// progress deliver its batch.
func TestStopEndsRetriesButNotTheAttempt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	t.Run("receiver down", func(t *testing.T) {
		stop := make(chan struct{})
		opts := testOptions(t)
		opts.Stop = stop
		opts.OnFailure = func(string) { close(stop) }
		s, err := Open(ctx, fmt.Sprintf("tcp://127.0.0.1:%d", rsyslogtest.FreePort(t, "tcp")), opts)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.Send(ctx, recovery.Batch{Activities: makeActivities(1)})
		if !errors.Is(err, errStopAsked) || !errors.Is(err, syscall.ECONNREFUSED) || ctx.Err() != nil {
			t.Fatalf("Send: %v, want it to end on the stop, naming the failure", err)
		}
	})
	t.Run("attempt in progress", func(t *testing.T) {
		stop := make(chan struct{})
		recv := startPausingReceiver(t, 1000)
		opts := testOptions(t)
		opts.Stop = stop
		s, err := Open(ctx, "tcp://"+recv.addr, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		go func() {
			<-recv.paused
			close(stop)
			close(recv.resume)
		}()
		as := makeActivities(5000)
		if _, err := s.Send(ctx, recovery.Batch{Activities: as}); err != nil {
			t.Fatalf("Send: %v", err)
		}
		got := bytes.Split(bytes.TrimSuffix(<-recv.received, []byte("\n")), []byte("\n"))
		if dup := compareReceived(t, got, expected(t, "tcp://"+recv.addr, opts, as)); dup != 0 {
			t.Fatalf("%d duplicates", dup)
		}
	})
}

// pausingReceiver is a stream receiver that stops reading its first
// connection after pauseAt bytes until resume is closed, then reads it to
// its end and closes it, as rsyslog does; it accepts later connections
// (probes) and closes them.
type pausingReceiver struct {
	addr     string
	paused   chan struct{}
	resume   chan struct{}
	received chan []byte
}

func startPausingReceiver(t *testing.T, pauseAt int) *pausingReceiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	r := &pausingReceiver{addr: l.Addr().String(), paused: make(chan struct{}), resume: make(chan struct{}), received: make(chan []byte, 1)}
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		head := make([]byte, pauseAt)
		io.ReadFull(c, head) // what arrived by the pause is what the test looks at
		close(r.paused)
		<-r.resume
		rest, _ := io.ReadAll(c)
		c.Close()
		r.received <- append(head, rest...)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return r
}

func TestCancelledSendReturnsPromptly(t *testing.T) {
	// A receiver that accepts and never reads: the writes block once the
	// socket buffers are full, and cancelling ctx must unblock them.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	s, err := Open(context.Background(), "tcp://"+l.Addr().String(), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Made and formatted before the clock starts: on a loaded machine,
	// under the race detector, that alone took seconds.
	as := makeActivities(50_000)
	prepared := s.(recovery.Preparer).Prepare(nil, as)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err = s.Send(ctx, recovery.Batch{Activities: as, Prepared: prepared})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Send: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send took %v to notice the cancellation", d)
	}
}

// TestReceiverDyingAfterTheBatchIsCaught plays the one failure a
// half-close cannot see: the receiver reads the batch to its end, then
// dies before processing it, and the kernel closes the connection just as
// a receiver that finished would. The probe connection finds the port
// closed, so the batch is sent again to the receiver that comes back.
func TestReceiverDyingAfterTheBatchIsCaught(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	dying, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := dying.Addr().String()
	received := make(chan []byte, 1)
	var logs logRecorder
	go func() {
		c, err := dying.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c) // read it all, "process" nothing
		dying.Close()          // the process dies: the listener goes first,
		c.Close()              // then its connections
		// A new instance comes up on the same port, once the sink noticed.
		for !strings.Contains(strings.Join(logs.lines(), ""), "stopped accepting connections right after the batch") {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Millisecond):
			}
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		context.AfterFunc(ctx, func() { l.Close() })
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			data, _ := io.ReadAll(c)
			c.Close()
			if len(data) > 0 {
				received <- data
			}
		}
	}()
	opts := testOptions(t)
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s, err := Open(ctx, "tcp://"+addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	as := makeActivities(10)
	resent, err := s.Send(ctx, recovery.Batch{Activities: as})
	if err != nil {
		t.Fatalf("Send: %v; logged:\n%s", err, strings.Join(logs.lines(), ""))
	}
	if resent != len(as) {
		t.Errorf("resent %d, want the whole batch (%d)", resent, len(as))
	}
	select {
	case data := <-received:
		want := expected(t, "tcp://"+addr, opts, as)
		lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
		if dup := compareReceived(t, lines, want); dup != 0 {
			t.Errorf("%d duplicates on the new instance", dup)
		}
	case <-ctx.Done():
		t.Fatalf("the batch never reached the new instance; logged:\n%s", strings.Join(logs.lines(), ""))
	}
}

func TestReceiverTextIsEscaped(t *testing.T) {
	// What comes from the receiver (its certificate's names, a reply
	// quoted in an error) cannot forge a log line or reach the terminal.
	forged := "siem\nlevel=INFO msg=completed\x1b[2J"
	for _, f := range []*failure{
		{stage: stageConnect, target: "tls://127.0.0.1:6514", err: x509.HostnameError{Certificate: &x509.Certificate{DNSNames: []string{forged}}, Host: "siem.example"}},
		{stage: stageSend, target: "tcp://127.0.0.1:514", err: errors.New("reply: " + forged)},
	} {
		msg := f.Error()
		if strings.ContainsAny(msg, "\n\x1b") || !strings.Contains(msg, `siem\nlevel=INFO msg=completed\x1b[2J`) {
			t.Errorf("failure text %q, want the receiver's text escaped", msg)
		}
	}
}
