package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"siem-recovery/checkpoint"
	"siem-recovery/recovery"
)

func verifyCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check that the SIEM got the whole window (step 2 of the MCAS recovery procedure)",
		UsageText: "siem-recovery verify --alert ALERT.json --source URL|file:PATH [--filter F] [--checkpoint P] [--received FILE [--bucket D]] [run's sink flags]",
		Description: "Counts the window's activities at the source (same window, source and filter flags as run; the API\n" +
			"answers with the count in one request, and one more for what MCAS saved after the recovery's pass began;\n" +
			"an export is read through) and compares the count with what the checkpoint says was sent. The API's\n" +
			"count is an estimate: where it is only a lower bound, verify counts the window in parts of --bucket and\n" +
			"lists the parts whose count is still one; where it exceeds what was sent, it lists the window to count\n" +
			"it exactly. It never decides on an estimate alone, and says what listing cost.\n" +
			"With --received FILE (the ids the SIEM holds: one per line, or the CEF or JSON lines it received) it\n" +
			"counts each part of --bucket at the source (one request each), compares with the lines of FILE in it,\n" +
			"lists the parts whose counts disagree, and prints every missing activity id on stdout, with the command\n" +
			"that sends just those. It also takes run's sink flags, so that the same command line serves both, and that\n" +
			"command is complete.\n\n" +
			"Exit codes: 0 something was compared and nothing is missing, 10 activities missing, 6 nothing to compare\n" +
			"with (no checkpoint and no --received) or a checkpoint of another recovery; otherwise as for run\n" +
			"(2 usage, 3 invalid token, 4 invalid proxy, 5 too many critical errors).",
		Flags: slices.Concat(windowFlags(), sourceFlags(), sinkFlags(), []cli.Flag{
			checkpointFlag(),
			&cli.StringFlag{Name: "received", Category: "Verify", EnvVars: env("received"), TakesFile: true,
				Usage: "the ids the SIEM holds, a `FILE`: one id per line, or CEF lines with externalId=, or JSON lines with _id"},
			bucketFlag("Verify"),
		}, logFlags()),
		Action: func(c *cli.Context) error { return verify(c, stdout, stderr) },
	}
}

func verify(c *cli.Context, stdout, stderr io.Writer) error {
	in, err := readInputs(c.Context, c, stderr)
	if err != nil {
		return err
	}
	log, scope, src := in.log, in.scope, in.src
	// The checkpoint is optional with --received: verify also checks a
	// SIEM against a window recovered some other way. Without either,
	// nothing would be compared, and "nothing missing" would be a guess.
	var whole *recovery.State
	id := identity(src, scope, in.streams)
	cpPath, err := checkpointPath(c, id)
	if err != nil {
		return err
	}
	if other, by := otherByCheckpoint(c, id); other != "" {
		// --by left out, and this recovery's checkpoint is by the other
		// time: verify it, by that time.
		cpPath, id.By = other, by
	}
	if s, _, err := checkpoint.Read(c.Context, cpPath); err == nil {
		if adopted := id; !c.IsSet("by") && s.By != id.By {
			adopted.By = s.By
			if adopted.Matches(s) {
				id = adopted
			}
		}
		if !id.Matches(s) {
			return checkpoint.Mismatch(cpPath, s, id, "verify asks for")
		}
		if id.By != scope.By {
			// Verify then reads the window as the recovery did, and the
			// command it prints says so.
			if err := c.Set("by", id.By.String()); err != nil {
				return err
			}
			scope.By = id.By
			in.scope = scope
			log.Info("the checkpoint was made --by "+id.By.String()+": verify reads the window by "+id.By.String()+" too", "checkpoint", cpPath)
		}
		whole = &s
	} else if !errors.Is(err, fs.ErrNotExist) || c.IsSet("checkpoint") {
		return err
	}
	// Each data type of the recovery in turn (--data activities,alerts):
	// the first missing is what the command ends on, once all are checked.
	var first error
	for _, s := range in.streams {
		var st *recovery.State
		if whole != nil {
			st = whole.Stream(s.data)
		}
		vlog := log
		if !onlyActivities(in.streams) {
			vlog = log.With("data", string(s.data))
		}
		err := verifyStream(c, in, stdout, vlog, s, st, cpPath)
		var missing *missingError
		switch {
		case errors.As(err, &missing):
			if first == nil {
				first = err
			}
		case err != nil:
			return err
		}
	}
	return first
}

// verifyStream verifies data type s of the window: against the
// checkpoint's state of it (st, nil for none), and with --received
// against what the SIEM holds.
func verifyStream(c *cli.Context, in inputs, stdout io.Writer, log *slog.Logger, s stream, st *recovery.State, cpPath string) error {
	scope, src := in.scope, in.src
	// What the source reads: the data type's time (alerts have one).
	read := recovery.Scope{Window: scope.Window, By: scopeBy(scope, s.data)}
	buckets, err := readBuckets(c, scope.Window)
	if err != nil {
		return err
	}
	received, err := readReceived(c.Context, c, log, buckets, read.By)
	if err != nil {
		return err
	}
	if st == nil && received == nil {
		return recovery.Problemf(recovery.ErrCheckpointUnavailable,
			"give --checkpoint with the recovery's checkpoint, or --received FILE with the ids the SIEM holds",
			"nothing to compare the source's count with: no checkpoint at %s, and no --received", cpPath)
	}

	source, err := openSource(c.Context, c, log, src, read, s.filter, s.data, nil, false)
	if err != nil {
		return err
	}
	defer closeSource(source)
	if received == nil {
		in.log = log
		return verifyCount(c, in, source, read, *st, buckets)
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	progress := newProgressReporter(in.console, log, "verifying", in.progressEvery)
	cmp, err := compareBuckets(c.Context, source, read, buckets, received, func(a recovery.Activity) { fmt.Fprintln(out, a.ID) }, progress.Scanned)
	progress.Close()
	if err != nil {
		return err
	}
	if err := out.Flush(); err != nil {
		return err
	}
	var compared []any // what the checkpoint says
	requests := cmp.Requests()
	if st != nil {
		late, more, err := lateArrivals(c.Context, source, *st)
		if err != nil {
			return err
		}
		requests += more
		compared = append([]any{"sent", st.Sent, "skipped", st.Skipped, "state", st.State}, late...)
	}
	count, atLeast := cmp.Source()
	missing := cmp.Missing()
	attrs := append([]any{"window", scope.String(), "at_source", recovery.CountText(count, atLeast), "api_requests", requests}, compared...)
	attrs = append(attrs, "received_ids", received.IDs.Len(), "missing", missing)
	attrs = append(attrs, comparisonAttrs(cmp)...)
	log.Info("verified against the SIEM's ids", attrs...)
	if missing > 0 {
		return &missingError{detail: fmt.Sprintf("%d of the window's %s %s are not in %s (their ids are on stdout)", missing, recovery.CountText(count, atLeast), s.data, c.String("received")),
			remedy: topUpAdvice(c, st)}
	}
	return nil
}

// compareBuckets compares the buckets of scope's window at source with
// what the SIEM holds (received): counts each, lists those whose counts
// do not settle it, tells missing each activity the SIEM lacks.
func compareBuckets(ctx context.Context, source recovery.Source, scope recovery.Scope, buckets []recovery.Window, received *recovery.Received,
	missing func(recovery.Activity), progress func(recovery.Page)) (recovery.Comparison, error) {
	c := &recovery.Comparer{Source: source, Scope: scope, Received: received, Missing: missing, Progress: progress}
	cmp, err := c.Count(ctx, buckets)
	if err != nil {
		return cmp, err
	}
	return cmp, c.List(ctx, &cmp, recovery.BucketCount.NeedsListing)
}

// comparisonAttrs say what a comparison by buckets cost: the parts
// counted, those listed because their counts did not settle it, and the
// requests each took.
func comparisonAttrs(cmp recovery.Comparison) []any {
	return []any{"buckets", len(cmp.Buckets), "buckets_listed", cmp.Listed(), "count_requests", cmp.CountRequests, "list_requests", cmp.ListRequests}
}

// verifyCount compares the source's count of the window (one request for
// the API) with what the checkpoint says the recovery sent or skipped. The
// count is an estimate: where it is a lower bound, the window is counted
// in buckets (one request each) and the buckets whose count is still a
// lower bound are listed; where the count exceeds what was delivered, the
// window is listed to count it exactly. Nothing missing is claimed but on
// a listing.
func verifyCount(c *cli.Context, in inputs, source recovery.Source, read recovery.Scope, st recovery.State, buckets []recovery.Window) error {
	progress := newProgressReporter(in.console, in.log, "counting", in.progressEvery)
	defer progress.Close()
	t, err := recovery.Count(c.Context, source, in.scope.Window, progress.Scanned)
	if err != nil {
		return err
	}
	late, more, err := lateArrivals(c.Context, source, st)
	if err != nil {
		return err
	}
	requests := int64(t.Requests) + more
	delivered := st.Sent + st.Skipped
	settling := st.State == recovery.StateSettling
	if st.State != recovery.StateCompleted && !settling {
		progress.Close()
		in.log.Info("verified against the checkpoint", append([]any{"window", in.scope.String(), "at_source", countAttr(t), "api_requests", requests,
			"sent", st.Sent, "skipped", st.Skipped, "state", st.State}, late...)...)
		remedy := "run the recovery again to finish it, then verify with --received to list what the SIEM lacks"
		if st.State == recovery.StateWaiting {
			remedy = "the window has not ended: the first run from " + st.Settle.CompletesFrom(st.Window).Format(time.RFC3339) +
				" sends the rest and completes the recovery; verify again after it"
		}
		short := ""
		if n := t.Activities - delivered; n > 0 {
			short = fmt.Sprintf(": at least %d not delivered", n)
		}
		return &missingError{detail: fmt.Sprintf("the source has %s activities in the window; the recovery sent %d and skipped %d (state %s)%s",
			recovery.CountText(t.Activities, t.AtLeast), st.Sent, st.Skipped, st.State, short), remedy: remedy}
	}
	attrs := []any{"window", in.scope.String(), "at_source", countAttr(t)}
	count := t.Activities
	if t.AtLeast || count > delivered {
		// The total cannot settle it: count what it cannot, exactly.
		cmp, err := exactCount(c.Context, in.log, source, read, t, buckets, delivered, progress.Scanned)
		requests += cmp.Requests()
		if err != nil {
			return err
		}
		count, _ = cmp.Source()
		attrs = []any{"window", in.scope.String(), "at_source", count, "total", recovery.CountText(t.Activities, t.AtLeast)}
		if t.AtLeast {
			attrs = append(attrs, comparisonAttrs(cmp)...)
		} else {
			attrs = append(attrs, "list_requests", cmp.ListRequests)
		}
	}
	progress.Close()
	in.log.Info("verified against the checkpoint", append(append(attrs, "api_requests", requests,
		"sent", st.Sent, "skipped", st.Skipped, "state", st.State), late...)...)
	if count <= delivered {
		return nil
	}
	remedy := "verify again with --received FILE (the ids the SIEM holds) to list them, and the command that sends just those"
	if settling {
		remedy = "the recovery is settling until " + st.Settle.Deadline.Format(time.RFC3339) +
			": its next run sends what MCAS saved since its last sweep; verify again after it"
	}
	return &missingError{detail: fmt.Sprintf("the source lists %d activities in the window (counted by listing them); the recovery sent %d and skipped %d (state %s): %d not delivered",
		count, st.Sent, st.Skipped, st.State, count-delivered), remedy: remedy}
}

// exactCount counts the window's activities where its total t cannot
// settle whether the recovery delivered them all (delivered): a lower
// bound is counted again in buckets, one request each, and the buckets
// whose count is still one are listed; if the counts then exceed what was
// delivered, every bucket not listed yet is listed. Each step says what
// it does and costs.
func exactCount(ctx context.Context, log *slog.Logger, source recovery.Source, read recovery.Scope, t recovery.Tally, buckets []recovery.Window, delivered int64,
	progress func(recovery.Page)) (recovery.Comparison, error) {
	c := &recovery.Comparer{Source: source, Scope: read, Progress: progress}
	cmp := recovery.Comparison{Buckets: []recovery.BucketCount{{Window: read.Window, Source: t.Activities}}}
	if _, counts := source.(recovery.Counter); !counts {
		// An export was counted by reading it through: a listing.
		cmp.Buckets[0].Listed = true
	}
	if t.AtLeast {
		log.Info(fmt.Sprintf("the source's total is a lower bound (more than %d): counting the window in %d part(s) of --bucket, one request each, "+
			"and listing those whose count is a lower bound too", t.Activities, len(buckets)))
		var err error
		if cmp, err = c.Count(ctx, buckets); err != nil {
			return cmp, err
		}
		if err := c.List(ctx, &cmp, recovery.LowerBound); err != nil {
			return cmp, err
		}
	}
	if n, _ := cmp.Source(); n > delivered {
		log.Info(fmt.Sprintf("the source counts %d activities, more than the recovery delivered (%d): listing the window at the source to count them exactly "+
			"(a request for every page)", n, delivered))
		if err := c.List(ctx, &cmp, recovery.Everything); err != nil {
			return cmp, err
		}
	}
	return cmp, nil
}

// lateArrivals counts, for a recovery whose pass had a horizon, the
// activities of the window MCAS saved from it on: those the pass left to
// the sweeps (one request, counted in requests). It says nothing of a
// recovery without one (an export, or a pass begun before --settle existed).
func lateArrivals(ctx context.Context, source recovery.Source, st recovery.State) (attrs []any, requests int64, err error) {
	h := st.Scope.SavedBefore
	if st.Settle == nil || h == 0 {
		return nil, 0, nil
	}
	c, ok := recovery.Over(source, recovery.Scope{Window: st.Window, By: st.By, SavedFrom: h}).(recovery.Counter)
	if !ok {
		return nil, 0, nil
	}
	t, err := c.Count(ctx, st.Window)
	n, req := t.Activities, t.Requests
	if err != nil {
		return nil, int64(req), fmt.Errorf("count the activities saved after the pass began: %w", err)
	}
	return []any{"saved_late", n, "saved_late_from", recovery.FormatMillis(h), "late_sent", st.Settle.LateSent, "sweeps", st.Settle.Sweeps}, int64(req), nil
}

// topUpAdvice is the command that sends just the missing activities: run,
// with verify's own flags, leaving out the ids the SIEM holds. On a
// completed checkpoint that run is a top-up pass; on an unfinished one the
// recovery must finish first (a run resumes where it stands, and would not
// go back for what is missing before that).
func topUpAdvice(c *cli.Context, st *recovery.State) string {
	cmd := runCommandLine(c, "received", "bucket") + " --exclude-ids " + shellQuote(c.String("received"))
	if !c.IsSet("sink") {
		cmd += " (with the --sink flags of the recovery)"
	}
	if p := c.String("proxy"); recovery.RedactURL(p) != p {
		cmd += " (give --proxy with its user and password)"
	}
	switch {
	case st == nil:
		return "send just those with: " + cmd
	case st.State == recovery.StateCompleted:
		return "send just those with a top-up pass of the completed recovery: " + cmd
	}
	return fmt.Sprintf("the recovery is %s: finish it (re-run it), verify again, then send what is still missing with a top-up pass: %s", st.State, cmd)
}

// runCommandLine is "siem-recovery run" with the flags c was given (from
// the command line or the environment), except skip, the token (never
// printed) and those of logging; the proxy's user and password are
// hidden as everywhere else.
func runCommandLine(c *cli.Context, skip ...string) string {
	return "siem-recovery run" + runFlags(c, skip...)
}

// runFlags are runCommandLine's flags, each after a space.
func runFlags(c *cli.Context, skip ...string) string {
	skip = append(skip, "token", "log-format", "quiet", "verbose", "progress-interval")
	var b strings.Builder
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if slices.Contains(skip, name) || !c.IsSet(name) {
			continue
		}
		switch f.(type) {
		case *cli.BoolFlag:
			if c.Bool(name) {
				b.WriteString(" --" + name)
			}
		case *cli.IntFlag:
			fmt.Fprintf(&b, " --%s %d", name, c.Int(name))
		default:
			v := fmt.Sprint(c.Value(name))
			if name == "proxy" {
				v = recovery.RedactURL(v)
			}
			b.WriteString(" --" + name + " " + shellQuote(v))
		}
	}
	return b.String()
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=@%+,-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// missingError is verify's finding that activities are missing (exit 10).
type missingError struct{ detail, remedy string }

func (e *missingError) Error() string { return e.detail + "; " + e.remedy }
