package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"siem-recovery/internal/argfile"
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
		id, err := export.Identity(path)
		if err != nil {
			return sourceSpec{}, exportProblem(path, err)
		}
		return sourceSpec{file: path, display: "file:" + path, identity: id}, nil
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

// exportProblem words a failure to open the export of --source file:PATH.
func exportProblem(path string, err error) error {
	var notRegular *argfile.NotRegularError
	if errors.As(err, &notRegular) && notRegular.Mode.IsDir() {
		return recovery.Problemf(recovery.ErrUsage, "name a JSON-lines file after file: in --source", "the export %s is a directory", path)
	}
	if errors.As(err, &notRegular) {
		return recovery.Problemf(recovery.ErrUsage,
			"save the export to a regular file first (e.g. zcat export.jsonl.gz > export.jsonl) and give that after file:; "+
				"a run resumes by byte offset, which a pipe or device cannot give back",
			"--source file:%s: %s is %s, not a regular file", path, path, argfile.Describe(notRegular.Mode))
	}
	return recovery.Problemf(recovery.ErrUsage, "check the path after file: in --source", "cannot open the export %s: %w", path, err)
}

// closeSource releases what a source holds open (an export's file).
func closeSource(s recovery.Source) {
	if c, ok := s.(io.Closer); ok {
		c.Close()
	}
}

// openSource opens the source --source names. An API source adds its
// secrets to redactor (nil: one of its own). raw says whether the pages'
// activities must carry their text (Activity.Raw): only what --format json
// sends reads it, and pages are much smaller without it.
func openSource(ctx context.Context, c *cli.Context, log *slog.Logger, src sourceSpec, scope recovery.Scope, f recovery.Filter, redactor *recovery.Redactor, raw bool) (recovery.Source, error) {
	pageSize := c.Int("page-size")
	if pageSize <= 0 {
		return nil, recovery.Problemf(recovery.ErrUsage, "use a positive --page-size (default 5000)", "--page-size %d", pageSize)
	}
	if src.file != "" {
		s, err := export.Open(src.file, scope, f, pageSize)
		if err != nil {
			return nil, exportProblem(src.file, err)
		}
		if !raw {
			s.LeaveRaw()
		}
		return s, nil
	}
	token, identity, err := readAuth(ctx, c, log, src.display)
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
		Window:            scope.Window,
		By:                scope.By,
		Filter:            f,
		Logger:            log,
		Redactor:          redactor,
		LeaveRaw:          !raw,
	})
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	return s, nil
}

// readToken returns the API token from --token-file, or --token / MCAS_TOKEN,
// for the API source shown as source. A token file other users can read is
// used, with a warning.
func readToken(ctx context.Context, c *cli.Context, log *slog.Logger, source string) (recovery.Token, error) {
	file, direct := c.String("token-file"), c.String("token")
	if file != "" && direct != "" {
		return recovery.Token{}, recovery.Problemf(recovery.ErrUsage, "give the token one way only",
			"both --token-file and --token (or MCAS_TOKEN) are set")
	}
	if file != "" {
		data, info, err := readArgFile(ctx, "token-file", "the token file", file, recovery.ErrInvalidToken)
		if err != nil {
			return recovery.Token{}, err
		}
		if exposed(info) {
			log.Warn(tokenExposed, "file", file, "mode", info.Mode().Perm().String(), "remedy", "chmod 600 "+file)
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

// readArgFile reads the file --flag names, whole and under the cap for
// small files; what names it in messages ("the alert file"). A failure is
// of kind: a usage error, or an invalid token for the token file.
func readArgFile(ctx context.Context, flag, what, path string, kind error) ([]byte, fs.FileInfo, error) {
	data, info, err := argfile.Read(ctx, path, argfile.SmallLimit)
	if err != nil {
		return nil, nil, argFileProblem(ctx, kind, flag, what+" "+path, err)
	}
	return data, info, nil
}

// argFileProblem words the failure err to read an argument file, named as
// what: over its cap, read until the run stopped (a pipe nobody wrote to),
// or unreadable.
func argFileProblem(ctx context.Context, kind error, flag, what string, err error) error {
	var tooLarge *argfile.TooLargeError
	switch {
	case errors.As(err, &tooLarge):
		return recovery.Problemf(kind, "check the path given to --"+flag,
			"%s is larger than %s, the most --%s reads", what, argfile.Size(tooLarge.Limit), flag)
	case ctx.Err() != nil:
		return recovery.Problemf(recovery.ErrStopped, "give --"+flag+" a regular file, or make sure something writes to the pipe",
			"stopped while still waiting to read %s", what)
	}
	return recovery.Problemf(kind, "check the path given to --"+flag, "cannot read %s: %w", what, err)
}

const tokenExposed = "the token file can be read by other users"

// tokenFileWarning is check's word on a token file other users can read, or
// "" when it is private (or cannot be looked at: reading it reports that).
func tokenFileWarning(path string) string {
	info, err := os.Stat(path)
	if err != nil || !exposed(info) {
		return ""
	}
	return fmt.Sprintf("%s: %s (mode %s); chmod 600 %s", path, tokenExposed, info.Mode().Perm(), path)
}
