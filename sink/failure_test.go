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
	"strings"
	"syscall"
	"testing"
	"time"

	"siem-recovery/sink/rsyslogtest"
)

// Failure handling of the TCP and TLS sinks: what the operator is told and
// when Send gives up.

func TestUnreachableReceiverIsLoggedOnceUntilCancelled(t *testing.T) {
	port := freeTCPPort(t)
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
	_, err = s.Send(ctx, makeActivities(3))
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

func TestUntrustedServerCertificateIsExplained(t *testing.T) {
	pki := rsyslogtest.NewPKI(t)
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TLS, PKI: pki})
	var logs logRecorder
	opts := testOptions(t)
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	opts.ServerName = "wrong.example" // and the system roots do not know the CA
	// Give up once the failure is logged: a handshake under -race on a
	// busy machine can take longer than any fixed wait.
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	opts.OnFailure = func(string) { cancel() }
	s, err := Open(context.Background(), "tls://"+srv.Addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(ctx, makeActivities(1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send: %v, want it cancelled after the failure was logged", err)
	}
	log := strings.Join(logs.lines(), "")
	for _, want := range []string{"the server certificate is not trusted", "check --ca-file and --tls-server-name"} {
		if !strings.Contains(log, want) {
			t.Errorf("log does not say %q:\n%s", want, log)
		}
	}
	if n := srv.Count(); n != 0 {
		t.Errorf("rsyslog received %d messages over an untrusted connection", n)
	}
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
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err = s.Send(ctx, makeActivities(50_000))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Send: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send took %v to notice the cancellation", d)
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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
	resent, err := s.Send(ctx, as)
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
