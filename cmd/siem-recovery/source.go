package main

import (
	"context"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"siem-recovery/recovery"
	"siem-recovery/recovery/export"
	"siem-recovery/recovery/mcas"
)

// sourceSpec is a parsed --source.
type sourceSpec struct {
	file     string   // the export's path, for file: sources
	api      *url.URL // the MCAS portal, for API sources
	display  string   // how logs and the checkpoint name it
	identity string   // what the checkpoint fingerprint hashes
}

func parseSource(raw string) (sourceSpec, error) {
	const remedy = "use --source https://TENANT.REGION.portal.cloudappsecurity.com, or file:PATH for a JSON-lines export"
	switch {
	case raw == "":
		return sourceSpec{}, recovery.Problemf(recovery.ErrUsage, remedy, "no --source given")
	case strings.HasPrefix(raw, "file:"):
		path := strings.TrimPrefix(strings.TrimPrefix(raw, "file:"), "//")
		if path == "" {
			return sourceSpec{}, recovery.Problemf(recovery.ErrUsage, remedy, "--source %q names no file", raw)
		}
		return sourceSpec{file: path, display: "file:" + path, identity: export.Identity(path)}, nil
	}
	endpoint, err := mcas.ParseSource(raw)
	if err != nil {
		return sourceSpec{}, err
	}
	// The tenant is named by scheme and host: a copied path such as /api
	// makes no other recovery.
	base := &url.URL{Scheme: endpoint.Scheme, Host: strings.ToLower(endpoint.Host)}
	return sourceSpec{api: base, display: base.String(), identity: base.String()}, nil
}

// openSource opens the source --source names. An API source adds its
// secrets to redactor (nil: one of its own).
func openSource(ctx context.Context, c *cli.Context, log *slog.Logger, src sourceSpec, w recovery.Window, f recovery.Filter, redactor *recovery.Redactor) (recovery.Source, error) {
	pageSize := c.Int("page-size")
	if pageSize <= 0 {
		return nil, recovery.Problemf(recovery.ErrUsage, "use a positive --page-size (default 5000)", "--page-size %d", pageSize)
	}
	if src.file != "" {
		s, err := export.Open(src.file, w, f, pageSize)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	token, identity, err := readAuth(c, src.display)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"rate-limit", "max-critical-errors"} {
		if n := c.Int(name); n <= 0 {
			return nil, recovery.Problemf(recovery.ErrUsage, "give a positive number", "--%s %d", name, n)
		}
	}
	s, err := mcas.New(mcas.Config{
		BaseURL:           src.api.String(),
		Token:             token,
		Identity:          identity,
		Proxy:             c.String("proxy"),
		RateLimit:         c.Int("rate-limit"),
		PageSize:          pageSize,
		MaxCriticalErrors: c.Int("max-critical-errors"),
		Window:            w,
		Filter:            f,
		Logger:            log,
		Redactor:          redactor,
	})
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	return s, nil
}

// readToken returns the API token from --token-file, or --token / MCAS_TOKEN,
// for the API source shown as source.
func readToken(c *cli.Context, source string) (recovery.Token, error) {
	file, direct := c.String("token-file"), c.String("token")
	if file != "" && direct != "" {
		return recovery.Token{}, recovery.Problemf(recovery.ErrUsage, "give the token one way only",
			"both --token-file and --token (or MCAS_TOKEN) are set")
	}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return recovery.Token{}, recovery.Problemf(recovery.ErrInvalidToken, "check the path given to --token-file",
				"cannot read the token file %s: %v", file, err)
		}
		direct = strings.TrimSpace(string(data))
	}
	if direct == "" {
		return recovery.Token{}, recovery.Problemf(recovery.ErrInvalidToken,
			"generate an API token in the MCAS portal (Settings > Security extensions > API tokens) and pass it with --token-file or MCAS_TOKEN",
			"no API token given for %s", source)
	}
	return recovery.NewToken(direct), nil
}
