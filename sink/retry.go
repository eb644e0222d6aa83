package sink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"

	"siem-recovery/recovery"
)

// Stages of an attempt to deliver to a network receiver.
const (
	stageConnect = "connect" // dial, TLS handshake included
	stageSend    = "send"    // writing the batch
	stageConfirm = "confirm" // waiting for the receiver to read it all
	stageProbe   = "probe"   // checking the receiver outlived the batch
)

// failure is why one attempt to reach the receiver failed. Its text is the
// "what was wrong" of the MCAS "Data server connection error".
type failure struct {
	stage  string
	target string
	err    error
}

func (f *failure) Error() string {
	switch f.stage {
	case stageConnect:
		return fmt.Sprintf("cannot connect to %s: %s", f.target, f.cause())
	case stageSend:
		if strings.HasPrefix(f.target, "udp://") {
			// The kernel reports an ICMP error for an earlier datagram.
			return fmt.Sprintf("%s does not take datagrams (%s); those sent meanwhile are lost", f.target, f.cause())
		}
		return fmt.Sprintf("the connection to %s broke while sending: %s", f.target, f.cause())
	case stageConfirm:
		return fmt.Sprintf("%s did not confirm it read the batch to its end: %s", f.target, f.cause())
	default:
		return fmt.Sprintf("%s stopped accepting connections right after the batch, which may not all have been processed: %s", f.target, f.cause())
	}
}

func (f *failure) Unwrap() error { return f.err }

// cause says in a few stable words what went wrong, without the
// ephemeral port numbers of the raw error, so that a repeated failure is
// recognised as the same one.
func (f *failure) cause() string {
	var (
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		netErr  net.Error
		opErr   *net.OpError
		sysErr  *os.SyscallError
	)
	switch err := f.err; {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the receiver"
	case errors.Is(err, syscall.EPIPE):
		return "connection closed by the receiver"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the host"
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("cannot resolve %q: %s", dnsErr.Name, dnsErr.Err)
	case errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &host), errors.As(err, &invalid):
		// The certificate's names come from the receiver.
		return "the server certificate is not trusted: " + recovery.Escape(err.Error())
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timed out"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the receiver"
	case errors.As(err, &sysErr):
		return sysErr.Err.Error()
	case errors.As(err, &opErr):
		return opErr.Err.Error()
	default:
		return recovery.Escape(err.Error())
	}
}

// remedy is the operator's next step, after the MCAS troubleshooting
// guide where it applies.
func (f *failure) remedy() string {
	var (
		certErr *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		alert   tls.AlertError
		netErr  net.Error
	)
	switch err := f.err; {
	case errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &host), errors.As(err, &invalid):
		return "check --ca-file and --tls-server-name against the syslog server's certificate"
	case errors.As(err, &alert):
		return "check that the server speaks TLS on this port, and --tls-cert and --tls-key if it asks for a client certificate"
	case f.stage == stageConfirm && errors.As(err, &netErr) && netErr.Timeout():
		return "check that the syslog server keeps up and closes a connection once it has read it to its end (rsyslog and syslog-ng do)"
	default:
		return "check the server name and port of the syslog server and that no firewall blocks it"
	}
}

// problem is the failure as the operator reads it, in a log line or from
// check: the MCAS "Data server connection error", what was wrong, the remedy.
func (f *failure) problem() *recovery.Error {
	return recovery.Problemf(recovery.ErrSink, f.remedy(), "Data server connection error: %w", f)
}

// key identifies a failure for "log each distinct failure once".
func (f *failure) key() string { return f.stage + ": " + f.cause() }

// reconnector is the one retry policy of the sink seam: it runs an attempt
// until it succeeds or ctx is done, waiting between attempts as backoff/v4's
// exponential policy says, and logs each distinct failure once and the
// recovery once.
type reconnector struct {
	target           string
	log              *slog.Logger
	initial, max     time.Duration
	successConfirms  bool // false for UDP: a datagram sent proves nothing
	onFailure        func(string)
	lastKey          string // the failure logged last; "" when healthy
	failedAttempts   int
	failedAttemptsAt time.Time
	lastErr          error // the last failure, for giveUp
}

func newReconnector(target string, opts Options, successConfirms bool) reconnector {
	return reconnector{target: target, log: opts.Logger, initial: opts.InitialBackoff, max: opts.MaxBackoff,
		successConfirms: successConfirms, onFailure: opts.OnFailure}
}

// do runs attempt until it returns nil or ctx is done. The error it returns
// then wraps ctx.Err() and the last failure.
func (r *reconnector) do(ctx context.Context, attempt func() error) error {
	var b *backoff.ExponentialBackOff
	for {
		err := attempt()
		if err == nil {
			r.succeeded()
			return nil
		}
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			// The attempt failed because the deadline passed (a dial
			// uses it as its own); ctx.Done may lag a moment behind.
			<-ctx.Done()
		}
		if ctx.Err() != nil {
			return r.giveUp(ctx, err)
		}
		if b == nil {
			b = backoff.NewExponentialBackOff(
				backoff.WithInitialInterval(r.initial),
				backoff.WithMaxInterval(r.max),
				backoff.WithMaxElapsedTime(0), // until ctx is done
			)
		}
		wait := b.NextBackOff()
		r.failed(err, wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return r.giveUp(ctx, err)
		case <-t.C:
		}
	}
}

func (r *reconnector) failed(err error, wait time.Duration) {
	if r.failedAttempts == 0 {
		r.failedAttemptsAt = time.Now()
	}
	r.failedAttempts++
	r.lastErr = err
	var f *failure
	if !errors.As(err, &f) {
		f = &failure{stage: stageSend, target: r.target, err: err}
	}
	msg := f.problem().Error()
	if k := f.key(); k != r.lastKey {
		r.lastKey = k
		r.log.Warn(msg, "sink", r.target, "retry_in", wait.Round(time.Millisecond))
		if r.onFailure != nil {
			r.onFailure(msg)
		}
		return
	}
	r.log.Debug(msg, "sink", r.target, "attempt", r.failedAttempts, "retry_in", wait.Round(time.Millisecond))
}

func (r *reconnector) succeeded() {
	if r.failedAttempts == 0 {
		return
	}
	if r.successConfirms {
		r.log.Info("Data server connection restored", "sink", r.target,
			"failed_attempts", r.failedAttempts, "down_for", time.Since(r.failedAttemptsAt).Round(time.Millisecond))
		r.lastKey = ""
	}
	r.failedAttempts, r.lastErr = 0, nil
}

func (r *reconnector) giveUp(ctx context.Context, last error) error {
	// The attempt ctx interrupted says less than the failure before it.
	if r.failedAttempts > 0 && r.lastErr != nil {
		last = r.lastErr
	}
	var f *failure
	if errors.As(last, &f) && r.failedAttempts > 0 {
		return fmt.Errorf("Data server connection error: %w; stopped retrying: %w", last, ctx.Err())
	}
	return fmt.Errorf("send to %s: %w", r.target, ctx.Err())
}
