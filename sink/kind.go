package sink

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"strings"

	"siem-recovery/recovery"
)

// Kind is one kind of sink: the --sink values it takes, what it does with
// the options every sink shares, and how it opens. Open, the option checks
// and the retry policy's refusal rules ask the kind; none of them names a
// scheme. A new kind is a file of this package that declares its Kind, and
// one line in kinds.
type Kind struct {
	// Scheme is the URL scheme of a network kind ("tcp", "relp+tls"), or
	// the name of a local one ("file", "stdout").
	Scheme string
	// Syntax is how a --sink value of the kind is written, for remedies.
	Syntax string
	// Network tells that it delivers to a syslog receiver: the rfc5424
	// header is its default, where a file or stdout has none.
	Network bool
	// TLS tells that it speaks TLS and takes the TLS options (CAFile,
	// CertFile, KeyFile, ServerName).
	TLS bool
	// Framed tells that it writes a byte stream (a file, stdout, a TCP or
	// TLS connection) whose messages end with a line end, or with octet
	// counting where Octet allows it; a kind that is not framed sends one
	// message per datagram or per RELP command.
	Framed bool
	// Octet tells that the receiver can take RFC 6587 octet counting.
	Octet bool
	// Datagram tells that it sends each message as a datagram, which
	// nothing confirms: a send error reports an earlier datagram's fate.
	Datagram bool
	// Caveat is what a run on this kind must be told before it starts
	// (UDP confirms nothing), or "".
	Caveat string
	// local reads a value that is not a URL ("file:PATH", "stdout"): the
	// address, and whether the value is of this kind.
	local func(target string) (addr string, ok bool)
	// open opens the sink at addr.
	open func(ctx context.Context, k *Kind, target, addr string, enc *encoder, opts Options) (recovery.Sink, error)
}

// kinds are the sinks --sink can name: one line each.
var kinds = []*Kind{&stdoutKind, &fileKind, &tcpKind, &udpKind, &tlsKind, &relpKind, &relpTLSKind}

var stdoutKind = Kind{
	Scheme: "stdout", Syntax: "stdout, -", Framed: true,
	local: func(target string) (string, bool) { return "", target == "" || target == "stdout" || target == "-" },
	open: func(_ context.Context, _ *Kind, _, _ string, enc *encoder, opts Options) (recovery.Sink, error) {
		return newWriterSink("stdout", opts.Stdout, enc), nil
	},
}

var fileKind = Kind{
	Scheme: "file", Syntax: "file:PATH", Framed: true,
	local: func(target string) (string, bool) {
		if !strings.HasPrefix(target, "file:") {
			return "", false
		}
		return strings.TrimPrefix(strings.TrimPrefix(target, "file:"), "//"), true
	},
	open: func(ctx context.Context, _ *Kind, target, path string, enc *encoder, opts Options) (recovery.Sink, error) {
		s, err := openFileSink(ctx, target, path, enc, opts)
		if err != nil {
			return nil, err // not a typed nil inside the interface
		}
		return s, nil
	},
}

// openStream opens a tcp:// or tls:// sink.
func openStream(ctx context.Context, k *Kind, target, addr string, enc *encoder, opts Options) (recovery.Sink, error) {
	dial, err := opts.dialer(ctx, k, addr)
	if err != nil {
		return nil, err
	}
	return newStreamSink(target, enc, opts, dial), nil
}

// openRELP opens a relp:// or relp+tls:// sink.
func openRELP(ctx context.Context, k *Kind, target, addr string, enc *encoder, opts Options) (recovery.Sink, error) {
	dial, err := opts.dialer(ctx, k, addr)
	if err != nil {
		return nil, err
	}
	return newRELPSink(target, enc, opts, dial), nil
}

var tcpKind = Kind{Scheme: "tcp", Syntax: "tcp://HOST:PORT", Network: true, Framed: true, Octet: true, open: openStream}

var tlsKind = Kind{Scheme: "tls", Syntax: "tls://HOST:PORT", Network: true, TLS: true, Framed: true, Octet: true, open: openStream}

var udpKind = Kind{
	Scheme: "udp", Syntax: "udp://HOST:PORT", Network: true, Datagram: true,
	Caveat: "UDP is at most once: a datagram the network or a busy receiver drops is lost without a trace and never sent again; " +
		"after the run, check what the SIEM holds with verify --received",
	open: func(_ context.Context, _ *Kind, target, addr string, enc *encoder, opts Options) (recovery.Sink, error) {
		return newDatagramSink(target, addr, enc, opts), nil
	},
}

var relpKind = Kind{Scheme: "relp", Syntax: "relp://HOST:PORT", Network: true, open: openRELP}

var relpTLSKind = Kind{Scheme: "relp+tls", Syntax: "relp+tls://HOST:PORT", Network: true, TLS: true, open: openRELP}

// sinkRemedy lists every way to name a sink.
var sinkRemedy = func() string {
	var b strings.Builder
	b.WriteString("use ")
	for i, k := range kinds {
		switch {
		case i == len(kinds)-1:
			b.WriteString(" or ")
		case i > 0:
			b.WriteString(", ")
		}
		b.WriteString(k.Syntax)
	}
	return b.String()
}()

// KindOf is the kind of sink target names, or nil when it names none.
func KindOf(target string) *Kind {
	k, _, _ := parseTarget(target)
	return k
}

// parseTarget reads a --sink value: its kind and its path or host:port.
func parseTarget(target string) (*Kind, string, error) {
	for _, k := range kinds {
		if k.local == nil {
			continue
		}
		if addr, ok := k.local(target); ok {
			if addr == "" && k != &stdoutKind {
				return nil, "", recovery.Problemf(recovery.ErrUsage, sinkRemedy, "--sink %q: no %s path", target, k.Scheme)
			}
			return k, addr, nil
		}
	}
	u, err := url.Parse(target)
	var kind *Kind
	if err == nil {
		for _, k := range kinds {
			if k.local == nil && k.Scheme == u.Scheme {
				kind = k
			}
		}
	}
	if kind == nil {
		return nil, "", recovery.Problemf(recovery.ErrUsage, sinkRemedy, "--sink %q: not a sink address", target)
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, "", recovery.Problemf(recovery.ErrUsage, sinkRemedy, "--sink %q: expected %s://HOST:PORT and nothing else", target, u.Scheme)
	}
	port, perr := strconv.Atoi(u.Port())
	if u.Hostname() == "" || perr != nil || port < 1 || port > 65535 {
		return nil, "", recovery.Problemf(recovery.ErrUsage, sinkRemedy, "--sink %q: needs a host and a port from 1 to 65535", target)
	}
	return kind, net.JoinHostPort(u.Hostname(), u.Port()), nil
}

// schemes names the kinds that have a property, joined by sep: "tls://
// or relp+tls://", for a message or a remedy.
func schemes(has func(*Kind) bool, sep string) string {
	var names []string
	for _, k := range kinds {
		if has(k) {
			names = append(names, k.Scheme+"://")
		}
	}
	return strings.Join(names, sep)
}

func takesTLS(k *Kind) bool   { return k.TLS }
func takesOctet(k *Kind) bool { return k.Octet }

// The optional capabilities of each kind of sink, which the replay loop
// and check find by type assertion.
var (
	_ recovery.Preparer     = (*streamSink)(nil)
	_ recovery.Preparer     = (*relpSink)(nil)
	_ recovery.Acknowledger = (*relpSink)(nil)
	_ recovery.Resumer      = (*fileSink)(nil)
	_ recovery.Prober       = (*streamSink)(nil)
	_ recovery.Prober       = (*relpSink)(nil)
)
