package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"siem-recovery/checkpoint"
	"siem-recovery/internal/argfile"
	"siem-recovery/recovery"
	"siem-recovery/recovery/source"
	"siem-recovery/sink"
)

func runCommand(stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "recover one window (resumes if the checkpoint exists)",
		UsageText: "siem-recovery run --alert ALERT.json --source URL|file:PATH [--filter FILTER.json] [--sink URL] [flags]",
		Description: "Sends every activity of the window [start, end) that matches the filter to the sink, page by page,\n" +
			"recording progress in the checkpoint only once the sink has accepted a page. Re-running the same\n" +
			"command resumes; once the window is complete a re-run does nothing and exits 0.\n\n" +
			"The window applies to when the activities happened, or with --by created to when MCAS saved them.\n" +
			"From the API, what MCAS saves while the run goes on is sent too; with --settle D, what it saves later\n" +
			"is sent by each run for D after the window's pass (each activity once), then the recovery completes.\n\n" +
			"A planned stop (--max-duration, Ctrl-C, SIGTERM, SIGHUP) fetches nothing more and lets the batch the SIEM is\n" +
			"reading finish (up to 20 s), so the next run sends nothing twice; a second signal stops at once.\n\n" +
			"Exit codes: 0 completed, 1 general error, 2 usage error, 3 invalid token, 4 invalid proxy,\n" +
			"5 too many critical errors, 6 checkpoint unavailable, 75 stopped before the end date (re-run to resume).",
		Flags: slices.Concat(windowFlags(), sourceFlags(), sinkFlags(), []cli.Flag{
			checkpointFlag(),
			&cli.DurationFlag{Name: "max-duration", Category: "Progress", EnvVars: env("max-duration"),
				Usage: "stop cleanly after `D` (e.g. 50m for an hourly cron slot; the batch in flight may take up to 20 s more); progress is kept, exit 75"},
			&cli.IntFlag{Name: "stopped-exit-code", Category: "Progress", EnvVars: env("stopped-exit-code"), Value: exitStopped,
				Usage: "the exit code of a planned stop (--max-duration, a signal): 0 for a scheduler that takes only 0 for success, such as a Kubernetes Job; status still says stopped"},
			&cli.StringFlag{Name: "exclude-ids", Category: "Progress", EnvVars: env("exclude-ids"), TakesFile: true,
				Usage: "activities already in the SIEM: a `FILE` of ids, one per line (or CEF lines with externalId=, or JSON lines with _id); those are not sent; on a completed window, a top-up pass sends those the file lacks"},
			&cli.BoolFlag{Name: "dry-run", Category: "Progress", EnvVars: env("dry-run"),
				Usage: "count the window's activities (one request for the API) and say what a run needs; send nothing, write no checkpoint"},
			&cli.DurationFlag{Name: "settle", Category: "Late arrivals", EnvVars: env("settle"),
				Usage: "after the window's pass, keep the recovery settling for `D` (e.g. 24h): each run until then sends what MCAS saved late for the window, " +
					"the first run after it does so once more and completes (default: once, right after the pass); the checkpoint keeps the last value given"},
			&cli.DurationFlag{Name: "settle-margin", Category: "Late arrivals", EnvVars: env("settle-margin"), Value: recovery.DefaultSettleMargin,
				Usage: "what MCAS saved less than `D` before a run began is left to the next run, as MCAS may not list it yet"},
		}, logFlags()),
		Action: func(c *cli.Context) error {
			code := c.Int("stopped-exit-code")
			if code != exitCompleted && code != exitStopped && (code < 7 || code == exitMissing || code > 125) {
				return recovery.Problemf(recovery.ErrUsage, "use 0, 75 (the default), or a code from 7 to 125 that means nothing else",
					"--stopped-exit-code %d would be taken for another outcome", code)
			}
			return stoppedWith(runRecovery(c, stderr), code)
		},
	}
}

func runRecovery(c *cli.Context, stderr io.Writer) (err error) {
	in, err := readLogging(c, stderr)
	if err != nil {
		return err
	}
	log := in.log
	maxDuration, err := duration(c, "max-duration")
	if err != nil {
		return err
	}
	ctx, stop, release := watchStops(c.Context, maxDuration, log)
	defer release()
	// A planned stop ends the wait for the argument files too: a named pipe
	// with no writer must not outlast --max-duration or a signal.
	if err := in.readFlags(stop, c); err != nil {
		return err
	}
	scope, src := in.scope, in.src
	exclude, err := readIDs(stop, c, "exclude-ids", log)
	if err != nil {
		return err
	}
	if in.sweeps, err = readSettle(c, src, log); err != nil {
		return err
	}
	if in.lanes, err = readParallel(c, src, log); err != nil {
		return err
	}

	if c.Bool("dry-run") {
		return dryRun(stop, c, in)
	}

	store, err := openCheckpoint(ctx, c, identity(src, scope, in.streams))
	if err != nil {
		return err
	}
	defer store.Close()
	// From here on, every way the run ends names the checkpoint, once it
	// exists.
	defer func() {
		if err != nil && store.Exists() {
			err = &atCheckpoint{err: err, path: store.Path()}
		}
	}()
	st, err := store.Load(ctx)
	if err != nil {
		return err
	}
	log.Info("checkpoint", "path", store.Path(), "state", st.State, "sent", st.Sent)
	sinkName, _ := sink.Name(c.String("sink")) // a bad --sink is openSink's to report
	// What each data type has to do: nothing for one whose recovery is
	// completed (and whose top-up, if --exclude-ids asks one, too).
	plans := make([]recovery.Plan, len(in.streams))
	plan := recovery.PlanNothing // the run's: the first data type's with something to do
	for i, s := range in.streams {
		plans[i] = st.Stream(s.data).Plan(exclude.Fingerprint())
		if plan == recovery.PlanNothing {
			plan = plans[i]
		}
	}
	if plan == recovery.PlanNothing {
		alreadyCompleted(log, store.Path(), st, exclude != nil)
		anotherSink(log, st, sinkName, plan)
		return nil
	}
	anotherSink(log, st, sinkName, plan)

	// Every secret of the run, for what the checkpoint records.
	redactor := recovery.NewRedactor()
	verb := "recovering"
	if plan == recovery.PlanTopUp {
		verb = "top-up"
	}
	progress := newProgressReporter(in.console, log, verb, in.progressEvery)
	defer progress.Close()
	// A sink outage shows in status as the last error while the run waits,
	// and on the bar as the time it has been waiting.
	recordFailure := func(msg string) {
		progress.Waiting(msg)
		err := store.Update(context.WithoutCancel(ctx), func(s *recovery.State) error {
			s.LastError, s.LastErrorAt = redactor.Redacted(msg), time.Now().UTC()
			return nil
		})
		if err != nil {
			log.Warn("cannot record the sink failure in the checkpoint", "error", err)
		}
	}
	sources, err := openStreams(ctx, c, log, src, scope, in.streams, redactor, sendsRaw(c))
	if err != nil {
		return err
	}
	for _, source := range sources {
		defer closeSource(source)
	}
	out, err := openSink(ctx, c, log, src, stop.Done(), recordFailure)
	if err != nil {
		return err
	}
	defer out.Close()
	if k := sink.KindOf(c.String("sink")); k != nil && k.Caveat != "" {
		log.Warn(k.Caveat, "sink", c.String("sink"), "udp_rate", c.Int("udp-rate"))
	}
	if udp, ok := out.(datagramSender); ok {
		defer func() {
			log.Info(fmt.Sprintf("sent %d datagrams to %s; UDP confirms nothing: verify --received checks what the SIEM got", udp.DatagramsSent(), c.String("sink")))
		}()
	}
	for i, s := range in.streams {
		if plans[i] == recovery.PlanNothing {
			continue
		}
		if err := recoverStream(ctx, c, log, in, store, s, sources[i], out, redactor, stop, progress, exclude, sinkName); err != nil {
			return err
		}
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close the sink: %w", err)
	}
	return nil
}

// scopeBy is the time a data type's window applies to: --by for
// activities; an alert has one time, its date.
func scopeBy(scope recovery.Scope, d recovery.DataType) recovery.TimeField {
	if d == recovery.DataAlerts {
		return recovery.ByDate
	}
	return scope.By
}

// recoverStream runs the recovery of one data type of the window, s, from
// source to out, through its own state in the checkpoint, and says how it
// ended.
func recoverStream(ctx context.Context, c *cli.Context, log *slog.Logger, in inputs, store *runCheckpoint, s stream, source recovery.Source,
	out recovery.Sink, redactor *recovery.Redactor, stop context.Context, progress *progressReporter, exclude *recovery.IDSet, sinkName string) error {
	sweeps, lanes := in.sweeps, in.lanes
	if s.data == recovery.DataAlerts {
		sweeps, lanes = nil, 1 // alerts are few, and have no time they were saved at
	}
	var cp recovery.Checkpoint = store
	if !onlyActivities(in.streams) {
		cp = recovery.StreamCheckpoint{Checkpoint: store, Data: s.data, Filter: s.filter.JSON()}
		log = log.With("data", string(s.data))
	}
	r := &recovery.Replayer{Source: source, Sink: out, Checkpoint: cp, Logger: log, Redactor: redactor,
		Stop: stop.Done(), Grace: stopGrace, Exclude: exclude, ExcludeFile: c.String("exclude-ids"), Progress: progress.Update,
		Sweeps: sweeps, Lanes: lanes, SinkName: sinkName}
	res, err := r.Run(ctx)
	progress.Close()
	var open *recovery.WindowOpen
	if errors.As(err, &open) {
		if err := out.Close(); err != nil {
			return fmt.Errorf("close the sink: %w", err)
		}
		return windowOpenProblem(open)
	}
	if err != nil {
		if errors.Is(err, recovery.ErrStopped) {
			log.Warn("stopped before the end date", "reason", context.Cause(stop).Error(), "sent", res.Sent)
		}
		return err
	}
	if res.AlreadyCompleted {
		alreadyCompleted(log, store.Path(), res.State, exclude != nil)
		return nil
	}
	attrs := []any{"sent_this_run", res.Sent, "skipped_this_run", res.Skipped, "sent_again_this_run", res.Resent,
		"sent_total", res.State.Sent}
	if res.TopUp {
		attrs = append(attrs, "pass", "top-up", "top_up_sent", res.State.TopUps[len(res.State.TopUps)-1].Sent)
	}
	if s := res.State.Settle; s != nil {
		attrs = append(attrs, "sweeps_this_run", res.Sweeps, "late_sent_total", s.LateSent)
	}
	if res.State.State == recovery.StateSettling {
		s := res.State.Settle
		log.Info("settling: re-run to send what MCAS saves late for the window, until the deadline", append(attrs,
			"settle_until", s.Deadline.Format(time.RFC3339), "next_sweep_from", recovery.FormatMillis(s.Horizon), "checkpoint", store.Path())...)
		return nil
	}
	log.Info("completed", append(attrs, "checkpoint", store.Path())...)
	return nil
}

// readSettle reads --settle and --settle-margin into the run's sweeps for
// activities saved late: for the API, which keeps saving them; none for an
// export, which gains no activity once written (a schedule made for the
// API works on an export as it is: the flags are ignored, with a word).
func readSettle(c *cli.Context, src source.Target, log *slog.Logger) (*recovery.Sweeps, error) {
	margin, err := duration(c, "settle-margin")
	if err != nil {
		return nil, err
	}
	settle, err := duration(c, "settle")
	if err != nil {
		return nil, err
	}
	if !src.Kind.Late {
		if c.IsSet("settle") || c.IsSet("settle-margin") {
			log.Warn("--settle and --settle-margin are ignored: " + src.Kind.Fixed)
		}
		return nil, nil
	}
	sw := &recovery.Sweeps{Margin: margin}
	if c.IsSet("settle") {
		sw.For = &settle
	}
	return sw, nil
}

// readParallel reads --parallel: the scan lanes a recovery over the API
// starts in, 0 for auto (the API's answer time sizes them). An export has
// no lanes: it is read in one, and a --parallel given for it is ignored,
// with a word (a schedule made for the API works on an export as it is).
func readParallel(c *cli.Context, src source.Target, log *slog.Logger) (int, error) {
	v := strings.TrimSpace(c.String("parallel"))
	n := 0
	if v != "auto" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > recovery.MaxLanes {
			return 0, recovery.Problemf(recovery.ErrUsage, fmt.Sprintf("give auto, or a number of lanes from 1 to %d", recovery.MaxLanes),
				"--parallel %q is not a number of scan lanes", v)
		}
	}
	if !src.Kind.Lanes {
		if c.IsSet("parallel") && n != 1 {
			log.Warn("--parallel is ignored: " + src.Kind.OneLane)
		}
		return 1, nil
	}
	return n, nil
}

// alreadyCompleted says that a run has nothing to do: the window is
// completed, and so is the top-up its --exclude-ids asked for, if any. A
// top-up left unfinished is pointed out: only a run with its ids file
// can finish it.
func alreadyCompleted(log *slog.Logger, path string, st recovery.State, excluding bool) {
	attrs := []any{"checkpoint", path, "window", st.Window.String(), "sent", st.Sent, "completed_at", st.CompletedAt}
	if n := len(st.TopUps); n > 0 && excluding {
		attrs = append(attrs, "top_up_sent", st.TopUps[n-1].Sent)
	}
	log.Info("already completed, nothing to do", attrs...)
	if t := st.TopUp(); t != nil {
		log.Warn("a top-up pass is unfinished; re-run with the --exclude-ids file it was started with to finish it",
			"ids_file", t.IDsFile, "state", t.State, "position", t.Position())
	}
}

// anotherSink warns when the run's sink is not where the recovery
// delivered last: the checkpoint records the sinks, not as part of the
// recovery's identity (a recovery may move to another SIEM), so a run says
// where the window went. On a completed window the run sends nothing: a
// second SIEM needs a recovery of its own, with another checkpoint.
func anotherSink(log *slog.Logger, st recovery.State, sinkName string, plan recovery.Plan) {
	n := len(st.Sinks)
	if n == 0 || sinkName == "" || st.Sinks[n-1] == sinkName {
		return
	}
	went := st.Sinks[n-1]
	if n > 1 {
		went = strings.Join(st.Sinks, ", then ")
	}
	switch plan {
	case recovery.PlanNothing:
		log.Warn("the window was delivered to another sink; to send it to a second SIEM, run the same command with another --checkpoint",
			"delivered_to", went, "sink", sinkName, "sent", st.Sent)
	case recovery.PlanTopUp:
		log.Warn("the window was delivered to another sink; this top-up sends what the ids file lacks to this one",
			"delivered_to", went, "sink", sinkName)
	default:
		log.Warn("this recovery delivered to another sink so far; this run sends the rest to this one, so the two SIEMs hold the window between them "+
			"(to send all of it here, run the same command with another --checkpoint)", "delivered_to", went, "sink", sinkName, "sent", st.Sent)
	}
}

// stopGrace is how long a planned stop waits for the batch in flight to be
// confirmed: below the 30 s a Kubernetes pod (terminationGracePeriodSeconds)
// and docker stop -t 30 give before SIGKILL, so the stop is recorded.
const stopGrace = 20 * time.Second

// stopSignals are the signals that ask for a planned stop. A terminal
// closed under a run sends SIGHUP (Windows has none: it is never
// delivered there). A signal the process was started with ignored stays
// ignored: os/signal would catch it, and nohup or a background job of a
// script would no longer protect the run.
func stopSignals() []os.Signal {
	var sigs []os.Signal
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP} {
		if !signal.Ignored(sig) {
			sigs = append(sigs, sig)
		}
	}
	return sigs
}

// watchStops returns the run's two contexts. stop ends at the first
// SIGINT, SIGTERM or SIGHUP, or once maxDuration (if > 0) has passed: a
// planned stop, which lets the batch in flight finish; its cause says why.
// ctx, which cuts all I/O, ends at any signal after that. release stops
// watching.
func watchStops(parent context.Context, maxDuration time.Duration, log *slog.Logger) (ctx, stop context.Context, release func()) {
	ctx, cut := context.WithCancelCause(parent)
	stop, stopNow := context.WithCancelCause(ctx)
	cancelTimer := context.CancelFunc(func() {})
	if maxDuration > 0 {
		stop, cancelTimer = context.WithTimeoutCause(stop, maxDuration, fmt.Errorf("--max-duration %s reached", maxDuration))
	}
	signals := make(chan os.Signal, 1)
	if sigs := stopSignals(); len(sigs) > 0 { // none would mean all
		signal.Notify(signals, sigs...)
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case sig := <-signals:
			stopNow(fmt.Errorf("%s received", signalName(sig)))
		case <-stop.Done():
		case <-done:
			return
		}
		if ctx.Err() == nil {
			log.Warn("stopping: no new page is fetched; the batch in flight may take up to "+stopGrace.String()+
				" to be confirmed (send the signal again to stop at once)", "reason", context.Cause(stop).Error())
		}
		select {
		case sig := <-signals:
			cut(fmt.Errorf("%s received while stopping", signalName(sig)))
			log.Warn("stopping at once: the batch in flight is cut; the next run sends it again")
		case <-done:
		}
	}()
	return ctx, stop, func() {
		signal.Stop(signals)
		close(done)
		<-exited
		cancelTimer()
		stopNow(context.Canceled)
		cut(context.Canceled)
	}
}

// signalName is the conventional name of a stop signal.
func signalName(sig os.Signal) string {
	switch sig {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return sig.String()
}

// dryRun counts the window and says what a run would cost: one request
// where the source can count (the API's total), a scan where it cannot
// (an export). For the API it also asks for the window's first page (one
// scan request), as a run would: how many activities the API puts in an
// answer, which may be fewer than --page-size asks for, is what the
// requests and the time are reckoned by. A count the API says is only a
// lower bound is printed as one, and so is what is reckoned from it.
func dryRun(ctx context.Context, c *cli.Context, in inputs) error {
	sources, err := openStreams(ctx, c, in.log, in.src, in.scope, in.streams, nil, false)
	if err != nil {
		return err
	}
	for i, s := range in.streams {
		err := dryRunStream(ctx, c, in, s, sources[i])
		closeSource(sources[i])
		if err != nil {
			return err
		}
	}
	return nil
}

// dryRunStream is the dry run of one data type, read from source.
func dryRunStream(ctx context.Context, c *cli.Context, in inputs, s stream, source recovery.Source) error {
	if !onlyActivities(in.streams) {
		in.log = in.log.With("data", string(s.data))
	}
	start := time.Now()
	progress := newProgressReporter(in.console, in.log, "counting", in.progressEvery)
	t, err := recovery.Count(ctx, source, in.scope.Window, progress.Scanned)
	progress.Close()
	requests := t.Requests
	if err == nil && in.src.Kind.API {
		var more int
		more, err = firstPage(ctx, source, in.log)
		requests += more
	}
	if err != nil {
		if ctx.Err() != nil {
			return recovery.Problemf(recovery.ErrStopped, "re-run to count again", "dry run stopped after counting %d activities: %v", t.Activities, err)
		}
		return err
	}
	if t.AtLeast {
		in.log.Warn(fmt.Sprintf("the API counts more than %d activities in the window and stops counting there (its total is a lower bound): "+
			"the requests and the time a run needs are at least those below", t.Activities))
	}
	attrs := []any{"window", in.scope.String(), "activities", countAttr(t), "api_requests", requests}
	if in.src.Kind.API {
		pageSize := c.Int("page-size")
		if sizer, ok := source.(recovery.LaneSizer); ok {
			pageSize = sizer.PageSize()
		}
		n := t.Activities
		if t.AtLeast {
			n++ // more than the total
		}
		pages, took := runCost(n, pageSize, c.Int("rate-limit"))
		var needs any = pages
		if t.AtLeast {
			needs, took = fmt.Sprintf("at least %d", pages), "at least "+took
		}
		attrs = append(attrs, "page_size", pageSize, "run_needs_requests", needs, "run_takes_at_rate_limit", took)
	}
	attrs = append(attrs, "took", time.Since(start).Round(time.Millisecond))
	in.log.Info("dry run: nothing sent, no checkpoint written", attrs...)
	return nil
}

// firstPage asks source for the window's first page, as a run begins, to
// see how many activities the API's answers hold (LaneSizer.PageSize
// tells then); it says so when they hold fewer than a page asks for. It
// returns the requests made.
func firstPage(ctx context.Context, source recovery.Source, log *slog.Logger) (int, error) {
	sizer, ok := source.(recovery.LaneSizer)
	if !ok {
		return 0, nil
	}
	asked := sizer.PageSize()
	page, err := source.Fetch(ctx, recovery.Cursor{})
	if err != nil {
		return page.Requests, fmt.Errorf("read the window's first page to see the API's page size: %w", err)
	}
	if held := sizer.PageSize(); held < asked {
		log.Warn(fmt.Sprintf("the API's answers hold at most %d activities, fewer than the %d asked for (--page-size), and page on: "+
			"a run needs a request for every %d activities", held, asked, held), "page_size_asked", asked, "page_size", held)
	}
	return page.Requests, nil
}

// countAttr is a count for a log line: the number, or "more than N" when
// it is only a lower bound.
func countAttr(t recovery.Tally) any {
	if t.AtLeast {
		return recovery.CountText(t.Activities, true)
	}
	return t.Activities
}

// inputs are what run, verify and check read from their common flags.
type inputs struct {
	log           *slog.Logger
	console       *console // stderr, shared by the logs and the progress bar
	progressEvery time.Duration
	scope         recovery.Scope // the window, on the time --by names
	filter        recovery.Filter
	src           source.Target
	// streams are the data types to read (--data), each with its filter;
	// allData makes the default every data type the source has (follow).
	streams []stream
	allData bool
	// sweeps and lanes are run's late-arrival sweeps (--settle) and scan
	// lanes (--parallel).
	sweeps *recovery.Sweeps
	lanes  int
}

// readInputs reads the logging, window, filter and source flags, refusing
// positional arguments: every command but status takes flags only.
func readInputs(ctx context.Context, c *cli.Context, stderr io.Writer) (inputs, error) {
	in, err := readLogging(c, stderr)
	if err != nil {
		return in, err
	}
	return in, in.readFlags(ctx, c)
}

// flagsOnly refuses positional arguments: every command takes flags only.
func flagsOnly(c *cli.Context) error {
	if c.Args().Present() {
		return recovery.Problemf(recovery.ErrUsage, "see siem-recovery "+c.Command.Name+" --help",
			"unexpected argument %q (%s takes flags only)", c.Args().First(), c.Command.Name)
	}
	return nil
}

// readLogging refuses positional arguments and sets up the logs and the
// progress display: what a run needs before it reads the argument files.
func readLogging(c *cli.Context, stderr io.Writer) (inputs, error) {
	var in inputs
	if err := flagsOnly(c); err != nil {
		return in, err
	}
	var err error
	in.console = newConsole(stderr, !c.Bool("quiet") && c.String("log-format") != "json")
	if in.log, err = newLogger(c, in.console); err != nil {
		return in, err
	}
	in.progressEvery, err = duration(c, "progress-interval")
	return in, err
}

// readFlags reads the window, filter and source flags; the argument files
// are read within ctx.
func (in *inputs) readFlags(ctx context.Context, c *cli.Context) error {
	var err error
	if in.scope, err = readScope(ctx, c); err != nil {
		return err
	}
	if in.filter, err = readFilter(ctx, c); err != nil {
		return err
	}
	if in.src, err = parseSource(ctx, c); err != nil {
		return err
	}
	if in.streams, err = readStreams(ctx, c, in.src.Kind, in.allData, in.filter); err != nil {
		return err
	}
	return windowBegun(in.scope, in.src, time.Now())
}

// windowBegun refuses a window wholly in the future at a source that keeps
// saving activities (the API): it holds no activity yet, and a recovery
// of it would only wait. An export is a fixed file: its window is what
// the file holds.
func windowBegun(scope recovery.Scope, src source.Target, now time.Time) error {
	if src.Kind.Window != nil {
		if err := src.Kind.Window(scope, now); err != nil {
			return err
		}
	}
	if !src.Kind.Late || time.UnixMilli(scope.Window.Start).Before(now) {
		return nil
	}
	return recovery.Problemf(recovery.ErrUsage, "check the dates (an alert's window is in the past); "+followAdvice,
		"the window %s starts after the present: MCAS holds no activity of it yet", scope.String())
}

// followAdvice names the tool for a window that is still open.
const followAdvice = "to keep a SIEM fed as the SIEM agent did, siem-recovery follow is the tool"

// windowOpenProblem words how a run on a window that has not ended stops
// (exit 75, as a stop before the end date: a schedule's next slot resumes).
func windowOpenProblem(o *recovery.WindowOpen) error {
	next := "re-run from " + o.EndsAt.Format(time.RFC3339) + " (its end plus --settle-margin " + o.Margin.String() + ") to read the rest and complete the recovery"
	if o.Deadline.After(o.EndsAt) {
		next = "re-run from " + o.EndsAt.Format(time.RFC3339) + " (its end plus --settle-margin " + o.Margin.String() +
			") to read the rest; the recovery then settles until " + o.Deadline.Format(time.RFC3339) + " (--settle)"
	}
	return recovery.Problemf(recovery.ErrStopped,
		next+"; a run before then sends what MCAS saved since the last one and stops the same way; "+followAdvice,
		"the window %s ends at %s, after the present: what MCAS saved for it before %s is sent (%d in all) and the checkpoint is waiting",
		recovery.Scope{Window: o.Window, By: o.By}, recovery.FormatMillis(o.Window.End), recovery.FormatMillis(o.ReadBefore), o.Sent)
}

// readScope reads the window and the time it applies to (--by).
func readScope(ctx context.Context, c *cli.Context) (recovery.Scope, error) {
	w, err := readWindow(ctx, c)
	if err != nil {
		return recovery.Scope{Window: w}, err
	}
	by, err := recovery.ParseTimeField(c.String("by"))
	if err != nil {
		return recovery.Scope{Window: w}, recovery.Problemf(recovery.ErrUsage,
			"use --by date (when the activities happened) or --by created (when MCAS saved them)", "--by %s", err)
	}
	return recovery.Scope{Window: w, By: by}, nil
}

// readWindow takes the window from --start/--end, else from --alert.
func readWindow(ctx context.Context, c *cli.Context) (recovery.Window, error) {
	var w recovery.Window
	alert := c.String("alert")
	if alert != "" {
		data, _, err := readArgFile(ctx, "alert", "the alert file", alert, recovery.ErrUsage)
		if err != nil {
			return w, err
		}
		if w, err = recovery.ParseAlert(data); err != nil && (c.String("start") == "" || c.String("end") == "") {
			return w, timeProblem("the alert file "+alert+":", err,
				"give the MCAS system alert as JSON with startDate and endDate, or use --start and --end")
		}
	}
	for _, b := range []struct {
		flag string
		dst  *int64
	}{{"start", &w.Start}, {"end", &w.End}} {
		if v := c.String(b.flag); v != "" {
			ms, err := recovery.ParseTime(v)
			if err != nil {
				return w, timeProblem("--"+b.flag, err, remedyDate)
			}
			*b.dst = ms
		} else if alert == "" {
			return w, recovery.Problemf(recovery.ErrUsage, "give --alert ALERT.json, or both --start and --end",
				"no window: --%s is missing", b.flag)
		}
	}
	if err := w.Validate(); err != nil {
		where := "--start/--end"
		if alert != "" && (c.String("start") == "" || c.String("end") == "") {
			where = "the alert file " + alert
		}
		return w, recovery.Problemf(recovery.ErrUsage, "check the dates: the window is [start, end)", "%s: %w", where, err)
	}
	return w, nil
}

const remedyDate = "use e.g. 2024-05-01T10:00:00Z or 1714557600000 (epoch milliseconds)"

// timeProblem words a window bound the parser refused, after where (a flag,
// or the alert file followed by a colon), with the fix for its kind: the
// value in milliseconds for a number in another unit.
func timeProblem(where string, err error, remedy string) error {
	var te *recovery.TimeError
	if !errors.As(err, &te) {
		if !strings.HasSuffix(where, ":") {
			where += ":"
		}
		return recovery.Problemf(recovery.ErrUsage, remedy, "%s %w", where, err)
	}
	where += " "
	if te.Field != "" {
		where += te.Field + " "
	}
	date := time.UnixMilli(te.Millis).UTC().Format(time.RFC3339)
	switch {
	case errors.Is(te, recovery.ErrEpochSeconds), errors.Is(te, recovery.ErrEpochMicros):
		unit := "seconds"
		if errors.Is(te, recovery.ErrEpochMicros) {
			unit = "microseconds"
		}
		return recovery.Problemf(recovery.ErrUsage, fmt.Sprintf("give milliseconds (%d) or RFC 3339 (%s)", te.Millis, date),
			"%s%s looks like epoch %s", where, te.Value, unit)
	case errors.Is(te, recovery.ErrBeforeMCAS):
		read := ""
		if _, err := strconv.ParseInt(te.Value, 10, 64); err == nil {
			read = " (" + recovery.FormatMillis(te.Millis) + " in epoch milliseconds)"
		}
		return recovery.Problemf(recovery.ErrUsage, "check the date; "+remedyDate,
			"%s%s%s is before 2015, when MCAS began", where, te.Value, read)
	case errors.Is(te, recovery.ErrTooLate):
		return recovery.Problemf(recovery.ErrUsage, "check the date; "+remedyDate, "%s%s is after the year 9999", where, te.Value)
	}
	return recovery.Problemf(recovery.ErrUsage, remedy, "%s%q is neither an RFC 3339 date nor epoch milliseconds", where, te.Value)
}

// duration reads a duration flag that must not be negative (0: unset).
func duration(c *cli.Context, name string) (time.Duration, error) {
	d := c.Duration(name)
	if d < 0 {
		return 0, recovery.Problemf(recovery.ErrUsage, "give a positive duration such as 50m, or leave it unset",
			"--%s (or %s) %s is negative", name, env(name)[0], d)
	}
	return d, nil
}

func readFilter(ctx context.Context, c *cli.Context) (recovery.Filter, error) {
	path := c.String("filter")
	if path == "" {
		return recovery.Filter{}, nil
	}
	data, _, err := readArgFile(ctx, "filter", "the filter file", path, recovery.ErrUsage)
	if err != nil {
		return recovery.Filter{}, err
	}
	f, err := recovery.ParseFilter(data)
	if err != nil {
		return f, recovery.Problemf(recovery.ErrUsage, "give the original SIEM agent's activity filter as a JSON object in MCAS filter syntax, without a date or created key", "the filter file %s: %w", path, err)
	}
	return f, nil
}

// identity is what a checkpoint must hold to be this recovery's: the
// window and the time it applies to, and a fingerprint of the source and
// the filter. The token is no part of it: a new token for the same tenant
// resumes the same recovery.
func identity(src source.Target, scope recovery.Scope, streams []stream) checkpoint.Identity {
	// Activities alone hash as every checkpoint did before --data: those
	// resume as they are.
	key := src.Key + "\n" + streams[0].filter.JSON()
	var data []recovery.DataType
	if !onlyActivities(streams) {
		key += "\ndata=" + dataNames(streams)
		for _, s := range streams[1:] {
			key += "\n" + string(s.data) + "-filter=" + s.filter.JSON()
		}
		for _, s := range streams {
			data = append(data, s.data)
		}
	}
	sum := sha256.Sum256([]byte(key))
	filter := streams[0].filter.JSON()
	if filter == "" {
		filter = src.Filter // a kind's own (its key holds it)
	}
	return checkpoint.Identity{Window: scope.Window, By: scope.By, Source: src.Display, Filter: filter,
		Fingerprint: hex.EncodeToString(sum[:]), Data: data}
}

// openCheckpoint opens the run's checkpoint: --checkpoint, or by default
// the recovery's own file in the user's state directory, which it creates
// (mode 0700) if need be. A checkpoint that exists is opened now; one that
// does not is created once the run has something to keep (runCheckpoint).
func openCheckpoint(ctx context.Context, c *cli.Context, id checkpoint.Identity) (*runCheckpoint, error) {
	if other, by := otherByCheckpoint(c, id); other != "" {
		return nil, otherByError(c, id, other, by)
	}
	path, err := checkpointPath(c, id)
	if err != nil {
		return nil, err
	}
	if c.String("checkpoint") == "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, recovery.Problemf(recovery.ErrCheckpointUnavailable, "give --checkpoint FILE in a directory this user can write",
				"cannot create the state directory for the default checkpoint: %w", err)
		}
	}
	if !exists(path) {
		// Created later (runCheckpoint); that it can be is known now.
		if err := creatable(path); err != nil {
			return nil, err
		}
		return newRunCheckpoint(path, id, time.Now()), nil
	}
	store, err := checkpoint.Open(ctx, path, id)
	if err != nil {
		return nil, err
	}
	return &runCheckpoint{path: path, id: id, store: store}, nil
}

// atCheckpoint is an error a run ended on once its checkpoint was open:
// its message names the checkpoint, which the operator needs to resume,
// look at (status) or move aside.
type atCheckpoint struct {
	err  error
	path string
}

func (e *atCheckpoint) Error() string { return e.err.Error() }
func (e *atCheckpoint) Unwrap() error { return e.err }

func newLogger(c *cli.Context, stderr io.Writer) (*slog.Logger, error) {
	level := slog.LevelInfo
	switch {
	case c.Bool("quiet"):
		level = slog.LevelWarn
	case c.Bool("verbose"):
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.String("log-format") {
	case "text", "":
		return slog.New(slog.NewTextHandler(stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, opts)), nil
	}
	return nil, recovery.Problemf(recovery.ErrUsage, "use --log-format text or json", "--log-format %q is not a log format", c.String("log-format"))
}

// maxIDFileBytes caps an id file (--exclude-ids, --received): room for
// tens of millions of bare ids or millions of CEF lines, while an endless
// file (/dev/zero, a pipe that never closes) fails instead of filling memory.
const maxIDFileBytes = 2 << 30

// readIDs reads the id file a flag names (nil when the flag is unset).
func readIDs(ctx context.Context, c *cli.Context, flag string, log *slog.Logger) (*recovery.IDSet, error) {
	set, err := readIDFile(ctx, c, flag, recovery.ReadIDSet)
	if set != nil {
		log.Info("read the ids the SIEM already holds", "file", c.String(flag), "ids", set.Len())
	}
	return set, err
}

// readIDFile reads the id file a flag names with read, under the cap of
// an id file, wording its failures for the operator; nil when the flag is
// unset.
func readIDFile[T any](ctx context.Context, c *cli.Context, flag string, read func(io.Reader) (*T, error)) (*T, error) {
	path := c.String(flag)
	if path == "" {
		return nil, nil
	}
	f, err := argfile.Open(ctx, path, maxIDFileBytes)
	if err != nil {
		return nil, argFileProblem(ctx, recovery.ErrUsage, flag, "--"+flag+" "+path, err)
	}
	defer f.Close()
	v, err := read(f)
	var tooLarge *argfile.TooLargeError
	if errors.As(err, &tooLarge) || ctx.Err() != nil {
		return nil, argFileProblem(ctx, recovery.ErrUsage, flag, "--"+flag+" "+path, err)
	}
	if err != nil {
		return nil, recovery.Problemf(recovery.ErrUsage,
			"give one activity id per line, or the CEF or JSON lines the SIEM received", "--%s %s: %w", flag, path, err)
	}
	return v, nil
}
