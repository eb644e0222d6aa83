package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"siem-recovery/internal/argfile"
	"siem-recovery/recovery"
	"siem-recovery/recovery/export"
	"siem-recovery/recovery/graph"
	"siem-recovery/recovery/mcas"
	"siem-recovery/recovery/source"
)

// sourceKinds are the kinds of source --source can name, in the order
// they are asked whether a value is theirs: one line each.
var sourceKinds = []*source.Kind{&export.Kind, &graph.Kind, &mcas.Kind}

// parseSource reads --source: the kind that claims it, and its target
// (with the kind's own flags that make it, read within ctx).
func parseSource(ctx context.Context, c *cli.Context) (source.Target, error) {
	return source.Of(ctx, sourceKinds, c.String("source"), c)
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
func openSource(ctx context.Context, c *cli.Context, log *slog.Logger, src source.Target, scope recovery.Scope, f recovery.Filter,
	data recovery.DataType, redactor *recovery.Redactor, raw bool) (recovery.Source, error) {
	pageSize := c.Int("page-size")
	if pageSize <= 0 {
		return nil, recovery.Problemf(recovery.ErrUsage, "use a positive --page-size (default 5000)", "--page-size %d", pageSize)
	}
	return src.Kind.Open(ctx, src, source.Options{
		Data: data, Scope: scope, Filter: f, PageSize: pageSize, Settings: c, Log: log, Redactor: redactor, Raw: raw,
		Credential: func(ctx context.Context, tokens bool) (source.Credential, error) {
			token, identity, err := readAuth(ctx, c, log, src.Display)
			return source.Credential{Token: token, Identity: identity}, err
		},
	})
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

// openStreams opens the source of each data type of streams over scope (by
// their own time: scopeBy), the first through its kind, the others, where
// the source can (a DataOpener), on the first one's connection and request
// budget: the tenant's quota is one, whichever data type spends it.
func openStreams(ctx context.Context, c *cli.Context, log *slog.Logger, src source.Target, scope recovery.Scope, streams []stream,
	redactor *recovery.Redactor, raw bool) ([]recovery.Source, error) {
	var sources []recovery.Source
	for i, s := range streams {
		sc := recovery.Scope{Window: scope.Window, By: scopeBy(scope, s.data)}
		var (
			one recovery.Source
			err error
		)
		if opener, ok := firstOf(sources).(recovery.DataOpener); ok && i > 0 {
			one, err = opener.OpenData(s.data, sc, s.filter)
		} else {
			one, err = openSource(ctx, c, log, src, sc, s.filter, s.data, redactor, raw)
		}
		if err != nil {
			for _, open := range sources {
				closeSource(open)
			}
			return nil, err
		}
		sources = append(sources, one)
	}
	return sources, nil
}

func firstOf(sources []recovery.Source) recovery.Source {
	if len(sources) == 0 {
		return nil
	}
	return sources[0]
}
