package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"siem-recovery/recovery"
)

func gapsCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "gaps",
		Usage:     "find the parts of a span the SIEM lacks, without any alert, and the commands that send them",
		UsageText: "siem-recovery gaps --received FILE --start T --end T --source URL|file:PATH [--bucket 1h] [--by date|created] [--filter F] [run's sink flags] [--json]",
		Description: "Compares the source with what the SIEM holds, part by part: it counts each --bucket of the span at the\n" +
			"source (one API request each; an export is read once), places the lines of FILE (the SIEM's export: CEF\n" +
			"lines by their rt=, JSON lines by their timestamp, or ids) in the same parts, and lists the ids at the\n" +
			"source only where the two counts disagree or the source's count is a lower bound (the API's total is an\n" +
			"estimate). Adjacent parts that lack activities are merged into windows; for each it prints its bounds,\n" +
			"the source's count, the SIEM's, how many are missing, and the run command (with --exclude-ids FILE and\n" +
			"the source, filter and sink flags given here, never a secret) that sends just those.\n\n" +
			"Exit codes: 0 nothing is missing, 10 activities missing; otherwise as for run (2 usage, 3 invalid token,\n" +
			"4 invalid proxy, 5 too many critical errors).",
		Flags: slices.Concat(windowFlags(), sourceFlags(), sinkFlags(), []cli.Flag{
			&cli.StringFlag{Name: "received", Category: "Gaps", EnvVars: env("received"), TakesFile: true,
				Usage: "what the SIEM holds for the span, a `FILE`: the CEF or JSON lines it exported (placed by their rt= or timestamp), or ids"},
			bucketFlag("Gaps"),
			&cli.BoolFlag{Name: "json", Category: "Gaps", EnvVars: env("json"),
				Usage: "print the windows as JSON"},
		}, logFlags()),
		Action: func(c *cli.Context) error { return gaps(c, stdout, stderr) },
	}
}

// bucketFlag is --bucket, the parts gaps and verify count one by one.
func bucketFlag(category string) cli.Flag {
	return &cli.DurationFlag{Name: "bucket", Category: category, EnvVars: env("bucket"), Value: time.Hour,
		Usage: "count the span in parts of `D` (one API request each) and list only the parts whose counts do not settle it"}
}

// maxBuckets bounds the parts a span is cut into: each costs a request.
const maxBuckets = 10_000

// readBuckets cuts w into the parts of --bucket.
func readBuckets(c *cli.Context, w recovery.Window) ([]recovery.Window, error) {
	size := c.Duration("bucket")
	if size < time.Millisecond {
		return nil, recovery.Problemf(recovery.ErrUsage, "give a duration such as 1h or 15m",
			"--bucket %s is shorter than a millisecond", size)
	}
	if n := (w.End - w.Start + size.Milliseconds() - 1) / size.Milliseconds(); n > maxBuckets {
		return nil, recovery.Problemf(recovery.ErrUsage, fmt.Sprintf("give a --bucket of at least %s", time.Duration((w.End-w.Start)/maxBuckets+1)*time.Millisecond),
			"--bucket %s cuts the window %s into %d parts, each an API request; at most %d", size, w, n, maxBuckets)
	}
	return recovery.Buckets(w, size), nil
}

// readReceived reads --received, the SIEM's export, placed in buckets by
// the time by names (nil when the flag is unset).
func readReceived(ctx context.Context, c *cli.Context, log *slog.Logger, buckets []recovery.Window, by recovery.TimeField) (*recovery.Received, error) {
	rec, err := readIDFile(ctx, c, "received", func(r io.Reader) (*recovery.Received, error) { return recovery.ReadReceived(r, buckets, by) })
	if rec == nil {
		return nil, err
	}
	path := c.String("received")
	attrs := []any{"file", path, "ids", rec.IDs.Len()}
	if rec.Outside > 0 {
		attrs = append(attrs, "outside_the_window", rec.Outside)
	}
	log.Info("read the ids the SIEM already holds", attrs...)
	if rec.Unplaced > 0 {
		log.Warn("some lines of the SIEM's export carry no time (bare ids): they count as held, but in no part of the window, "+
			"so the parts they belong to are listed at the source", "file", path, "lines", rec.Unplaced)
	}
	return rec, nil
}

// gapWindow is one window the SIEM lacks activities of, as gaps prints it.
type gapWindow struct {
	Start   string `json:"start"`
	End     string `json:"end"`
	Source  int64  `json:"source"`
	SIEM    int64  `json:"siem"`
	Missing int64  `json:"missing"`
	Command string `json:"command"`
}

// gapsReport is what gaps --json prints.
type gapsReport struct {
	Start         string      `json:"start"`
	End           string      `json:"end"`
	By            string      `json:"by"`
	Bucket        string      `json:"bucket"`
	Buckets       int         `json:"buckets"`
	BucketsListed int         `json:"buckets_listed"`
	Source        int64       `json:"source"`
	SIEM          int64       `json:"siem"`
	Missing       int64       `json:"missing"`
	APIRequests   int64       `json:"api_requests"`
	CountRequests int64       `json:"count_requests"`
	ListRequests  int64       `json:"list_requests"`
	Windows       []gapWindow `json:"windows"`
	// Notes say what a command needs that gaps cannot print: the sink,
	// a proxy's password.
	Notes []string `json:"notes,omitempty"`
}

func gaps(c *cli.Context, stdout, stderr io.Writer) error {
	in, err := readInputs(c.Context, c, stderr)
	if err != nil {
		return err
	}
	log, scope := in.log, in.scope
	if c.String("received") == "" {
		return recovery.Problemf(recovery.ErrUsage, "give --received FILE: the CEF or JSON lines the SIEM holds for the window (its export), or their ids",
			"gaps compares the source with what the SIEM holds, and no --received says what that is")
	}
	if len(in.streams) > 1 {
		return recovery.Problemf(recovery.ErrUsage, "give --data one data type (the SIEM's export of that type as --received)",
			"gaps compares one data type at a time, and --data names %d", len(in.streams))
	}
	// The source's first data type: its activities (the API's), or the
	// rows it has (Graph's).
	s := in.streams[0]
	read := recovery.Scope{Window: scope.Window, By: scopeBy(scope, s.data)}
	buckets, err := readBuckets(c, scope.Window)
	if err != nil {
		return err
	}
	received, err := readReceived(c.Context, c, log, buckets, read.By)
	if err != nil {
		return err
	}
	source, err := openSource(c.Context, c, log, in.src, read, s.filter, s.data, nil, false)
	if err != nil {
		return err
	}
	defer closeSource(source)
	progress := newProgressReporter(in.console, log, "comparing", in.progressEvery)
	cmp, err := compareBuckets(c.Context, source, read, buckets, received, nil, progress.Scanned)
	progress.Close()
	if err != nil {
		return err
	}
	count, atLeast := cmp.Source()
	r := gapsReport{Start: recovery.FormatMillis(scope.Window.Start), End: recovery.FormatMillis(scope.Window.End), By: scope.By.String(),
		Bucket: c.Duration("bucket").String(), Buckets: len(cmp.Buckets), BucketsListed: cmp.Listed(), Source: count, Missing: cmp.Missing(),
		APIRequests: cmp.Requests(), CountRequests: cmp.CountRequests, ListRequests: cmp.ListRequests, Windows: []gapWindow{}}
	for _, b := range cmp.Buckets {
		r.SIEM += b.SIEM
	}
	for _, g := range recovery.Gaps(cmp.Buckets) {
		r.Windows = append(r.Windows, gapWindow{Start: recovery.FormatMillis(g.Start), End: recovery.FormatMillis(g.End),
			Source: g.Source, SIEM: g.SIEM, Missing: g.Missing, Command: gapCommand(c, g.Window)})
	}
	if len(r.Windows) > 0 {
		r.Notes = runNotes(c)
	}
	if err := printGaps(stdout, r, c.Bool("json"), c.String("received")); err != nil {
		return err
	}
	log.Info("compared the window with the SIEM's export, part by part", append([]any{"window", scope.String(),
		"at_source", recovery.CountText(count, atLeast), "in_siem", r.SIEM, "missing", r.Missing, "gaps", len(r.Windows),
		"api_requests", r.APIRequests}, comparisonAttrs(cmp)...)...)
	if r.Missing > 0 {
		return &missingError{detail: fmt.Sprintf("%d activities of the window %s are not in %s, in %d window(s) (on stdout, each with its command)",
			r.Missing, scope, c.String("received"), len(r.Windows)),
			remedy: "run each command printed: it sends just the activities its window lacks (--exclude-ids leaves out those the SIEM holds)"}
	}
	return nil
}

// gapCommand is the run that sends what the SIEM lacks of window w: run
// over w, with gaps' own source, filter and sink flags, leaving out the
// ids the SIEM holds (the --received file, which --exclude-ids reads as
// it is). Secrets are never printed.
func gapCommand(c *cli.Context, w recovery.Window) string {
	return "siem-recovery run --start " + recovery.FormatMillis(w.Start) + " --end " + recovery.FormatMillis(w.End) +
		runFlags(c, "alert", "start", "end", "received", "bucket", "json") + " --exclude-ids " + shellQuote(c.String("received"))
}

// runNotes are what the printed run commands need that gaps cannot put
// in them: a sink when none was given, a proxy's user and password.
func runNotes(c *cli.Context) []string {
	var notes []string
	if !c.IsSet("sink") {
		notes = append(notes, "no --sink was given: the commands write to stdout; add the --sink flags of your SIEM")
	}
	if p := c.String("proxy"); recovery.RedactURL(p) != p {
		notes = append(notes, "give --proxy with its user and password")
	}
	return notes
}

// printGaps prints r: as JSON, or for people, one window a block.
func printGaps(w io.Writer, r gapsReport, asJSON bool, received string) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	var b strings.Builder
	if len(r.Windows) == 0 {
		fmt.Fprintf(&b, "nothing missing: %s holds every activity of [%s, %s) by %s (%d at the source)\n", received, r.Start, r.End, r.By, r.Source)
	} else {
		fmt.Fprintf(&b, "%d activities missing from %s, in %d window(s) of [%s, %s) by %s:\n", r.Missing, received, len(r.Windows), r.Start, r.End, r.By)
	}
	for _, g := range r.Windows {
		fmt.Fprintf(&b, "\n[%s, %s): %d at the source, %d in the SIEM, %d missing\n  %s\n", g.Start, g.End, g.Source, g.SIEM, g.Missing, g.Command)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\nnote: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
