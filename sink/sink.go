package sink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"siem-recovery/internal/argfile"
	"siem-recovery/recovery"
)

// Options say how Open's sink formats and delivers activities. The zero
// value is the default of every field.
type Options struct {
	// Format is FormatCEF ("cef", the default) or FormatJSON ("json").
	Format string
	// Syslog is the header before each message: SyslogRFC5424,
	// SyslogRFC3164 or SyslogNone. Empty means rfc5424 on network sinks and
	// none on stdout and files.
	Syslog string
	// Framing is FramingLF (the default) or FramingOctet (RFC 6587). Octet
	// counting applies to tcp:// and tls:// only.
	Framing string

	// TLS to the receiver (tls:// only). CAFile is a PEM bundle of the CAs
	// to trust instead of the system's; CertFile and KeyFile, given
	// together, are the client certificate; ServerName is the name the
	// server certificate must carry (default: the host of the target).
	CAFile, CertFile, KeyFile, ServerName string
	// InsecureSkipVerify accepts any server certificate. Never the default.
	InsecureSkipVerify bool

	// Version is the Device Version of the CEF header: this tool's version.
	Version string
	// PortalURL is the tenant's portal that cs1 links to (see Formatter).
	PortalURL string
	// Hostname is the HOSTNAME of the syslog header (default os.Hostname).
	Hostname string
	// AppName is the APP-NAME (RFC 5424) or TAG (RFC 3164) of the syslog
	// header (default "siem-recovery").
	AppName string

	// Logger receives connection failures (each distinct one once) and
	// recoveries. Nil discards them.
	Logger *slog.Logger
	// OnFailure, when set, is told each distinct connection failure once,
	// as the line the Logger gets ("Data server connection error: ...; fix"),
	// so that the caller can record it (the checkpoint's last error).
	OnFailure func(message string)
	// Stdout is where the stdout sink writes (default os.Stdout).
	Stdout io.Writer

	// Stop, once closed, asks for a planned stop: a failed attempt to
	// deliver is not repeated, and Send returns. An attempt in progress goes
	// on until the ctx given to Send ends it.
	Stop <-chan struct{}

	// InitialBackoff and MaxBackoff bound the wait between two attempts to
	// reach the receiver (defaults 500ms and 30s); the wait doubles, with
	// jitter, from one to the other, and retries go on until ctx is done.
	// A certificate the receiver's TLS setup refuses is not retried.
	InitialBackoff, MaxBackoff time.Duration
	// RemindEvery is how often a lasting outage is logged again, as "still
	// waiting for the SIEM since T (N attempts)" (default 1 minute).
	RemindEvery time.Duration
	// DialTimeout bounds a connection attempt, TLS handshake included
	// (default 10s), and the wait for the answer to a RELP session's open.
	DialTimeout time.Duration
	// WriteTimeout is how long a write may make no progress before the
	// connection is deemed broken (default 30s).
	WriteTimeout time.Duration
	// ConfirmTimeout is how long the receiver has, once a batch has been
	// written, to read it to its end and close its side (default 60s); on
	// a relp:// sink, to acknowledge the oldest message it was sent.
	ConfirmTimeout time.Duration
	// UDPRate paces a udp:// sink to at most that many datagrams a second
	// (0: as fast as the socket takes them; see docs/delivery.md for the
	// measurement behind the command's default). Negative is refused.
	UDPRate int
	// RELPWindow is how many messages a relp:// sink sends ahead of their
	// acknowledgement (default DefaultRELPWindow). A larger window keeps a
	// distant receiver busier; it is also how many messages a broken
	// session may leave unacknowledged, to be sent again.
	RELPWindow int
	// MaxDatagram is the largest UDP message sent, syslog header included
	// (default 2048, the size RFC 5426 says receivers should accept; at
	// least 480, at most 65507). Larger events are shortened: see
	// docs/delivery.md.
	MaxDatagram int
}

// Defaults of Options.
const (
	DefaultAppName        = "siem-recovery"
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultDialTimeout    = 10 * time.Second
	DefaultWriteTimeout   = 30 * time.Second
	DefaultConfirmTimeout = 60 * time.Second
	DefaultMaxDatagram    = 2048
)

// Open returns the sink target names: "stdout" or "-" (also ""),
// "file:PATH" or "file://PATH" (appended to, created with mode 0600, never
// through a symbolic link; a named pipe's reader is waited for until ctx
// ends or opts.Stop is closed; see fileSink for rotation),
// "tcp://HOST:PORT", "udp://HOST:PORT" or "tls://HOST:PORT" (syslog), or
// "relp://HOST:PORT" (syslog messages over RELP, rsyslog's imrelp), or
// "relp+tls://HOST:PORT" (RELP inside TLS, imrelp's tls="on"). It
// checks the target and opts and reads the TLS files; a bad value is a
// recovery.ErrUsage. Network sinks connect on the first Send, so Open does
// not fail when the receiver is down.
func Open(ctx context.Context, target string, opts Options) (recovery.Sink, error) {
	kind, addr, err := parseTarget(target)
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	enc, err := opts.encoder(kind)
	if err != nil {
		return nil, err
	}
	if !kind.TLS {
		for _, f := range []struct{ flag, value string }{
			{"--ca-file", opts.CAFile}, {"--tls-cert", opts.CertFile},
			{"--tls-key", opts.KeyFile}, {"--tls-server-name", opts.ServerName},
		} {
			if f.value != "" {
				return nil, recovery.Problemf(recovery.ErrUsage, "use a "+schemes(takesTLS, " or ")+" sink, or leave out the TLS flags",
					"%s is set but --sink %q is not %s", f.flag, target, schemes(takesTLS, " or "))
			}
		}
	}
	return kind.open(ctx, kind, target, addr, enc, opts)
}

// dialer returns how a stream or RELP sink connects to addr: a TCP
// connection, and for a scheme that speaks TLS the handshake after it.
func (o Options) dialer(ctx context.Context, kind *Kind, addr string) (func(context.Context) (net.Conn, error), error) {
	if !kind.TLS {
		d := &net.Dialer{Timeout: o.DialTimeout}
		return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }, nil
	}
	cfg, err := o.tlsConfig(ctx, addr)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) (net.Conn, error) { return dialTLS(ctx, o.DialTimeout, addr, cfg) }, nil
}

// Name is how a checkpoint records the sink target names: the scheme with
// the host and port ("tcp://siem.example.com:514"), the file with its
// absolute path ("file:/var/log/mcas/out.cef"), or "stdout". It never holds
// a secret: a target with a user or password is refused.
func Name(target string) (string, error) {
	kind, addr, err := parseTarget(target)
	switch {
	case err != nil:
		return "", err
	case kind == &stdoutKind:
		return kind.Scheme, nil
	case kind == &fileKind:
		if abs, err := filepath.Abs(addr); err == nil {
			addr = abs
		}
		return "file:" + addr, nil
	}
	return kind.Scheme + "://" + addr, nil
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	if o.AppName == "" {
		o.AppName = DefaultAppName
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = DefaultInitialBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = o.InitialBackoff
	}
	if o.RemindEvery <= 0 {
		o.RemindEvery = DefaultRemindEvery
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.ConfirmTimeout <= 0 {
		o.ConfirmTimeout = DefaultConfirmTimeout
	}
	if o.MaxDatagram == 0 {
		o.MaxDatagram = DefaultMaxDatagram
	}
	if o.RELPWindow <= 0 {
		o.RELPWindow = DefaultRELPWindow
	}
	return o
}

// encoder checks the format, header and framing for a sink of the given
// kind and returns the encoder it uses.
func (o Options) encoder(kind *Kind) (*encoder, error) {
	network := kind.Network
	e := &encoder{
		format:   Formatter{Version: o.Version, PortalURL: o.PortalURL},
		syslog:   o.Syslog,
		framing:  o.Framing,
		hostname: headerName(o.Hostname, 255),
		appName:  headerName(o.AppName, 48),
	}
	switch o.Format {
	case "", FormatCEF:
	case FormatJSON:
		e.json = true
	default:
		return nil, recovery.Problemf(recovery.ErrUsage, "use cef or json", "--format %q is not a format", o.Format)
	}
	switch o.Syslog {
	case "":
		e.syslog = SyslogNone
		if network {
			e.syslog = SyslogRFC5424
		}
	case SyslogRFC5424, SyslogRFC3164, SyslogNone:
	default:
		return nil, recovery.Problemf(recovery.ErrUsage, "use rfc5424, rfc3164 or none", "--syslog %q is not a syslog header", o.Syslog)
	}
	switch o.Framing {
	case "", FramingLF:
		e.framing = FramingLF
	case FramingOctet:
		if !kind.Octet {
			return nil, recovery.Problemf(recovery.ErrUsage, "use --framing lf, or a "+schemes(takesOctet, " or ")+" sink",
				"--framing octet applies to %s sinks only", schemes(takesOctet, " and "))
		}
	default:
		return nil, recovery.Problemf(recovery.ErrUsage, "use lf or octet", "--framing %q is not a framing", o.Framing)
	}
	if o.UDPRate < 0 {
		return nil, recovery.Problemf(recovery.ErrUsage, "give a rate of datagrams per second, or 0 for none",
			"UDP rate %d is negative", o.UDPRate)
	}
	if !kind.Framed {
		e.framing = "" // one message per datagram (RFC 5426) or RELP syslog command
	}
	if kind.Datagram {
		if o.MaxDatagram < 480 || o.MaxDatagram > 65507 {
			return nil, recovery.Problemf(recovery.ErrUsage, "use a size from 480 to 65507 bytes",
				"UDP message size %d is out of range", o.MaxDatagram)
		}
	}
	return e, nil
}

// tlsConfig builds the client TLS configuration: the server certificate is
// verified unless InsecureSkipVerify, against CAFile or the system roots.
// loadKeyPair is tls.LoadX509KeyPair through the capped, pipe-safe reader
// of argument files.
func loadKeyPair(ctx context.Context, certFile, keyFile string) (tls.Certificate, error) {
	cert, _, err := argfile.Read(ctx, certFile, argfile.SmallLimit)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, _, err := argfile.Read(ctx, keyFile, argfile.SmallLimit)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(cert, key)
}

func (o Options) tlsConfig(ctx context.Context, addr string) (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(addr)
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         host,
		InsecureSkipVerify: o.InsecureSkipVerify,
		// One connection per batch: resuming sessions saves the full
		// handshake on all but the first.
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
	}
	if o.ServerName != "" {
		cfg.ServerName = o.ServerName
	}
	if o.CAFile != "" {
		pem, _, err := argfile.Read(ctx, o.CAFile, argfile.SmallLimit)
		if err != nil {
			return nil, recovery.Problemf(recovery.ErrUsage, "check the path and its permissions",
				"--ca-file %s: %w", o.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, recovery.Problemf(recovery.ErrUsage, "give a PEM file of CA certificates",
				"--ca-file %s: no PEM certificate in it", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case o.CertFile != "" && o.KeyFile != "":
		cert, err := loadKeyPair(ctx, o.CertFile, o.KeyFile)
		if err != nil {
			return nil, recovery.Problemf(recovery.ErrUsage, "give a PEM certificate and its private key",
				"--tls-cert %s / --tls-key %s: %w", o.CertFile, o.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case o.CertFile != "" || o.KeyFile != "":
		return nil, recovery.Problemf(recovery.ErrUsage, "give both --tls-cert and --tls-key, or neither",
			"a client certificate needs both --tls-cert and --tls-key")
	}
	return cfg, nil
}
