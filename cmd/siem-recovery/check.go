package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"siem-recovery/checkpoint"
	"siem-recovery/recovery"
	"siem-recovery/recovery/source"
	sinkpkg "siem-recovery/sink"
)

func checkCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "doctor: check the window, filter, identity, token, proxy, sink and checkpoint without sending anything",
		UsageText: "siem-recovery check [the same flags as run]",
		Description: "Takes the same flags as run and checks, in order: the window and the filter; the source (for the API:\n" +
			"the identity it authenticates as; an Entra ID token obtained, and its lifetime; then one request of a single\n" +
			"activity, which proves the token, the proxy and the route); the sink (TCP connect, TLS handshake,\n" +
			"RELP session, or the file opened for appending: created empty if missing); and the checkpoint (belongs to\n" +
			"this recovery, writable, not held by a run). Each line says OK or FAIL, with the MCAS error name and the\n" +
			"remedy on failure (WARN: fine to run, but worth fixing, such as a token file other users can read).\n" +
			"Nothing is sent and no checkpoint is written. The exit code is that of the first failure (as for run), or 0.",
		Flags: runCommand(stderr).Flags,
		Action: func(c *cli.Context) error {
			if err := flagsOnly(c); err != nil {
				return err
			}
			return check(c, stdout)
		},
	}
}

// checkLine is one checked item of the report: OK, FAIL (err), or WARN
// (fine to run, but worth fixing; the exit code stays 0).
type checkLine struct {
	item, detail string
	err          error
	warn         bool
}

func check(c *cli.Context, stdout io.Writer) error {
	// The report is the output; retry logs would only repeat it.
	log, err := newLogger(c, io.Discard)
	if err != nil {
		return err
	}
	ctx := c.Context
	var lines []checkLine
	add := func(item, detail string, err error) bool {
		lines = append(lines, checkLine{item: item, detail: detail, err: err})
		return err == nil
	}
	defer func() { printCheck(stdout, lines) }()

	scope, err := readScope(ctx, c)
	src, srcErr := parseSource(ctx, c)
	if err == nil && srcErr == nil {
		err = windowBegun(scope, src, time.Now())
	}
	if !add("window", scope.String(), err) {
		return firstFailure(lines)
	}
	if w := windowOpenWarning(c, scope, src, time.Now()); w != "" {
		lines = append(lines, checkLine{item: "window", detail: w, warn: true})
	}
	filter, err := readFilter(ctx, c)
	filterText := filter.JSON()
	switch {
	case filterText == "" && srcErr == nil && src.Filter != "":
		filterText = "where " + src.Filter // the kind's own (Graph's --where)
	case filterText == "":
		filterText = "none: every activity of the window"
	}
	if !add("filter", filterText, err) {
		return firstFailure(lines)
	}
	filterLine := len(lines) - 1
	var streams []stream
	if srcErr == nil {
		streams, err = readStreams(ctx, c, src.Kind, false, filter)
		if err != nil {
			add("data", c.String("data"), err)
			srcErr = err
		}
	}
	if srcErr != nil {
		add("source", recovery.RedactURL(c.String("source")), srcErr)
	} else {
		checkSource(ctx, c, log, src, scope, streams[0], func(item, detail string, err error) bool {
			// The API refusing the filter is the filter's failure, not the
			// source's: it answered.
			if item == "filter" {
				lines[filterLine].err = err
				return false
			}
			return add(item, detail, err)
		})
		if w := tokenFileWarning(c.String("token-file")); w != "" && src.Kind.API {
			lines = append(lines, checkLine{item: "token file", detail: w, warn: true})
		}
	}

	sink, err := openSink(ctx, c, log, src, nil, nil)
	if err == nil {
		detail := c.String("sink")
		if p, ok := sink.(recovery.Prober); ok {
			err = p.Probe(ctx)
			detail += ": reachable"
		}
		if k := sinkpkg.KindOf(c.String("sink")); k != nil && k.Datagram {
			detail += ": not probed (UDP gets no answer); " + k.Caveat
		}
		sink.Close()
		add("sink", detail, err)
	} else {
		add("sink", c.String("sink"), err)
	}

	// Without a valid source, the checkpoint's identity is unknown: comparing
	// it would report a mismatch that is not there.
	if !c.Bool("dry-run") && srcErr == nil {
		exclude, err := readIDs(ctx, c, "exclude-ids", log)
		if err != nil {
			add("exclude-ids", c.String("exclude-ids"), err)
		}
		id := identity(src, scope, streams)
		path, err := checkpointPath(c, id)
		detail := path
		if other, by := otherByCheckpoint(c, id); err == nil && other != "" {
			err = otherByError(c, id, other, by)
		} else if err == nil {
			detail, err = checkCheckpoint(ctx, path, id, exclude.Fingerprint())
		}
		add("checkpoint", detail, err)
	}
	return firstFailure(lines)
}

// checkSource opens the source and, for the API, makes the one request
// that proves the proxy and the token.
func checkSource(ctx context.Context, c *cli.Context, log *slog.Logger, src source.Target, scope recovery.Scope, s stream,
	add func(item, detail string, err error) bool) {
	source, err := openSource(ctx, c, log, src, recovery.Scope{Window: scope.Window, By: scopeBy(scope, s.data)}, s.filter, s.data, nil, false)
	if err != nil {
		add(failedItem(err, "source"), src.Display, err)
		return
	}
	defer closeSource(source)
	if !src.Kind.API {
		add("source", src.Display+": readable", nil)
		return
	}
	// An Entra ID token is obtained first, so that a refusal by Entra ID
	// is told apart from one by the API.
	cr, hasIdentity := source.(recovery.Credentialed)
	var validFor time.Duration
	if hasIdentity {
		validFor, err = cr.Authorize(ctx)
	}
	authorized := err == nil
	if p, ok := source.(recovery.Prober); ok && authorized {
		err = p.Probe(ctx)
	}
	// The API answered, and refused the request: the filter (the one part
	// of the request the operator wrote).
	if authorized && errors.Is(err, recovery.ErrBadRequest) {
		add("source", src.Display+": the API answers", nil)
		add("filter", "", err)
		return
	}
	// A probe that failed for anything but the token or the proxy (no
	// answer at that address, not the activities API, an answer no API
	// gives) is the source's failure: nothing told whether the token is
	// good.
	if authorized && err != nil && !errors.Is(err, recovery.ErrInvalidToken) && !errors.Is(err, recovery.ErrInvalidProxy) {
		add("source", src.Display, err)
		return
	}
	add("source", src.Display, nil)
	if hasIdentity {
		add("identity", cr.Credential(), nil)
	}
	if proxy := c.String("proxy"); proxy != "" {
		var proxyErr error
		if errors.Is(err, recovery.ErrInvalidProxy) {
			proxyErr = err
		}
		if !add("proxy", recovery.RedactURL(proxy)+": the API answers through it", proxyErr) {
			return
		}
	}
	detail := "the API accepted the token (one request)"
	if validFor > 0 {
		detail = "obtained, valid for " + lifetime(validFor) + "; the API accepted it (one request)"
	}
	if !add(failedItem(err, "token"), detail, err) {
		return
	}
	if counter, ok := source.(recovery.Counter); ok {
		t, err := counter.Count(ctx, scope.Window)
		n := t.Activities
		if errors.Is(err, recovery.ErrNoTotal) {
			add("count", "the API's answer carries no usable total (one more request): a run pages through the window without knowing its size", nil)
			return
		}
		counted := fmt.Sprintf("%d activities in the window (one more request)", n)
		if t.AtLeast {
			// The API stopped counting: what a run needs is more.
			counted = fmt.Sprintf("more than %d activities in the window (one more request; the API counts no further)", n)
			n++
		}
		requests, took := runCost(n, c.Int("page-size"), c.Int("rate-limit"))
		add("count", fmt.Sprintf("%s; a run needs at least %d request(s) of %d, %s at --rate-limit %d",
			counted, requests, c.Int("page-size"), took, c.Int("rate-limit")), err)
	}
}

// windowOpenWarning says, for the API, when the window has not ended: a run
// sends what MCAS saved so far, stops with exit 75 and the checkpoint
// waiting, and a run from its end plus the margin completes it. "" when
// the window is over, or the source is an export (a fixed file).
func windowOpenWarning(c *cli.Context, scope recovery.Scope, src source.Target, now time.Time) string {
	margin, err := duration(c, "settle-margin")
	settle := recovery.Settle{Margin: margin}
	if err != nil || !src.Kind.Late || settle.Ended(scope.Window, now) {
		return ""
	}
	return fmt.Sprintf("the window ends at %s, after the present: a run sends what MCAS saved so far and stops (exit 75, the checkpoint waiting); "+
		"a run from %s (its end plus --settle-margin) completes it; %s",
		recovery.FormatMillis(scope.Window.End), settle.EndsAt(scope.Window).Format(time.RFC3339), followAdvice)
}

// lifetime shows how long a token is valid: to the minute, as the seconds
// pass while the doctor runs; to the second for a token of a few minutes.
func lifetime(d time.Duration) string {
	if d >= 2*time.Minute {
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}

// runCost is what a run of n activities costs at least: one request a
// page, spaced by the rate limit, and how long that takes, said as a
// duration ("more than 100 years" past that: a time.Duration overflows at
// 292). A page can hold fewer activities than the page size (scan mode ends
// a page before a millisecond it cannot hold whole), so more requests may
// be needed. A page size or rate limit of 0 or less is the source's
// default, as for a run.
func runCost(n int64, pageSize, perMinute int) (requests int64, took string) {
	if pageSize <= 0 {
		pageSize = defaultPageSize
	}
	if perMinute <= 0 {
		perMinute = defaultRateLimit
	}
	size := int64(pageSize)
	requests = max(1, n/size)
	if n > size && n%size != 0 {
		requests++
	}
	const longest = 100 * 365 * 24 * time.Hour
	d := float64(requests) * float64(time.Minute) / float64(perMinute)
	if d >= float64(longest) {
		return requests, "more than 100 years"
	}
	return requests, time.Duration(d).Round(time.Second).String()
}

// failedItem names the line of a failure by what it is about.
func failedItem(err error, fallback string) string {
	switch {
	case errors.Is(err, recovery.ErrInvalidToken):
		return "token"
	case errors.Is(err, recovery.ErrInvalidProxy):
		return "proxy"
	}
	return fallback
}

// checkCheckpoint tells whether a run could use the checkpoint at path,
// without creating, locking or changing it.
func checkCheckpoint(ctx context.Context, path string, id checkpoint.Identity, excluded string) (string, error) {
	st, active, err := checkpoint.Read(ctx, path)
	if errors.Is(err, fs.ErrNotExist) {
		dir := filepath.Dir(path)
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return path + ": new; a run will create it (mode 0600) and its directory (mode 0700)", nil
		}
		if err := creatable(path); err != nil {
			return path, err
		}
		return path + ": new; a run will create it (mode 0600)", nil
	}
	if err != nil {
		return path, err
	}
	if !id.Matches(st) {
		return path, checkpoint.Mismatch(path, st, id, "these flags ask for")
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return path, recovery.Problemf(recovery.ErrCheckpointUnavailable, "run as the user that owns it", "%s is not writable: %v", path, err)
	}
	f.Close()
	if active {
		return path, recovery.Problemf(recovery.ErrCheckpointUnavailable, "wait for that run to finish; status shows its progress",
			"%s is held by a run right now (%.1f%% done)", path, st.ProgressOf(*st.Current(), time.Now(), true).Percent)
	}
	switch st.Plan(excluded) {
	case recovery.PlanNothing:
		return fmt.Sprintf("%s: completed (%d sent); a run will do nothing", path, st.Sent), nil
	case recovery.PlanTopUp:
		return fmt.Sprintf("%s: completed (%d sent); a run will sweep the window again and send what --exclude-ids lacks (top-up)", path, st.Sent), nil
	}
	if st.State == recovery.StateSettling {
		return fmt.Sprintf("%s: settling until %s (%d sent, %d of them saved late); a run will send what MCAS saved since its last sweep",
			path, st.Settle.Deadline.Format(time.RFC3339), st.Sent, st.Settle.LateSent), nil
	}
	if st.State == recovery.StateWaiting {
		return fmt.Sprintf("%s: waiting for the window's end (%d sent); a run will send what MCAS saved since the last, and from %s complete it",
			path, st.Sent, st.Settle.CompletesFrom(st.Window).Format(time.RFC3339)), nil
	}
	return fmt.Sprintf("%s: resumable, %.1f%% done, %d sent", path, st.ProgressOf(st.Pass, time.Now(), false).Percent, st.Sent), nil
}

// creatable checks that a checkpoint can be created at path: its
// directory exists and this user can write in it. It leaves nothing.
func creatable(path string) error {
	probe, err := os.CreateTemp(filepath.Dir(path), ".siem-recovery-check-*")
	if err != nil {
		return recovery.Problemf(recovery.ErrCheckpointUnavailable, "choose a --checkpoint in a directory this user can write",
			"%s cannot be created: %v", path, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return nil
}

func printCheck(w io.Writer, lines []checkLine) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, l := range lines {
		if l.warn {
			fmt.Fprintf(tw, "WARN\t%s\t%s\n", l.item, l.detail)
			continue
		}
		if l.err == nil {
			fmt.Fprintf(tw, "OK\t%s\t%s\n", l.item, l.detail)
			continue
		}
		_, name := exitCode(l.err)
		fmt.Fprintf(tw, "FAIL\t%s\t%s: %s\n", l.item, name, explain(l.err))
	}
	tw.Flush()
}

// firstFailure returns the first failed line's error, which sets the exit
// code; the report already printed it, so the message is not repeated.
func firstFailure(lines []checkLine) error {
	i := slices.IndexFunc(lines, func(l checkLine) bool { return l.err != nil })
	if i < 0 {
		return nil
	}
	return &reportedError{lines[i].err}
}

// reportedError is an error already shown to the operator: it sets the
// exit code, and execute does not print it again.
type reportedError struct{ err error }

func (e *reportedError) Error() string { return e.err.Error() }
func (e *reportedError) Unwrap() error { return e.err }
