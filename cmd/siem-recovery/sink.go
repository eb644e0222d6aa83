package main

import (
	"context"
	"log/slog"

	"github.com/urfave/cli/v2"

	"siem-recovery/recovery"
	"siem-recovery/recovery/source"
	"siem-recovery/sink"
)

// datagramSender is the udp:// sink: at most once, it can only say how
// many datagrams it sent.
type datagramSender interface {
	DatagramsSent() int64
}

// openSink opens the sink --sink names, formatting as --format says. Once
// stop is closed, the sink stops retrying a receiver that is down.
// onFailure, if not nil, is told each distinct connection failure.
func openSink(ctx context.Context, c *cli.Context, log *slog.Logger, src source.Target, stop <-chan struct{}, onFailure func(string)) (recovery.Sink, error) {
	if n := c.Int("udp-rate"); n < 0 {
		return nil, recovery.Problemf(recovery.ErrUsage, "give datagrams per second, or 0 to send unpaced", "--udp-rate %d is negative", n)
	}
	portal := c.String("portal-url")
	if portal == "" {
		portal = src.Portal
	}
	return sink.Open(ctx, c.String("sink"), sink.Options{
		Format:             c.String("format"),
		Syslog:             c.String("syslog"),
		Framing:            c.String("framing"),
		CAFile:             c.String("ca-file"),
		CertFile:           c.String("tls-cert"),
		KeyFile:            c.String("tls-key"),
		ServerName:         c.String("tls-server-name"),
		InsecureSkipVerify: c.Bool("tls-insecure-skip-verify"),
		Version:            version,
		PortalURL:          portal,
		Logger:             log,
		OnFailure:          onFailure,
		Stop:               stop,
		UDPRate:            c.Int("udp-rate"),
	})
}

// sendsRaw reports whether --format sends the activities' text as the
// source returned it (Activity.Raw): json does, CEF reads only the decoded
// fields, so its source need not keep the text.
func sendsRaw(c *cli.Context) bool { return c.String("format") == sink.FormatJSON }
