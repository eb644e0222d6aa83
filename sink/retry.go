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
	stageConnect   = "connect"   // the TCP connection
	stageHandshake = "handshake" // the TLS handshake
	stageSend      = "send"      // writing the batch
	stageConfirm   = "confirm"   // waiting for the receiver to read it all
	stageProbe     = "probe"     // checking the receiver outlived the batch
	stageOpen      = "open"      // opening a RELP session
	stageAck       = "ack"       // waiting for RELP acknowledgements
)

// failure is why one attempt to reach the receiver failed. Its text is the
// "what was wrong" of the MCAS "Data server connection error".
type failure struct {
	stage  string
	target string
	err    error
	// certRequested: the receiver asked for a client certificate on the
	// connection that failed (TLS only).
	certRequested bool
}

func (f *failure) Error() string {
	if f.refusal() == refusedIfRepeated { // reset or closed: which one varies
		if f.certRequested {
			return fmt.Sprintf("%s asked for a client certificate, then dropped the connection", f.target)
		}
		return fmt.Sprintf("%s dropped the connection during the TLS handshake", f.target)
	}
	switch f.stage {
	case stageConnect:
		return fmt.Sprintf("cannot connect to %s: %s", f.target, f.cause())
	case stageHandshake:
		return fmt.Sprintf("the TLS handshake with %s failed: %s", f.target, f.cause())
	case stageSend:
		if k := KindOf(f.target); k != nil && k.Datagram {
			// The kernel reports an ICMP error for an earlier datagram.
			return fmt.Sprintf("%s does not take datagrams (%s); those sent meanwhile are lost", f.target, f.cause())
		}
		return fmt.Sprintf("the connection to %s broke while sending: %s", f.target, f.cause())
	case stageConfirm:
		return fmt.Sprintf("%s did not confirm it read the batch to its end: %s", f.target, f.cause())
	case stageOpen:
		return fmt.Sprintf("%s did not open a RELP session: %s", f.target, f.cause())
	case stageAck:
		return fmt.Sprintf("%s did not acknowledge the messages sent: %s", f.target, f.cause())
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
		netErr  net.Error
		opErr   *net.OpError
		sysErr  *os.SyscallError
		notTLS  tls.RecordHeaderError
		certErr = certificateError(f.err)
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
	case certErr != nil:
		// The certificate's names come from the receiver.
		return "the server certificate is not trusted: " + recovery.Escape(certErr.Error())
	case errors.As(err, &notTLS):
		return "the receiver does not speak TLS on this port"
	case isAlert(err):
		return "the receiver refused the TLS session: " + recovery.Escape(alertOf(err).Err.Error())
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

// certificateError is the verification failure of the server certificate
// in err (untrusted, name mismatch, expired), or nil.
func certificateError(err error) error {
	var (
		certErr *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &unknown):
		return unknown
	case errors.As(err, &host):
		return host
	case errors.As(err, &invalid):
		return invalid
	case errors.As(err, &certErr):
		return certErr.Err
	}
	return nil
}

// alertOf returns the TLS alert the receiver sent, as crypto/tls reports
// it (a *net.OpError "remote error"), or nil.
func alertOf(err error) *net.OpError {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		return opErr
	}
	return nil
}

func isAlert(err error) bool { return alertOf(err) != nil }

// How a failure that comes from the receiver's answer to our TLS setup is
// treated: retrying cannot mend it, so it is a configuration error.
const (
	notRefused        = iota // any other failure: retried until the receiver is back
	refusedNow               // a verdict: certificate not trusted, TLS alert, not TLS at all
	refusedIfRepeated        // the receiver dropped the TLS connection it had accepted
)

// refusalsToStop is how many attempts in a row the receiver must drop
// before that is taken as a refusal: a receiver restarting also drops a
// connection, but then refuses the next one.
const refusalsToStop = 3

// refusal classifies a failure of a TLS attempt.
func (f *failure) refusal() int {
	kind := KindOf(f.target)
	var (
		netErr net.Error
		notTLS tls.RecordHeaderError
	)
	// ENOTCONN: the half-close after the batch, on a connection the
	// receiver has already reset.
	dropped := errors.Is(f.err, syscall.ECONNRESET) || errors.Is(f.err, syscall.EPIPE) ||
		errors.Is(f.err, syscall.ENOTCONN) || errors.Is(f.err, io.EOF) || errors.Is(f.err, io.ErrUnexpectedEOF)
	switch {
	case kind == nil || !kind.TLS:
		return notRefused
	case certificateError(f.err) != nil, errors.As(f.err, &notTLS), isAlert(f.err):
		return refusedNow
	case f.stage == stageHandshake && dropped:
		return refusedIfRepeated
	case f.stage == stageHandshake && !(errors.As(f.err, &netErr) && netErr.Timeout()):
		// crypto/tls's own verdicts: no common version or cipher suite, ...
		return refusedNow
	case f.stage != stageConnect && f.stage != stageHandshake && dropped && f.certRequested:
		// TLS 1.3: the client's handshake ends before the server checked
		// its certificate, so a refusal shows as the first write or read
		// failing (over RELP, the answer to "open").
		return refusedIfRepeated
	}
	return notRefused
}

// remedy is the operator's next step, after the MCAS troubleshooting
// guide where it applies.
func (f *failure) remedy() string {
	var (
		netErr net.Error
		notTLS tls.RecordHeaderError
	)
	var (
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		refusal *relpRefusal
	)
	switch err := f.err; {
	case errors.As(err, &unknown):
		return "give --ca-file the CA certificate (PEM) that signed the syslog server's certificate"
	case errors.As(err, &host):
		return nameRemedy(host)
	case certificateError(err) != nil:
		return "check the syslog server's certificate (its dates and usage) and --ca-file"
	case errors.As(err, &notTLS):
		return "use the syslog server's TLS port, or a tcp:// sink"
	case f.certRequested && (isAlert(err) || f.refusal() == refusedIfRepeated):
		return "check --tls-cert and --tls-key: it wants a client certificate signed by a CA it trusts"
	case isAlert(err), f.refusal() == refusedIfRepeated:
		return "check that the server speaks TLS on this port, and --tls-cert and --tls-key if it asks for a client certificate"
	case f.refusal() == refusedNow:
		return "check the syslog server's TLS settings: this tool speaks TLS 1.2 and 1.3 with Go's default cipher suites"
	case f.stage == stageHandshake && errors.As(err, &netErr) && netErr.Timeout():
		return "check that the syslog server speaks TLS on this port (a plain TCP port never answers the handshake)"
	case f.stage == stageConfirm && errors.As(err, &netErr) && netErr.Timeout():
		return "check that the syslog server keeps up and closes a connection once it has read it to its end (rsyslog and syslog-ng do)"
	case f.stage == stageOpen:
		return "check that the port is the syslog server's RELP input (rsyslog: module imrelp, Debian package rsyslog-relp)"
	case f.stage == stageAck && errors.As(err, &netErr) && netErr.Timeout():
		return "check that the syslog server keeps up: it must acknowledge each message (imrelp does once the message is queued)"
	case f.stage == stageAck && errors.As(err, &refusal):
		return "check the syslog server's log for why it refused the messages"
	default:
		return "check the server name and port of the syslog server and that no firewall blocks it"
	}
}

// nameRemedy is the fix for a server certificate that does not carry the
// name asked for (h.Host: --tls-server-name, else the host of --sink).
// A certificate with no subjectAltName names its server only in the
// legacy Common Name, which TLS clients no longer read: no
// --tls-server-name can match it, and the fix is a certificate with a
// subjectAltName (the runbook has a recipe). One that carries DNS names
// only cannot match an IP address: the sink must name the server by one
// of them. Otherwise the names it carries are the choice.
func nameRemedy(h x509.HostnameError) string {
	const recipe = "docs/runbook.md, \"The receiving rsyslog\""
	c := h.Certificate
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		cn := ""
		if c.Subject.CommonName != "" {
			cn = " (CN=" + recovery.Escape(c.Subject.CommonName) + ")"
		}
		return "the syslog server's certificate has no subjectAltName and names its server only in the legacy Common Name" + cn +
			", which TLS clients no longer read, so no --tls-server-name can match it: give the server a certificate with a subjectAltName " +
			"for the name or address in --sink (" + recipe + ")"
	}
	list := recovery.Escape(strings.Join(names, ", "))
	if net.ParseIP(h.Host) != nil && len(c.IPAddresses) == 0 {
		return "the certificate carries no IP address, only DNS names (" + list + "): name the server by one of them in --sink " +
			"(or keep the address and give --tls-server-name one of them), or give the server a certificate with a subjectAltName for " +
			h.Host + " (" + recipe + ")"
	}
	return "give --tls-server-name one of the names the syslog server's certificate carries (" + list + "), or name the server by one of them in --sink, " +
		"or give the server a certificate with a subjectAltName for " + recovery.Escape(h.Host) + " (" + recipe + ")"
}

// problem is the failure as the operator reads it, from check or as the
// run's last error: what was wrong and the remedy. Its kind is ErrSink,
// which the command names "Data server connection error", as MCAS does.
func (f *failure) problem() *recovery.Error {
	return recovery.Problemf(recovery.ErrSink, f.remedy(), "%w", f)
}

// logLine is the failure as a log line: the MCAS name, what was wrong, the
// remedy.
func (f *failure) logLine() string { return "Data server connection error: " + f.problem().Error() }

// key identifies a failure for "log each distinct failure once".
func (f *failure) key() string {
	if f.refusal() == refusedIfRepeated { // at whichever stage it shows
		return "dropped"
	}
	return f.stage + ": " + f.cause()
}

// DefaultRemindEvery is how often a lasting outage is logged again.
const DefaultRemindEvery = time.Minute

// errStopAsked ends the retries of a batch when a planned stop was asked.
var errStopAsked = errors.New("a planned stop was asked")

// reconnector is the one retry policy of the sink seam: it runs an attempt
// until it succeeds, ctx is done or a stop is asked, waiting between
// attempts as backoff/v4's exponential policy says. It logs each distinct
// failure once, a reminder while an outage lasts, and the recovery once.
// A failure that is the receiver's verdict on our TLS setup ends the
// retries at once: it is a configuration error.
type reconnector struct {
	target           string
	log              *slog.Logger
	initial, max     time.Duration
	remindEvery      time.Duration
	stop             <-chan struct{}
	successConfirms  bool // false for UDP: a datagram sent proves nothing
	onFailure        func(string)
	lastKey          string // the failure logged last; "" when healthy
	failedAttempts   int
	failedAttemptsAt time.Time
	reportedAt       time.Time // when the outage was last logged
	refusals         int       // attempts in a row the TLS receiver dropped
	lastErr          error     // the last failure, for giveUp
}

func newReconnector(target string, opts Options, successConfirms bool) reconnector {
	return reconnector{target: target, log: opts.Logger, initial: opts.InitialBackoff, max: opts.MaxBackoff,
		remindEvery: opts.RemindEvery, stop: opts.Stop, successConfirms: successConfirms, onFailure: opts.OnFailure}
}

// do runs attempt until it returns nil, ctx is done or a stop is asked.
// The error it returns then wraps ctx.Err() (or says the stop) and the
// last failure; a configuration error is returned as its *recovery.Error.
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
			return r.giveUp(ctx.Err(), err)
		}
		f := r.asFailure(err)
		if r.refused(f) {
			return f.problem()
		}
		if b == nil {
			b = backoff.NewExponentialBackOff(
				backoff.WithInitialInterval(r.initial),
				backoff.WithMaxInterval(r.max),
				backoff.WithMaxElapsedTime(0), // until ctx is done
			)
		}
		wait := b.NextBackOff()
		r.failed(f, wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return r.giveUp(ctx.Err(), err)
		case <-r.stop:
			t.Stop()
			return r.giveUp(errStopAsked, err)
		case <-t.C:
		}
	}
}

func (r *reconnector) asFailure(err error) *failure {
	var f *failure
	if !errors.As(err, &f) {
		f = &failure{stage: stageSend, target: r.target, err: err}
	}
	return f
}

// refused counts the failures that are the receiver's verdict on our TLS
// setup and says when they are enough to stop retrying.
func (r *reconnector) refused(f *failure) bool {
	switch f.refusal() {
	case refusedNow:
		return true
	case refusedIfRepeated:
		r.refusals++
		return r.refusals >= refusalsToStop
	}
	r.refusals = 0
	return false
}

// failed logs a failed attempt: a new failure at once, the same one again
// only as a reminder, so that a lasting outage shows in the log at least
// every remindEvery: the reminder is due when waiting for the next attempt
// would pass that mark.
func (r *reconnector) failed(f *failure, wait time.Duration) {
	now := time.Now()
	if r.failedAttempts == 0 {
		r.failedAttemptsAt = now
	}
	r.failedAttempts++
	r.lastErr = f
	msg := f.logLine()
	if k := f.key(); k != r.lastKey {
		r.lastKey, r.reportedAt = k, now
		r.log.Warn(msg, "sink", r.target, "retry_in", wait.Round(time.Millisecond))
		if r.onFailure != nil {
			r.onFailure(msg)
		}
		return
	}
	if r.remindEvery > 0 && now.Add(wait).After(r.reportedAt.Add(r.remindEvery)) {
		r.reportedAt = now
		r.log.Warn(fmt.Sprintf("still waiting for the SIEM since %s (%d attempts)",
			r.failedAttemptsAt.UTC().Format(time.RFC3339), r.failedAttempts), "sink", r.target, "error", msg)
		return
	}
	r.log.Debug(msg, "sink", r.target, "attempt", r.failedAttempts, "retry_in", wait.Round(time.Millisecond))
}

func (r *reconnector) succeeded() {
	r.refusals = 0
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

// giveUp is the error of a Send that ends on why (ctx.Err() or
// errStopAsked) while the receiver fails.
func (r *reconnector) giveUp(why, last error) error {
	// The attempt ctx interrupted says less than the failure before it.
	if r.failedAttempts > 0 && r.lastErr != nil {
		last = r.lastErr
	}
	var f *failure
	if errors.As(last, &f) && r.failedAttempts > 0 {
		//lint:ignore ST1005 the MCAS SIEM agent's own name for this error, as its troubleshooting guide writes it: operators search for it
		return fmt.Errorf("Data server connection error: %w; stopped retrying: %w", last, why)
	}
	return fmt.Errorf("send to %s: %w", r.target, why)
}
