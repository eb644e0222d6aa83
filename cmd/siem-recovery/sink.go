package main

import (
	"context"
	"log/slog"

	"github.com/urfave/cli/v2"

	"siem-recovery/recovery"
	"siem-recovery/sink"
)

// openSink opens the sink --sink names, formatting as --format says. Once
// stop is closed, the sink stops retrying a receiver that is down.
// onFailure, if not nil, is told each distinct connection failure.
func openSink(ctx context.Context, c *cli.Context, log *slog.Logger, src sourceSpec, stop <-chan struct{}, onFailure func(string)) (recovery.Sink, error) {
	portal := c.String("portal-url")
	if portal == "" && src.api != nil {
		portal = src.api.String()
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
	})
}
