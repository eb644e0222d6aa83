package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"siem-recovery/checkpoint"
	"siem-recovery/recovery"
	"siem-recovery/recovery/source"
	"siem-recovery/sink"
)

// followBack is how far back a feed's first start reads by default: two
// days, as the SIEM agent did.
const followBack = 48 * time.Hour

func followCommand(stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "follow",
		Usage:     "keep the SIEM fed from a start time on, as the retired SIEM agent did, until stopped",
		UsageText: "siem-recovery follow --source URL [--start T] [--data activities,alerts] [--filter F] [--alerts-filter F] [--sink URL] [--once] [flags]",
		Description: "Reads what MCAS saves (activities by when they were saved, alerts by their date) in cycles, each from where\n" +
			"the last ended to the present less --settle-margin, sends it to the sink as the SIEM agent did (CEF by default),\n" +
			"records where it stands in the checkpoint once the sink has it, and sleeps --poll once caught up. Its first start\n" +
			"begins at --start (default: 48 h ago, as the agent); every later start goes on from the checkpoint.\n\n" +
			"With --once it catches up and exits 0 (a cron job every few minutes is then a feed). Without it, it runs until\n" +
			"SIGINT, SIGTERM, SIGHUP or --max-duration (exit 75 after the batch in flight). --metrics-addr serves Prometheus\n" +
			"metrics and /healthz. Delivery is as for run: a file exactly once across kill -9, RELP the window, TCP a batch.\n\n" +
			"Exit codes: 0 caught up (--once), 2 usage error, 3 invalid token, 4 invalid proxy, 5 too many critical errors\n" +
			"(a supervisor restarts it), 6 checkpoint unavailable (a recovery's, or another feed's), 75 stopped.",
		Flags: slices.Concat(sourceFlags(), sinkFlags(), []cli.Flag{
			&cli.StringFlag{Name: "start", Category: "Feed", EnvVars: env("start"),
				Usage: "where the feed's first start begins, `T` (RFC 3339 or epoch ms; default: 48 h ago, as the SIEM agent); a feed that has begun goes on from its checkpoint"},
			&cli.DurationFlag{Name: "poll", Category: "Feed", EnvVars: env("poll"), Value: time.Minute,
				Usage: "the sleep between cycles once caught up, `D`"},
			&cli.BoolFlag{Name: "once", Category: "Feed", EnvVars: env("once"),
				Usage: "catch up to the present less --settle-margin, then exit 0 (for a schedule)"},
			&cli.DurationFlag{Name: "settle-margin", Category: "Feed", EnvVars: env("settle-margin"), Value: recovery.DefaultSettleMargin,
				Usage: "what MCAS saved less than `D` ago is left to a later cycle, as MCAS may not list it yet"},
			&cli.StringFlag{Name: "metrics-addr", Category: "Feed", EnvVars: env("metrics-addr"),
				Usage: "serve Prometheus metrics (/metrics) and /healthz on `HOST:PORT`"},
			&cli.StringFlag{Name: "checkpoint", Category: "Progress", EnvVars: env("checkpoint"), TakesFile: true,
				Usage: "the bbolt `FILE` that records where the feed stands (default: a file named for the source, filters and data types in the user's state directory)"},
			&cli.DurationFlag{Name: "max-duration", Category: "Progress", EnvVars: env("max-duration"),
				Usage: "stop cleanly after `D`; the next start goes on from where it stands, exit 75"},
			&cli.IntFlag{Name: "stopped-exit-code", Category: "Progress", EnvVars: env("stopped-exit-code"), Value: exitStopped,
				Usage: "the exit code of a planned stop (--max-duration, a signal)"},
			&cli.StringFlag{Name: "exclude-ids", Category: "Progress", EnvVars: env("exclude-ids"), TakesFile: true,
				Usage: "records the SIEM already holds, a `FILE` of ids (or CEF or JSON lines): not sent again (switching from the SIEM agent without a duplicate at the seam)"},
		}, logFlags()),
		Action: func(c *cli.Context) error {
			code := c.Int("stopped-exit-code")
			if code != exitCompleted && code != exitStopped && (code < 7 || code == exitMissing || code > 125) {
				return recovery.Problemf(recovery.ErrUsage, "use 0, 75 (the default), or a code from 7 to 125 that means nothing else",
					"--stopped-exit-code %d would be taken for another outcome", code)
			}
			return stoppedWith(follow(c, stderr), code)
		},
	}
}

func follow(c *cli.Context, stderr io.Writer) (err error) {
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
	poll, err := duration(c, "poll")
	if err != nil {
		return err
	}
	if poll < minPoll {
		return recovery.Problemf(recovery.ErrUsage, "give --poll "+minPoll.String()+" or more (the default, 1m, is the agent's pace)", "--poll %s", poll)
	}
	margin, err := duration(c, "settle-margin")
	if err != nil {
		return err
	}
	src, err := parseSource(stop, c)
	if err != nil {
		return err
	}
	if !src.Kind.API {
		return recovery.Problemf(recovery.ErrUsage, "follow the MCAS API (--source https://TENANT.REGION.portal.cloudappsecurity.com); recover a fixed file with run",
			"%s gains nothing once written: there is no feed to follow", src.Kind.Name)
	}
	if !src.Kind.Late {
		// A feed reads what the source saved since its last cycle; a source
		// that keeps no saving time would lose every record that arrives
		// later than the margin, with nothing to tell.
		return recovery.Problemf(recovery.ErrUsage, "follow the MCAS API (--source https://TENANT.REGION.portal.cloudappsecurity.com); recover windows of "+src.Kind.Name+" with run",
			"%s keeps no time a record was saved: a feed would lose the records that arrive late", src.Kind.Name)
	}
	filter, err := readFilter(stop, c)
	if err != nil {
		return err
	}
	in.allData = true
	streams, err := readStreams(stop, c, src.Kind, true, filter)
	if err != nil {
		return err
	}
	start, err := followStart(c, time.Now())
	if err != nil {
		return err
	}
	exclude, err := readIDs(stop, c, "exclude-ids", log)
	if err != nil {
		return err
	}
	lanes, err := readParallel(c, src, log)
	if err != nil {
		return err
	}
	if lanes == 0 {
		lanes = 1 // a cycle is minutes of records: lanes only when asked
	}

	id := followIdentity(src, streams)
	store, err := openCheckpoint(ctx, c, id)
	if err != nil {
		return err
	}
	defer store.Close()
	defer func() {
		if err != nil && store.Exists() {
			err = &atCheckpoint{err: err, path: store.Path()}
		}
	}()
	st, err := store.Load(ctx)
	if err != nil {
		return err
	}
	if st.Follow != nil && st.Follow.Start != 0 {
		if c.IsSet("start") {
			log.Warn("--start is ignored: this feed began before and goes on from where it stands",
				"began", recovery.FormatMillis(st.Follow.Start), "horizon", recovery.FormatMillis(st.FeedHorizon()))
		}
		start = st.Follow.Start
	}
	log.Info("feed", "checkpoint", store.Path(), "data", dataNames(streams), "from", recovery.FormatMillis(start),
		"horizon", recovery.FormatMillis(max(st.FeedHorizon(), start)), "poll", poll, "margin", margin)

	redactor := recovery.NewRedactor()
	metrics := newFollowMetrics(streams, time.Now)
	for _, s := range streams {
		metrics.baseline(s.data, *st.Stream(s.data), start, poll, margin)
	}
	recordFailure := func(msg string) {
		metrics.failed("sink")
		err := store.Update(context.WithoutCancel(ctx), func(s *recovery.State) error {
			s.LastError, s.LastErrorAt = redactor.Redacted(msg), time.Now().UTC()
			return nil
		})
		if err != nil {
			log.Warn("cannot record the sink failure in the checkpoint", "error", err)
		}
	}
	// The sources read from the start to the present: each cycle reads its
	// own part (Over), activities by when MCAS saved them.
	scope := recovery.Scope{Window: recovery.Window{Start: start, End: max(time.Now().UnixMilli(), start+1)}, By: recovery.ByCreated}
	sources, err := openStreams(ctx, c, log, src, scope, streams, redactor, sendsRaw(c))
	if err != nil {
		return err
	}
	for _, s := range sources {
		defer closeSource(s)
	}
	out, err := openSink(ctx, c, log, src, stop.Done(), recordFailure)
	if err != nil {
		return err
	}
	defer out.Close()
	if k := sink.KindOf(c.String("sink")); k != nil && k.Caveat != "" {
		log.Warn(k.Caveat, "sink", c.String("sink"), "udp_rate", c.Int("udp-rate"))
	}
	if addr := c.String("metrics-addr"); addr != "" {
		closeMetrics, err := metrics.serve(addr, log)
		if err != nil {
			return err
		}
		defer closeMetrics()
	}
	sinkName, _ := sink.Name(c.String("sink"))
	feeds := make([]recovery.Feed, len(streams))
	for i, s := range streams {
		feeds[i] = recovery.Feed{Data: s.data, Source: sources[i], By: scopeBy(scope, s.data),
			Checkpoint: recovery.StreamCheckpoint{Checkpoint: store, Data: s.data, Filter: s.filter.JSON()}}
	}
	f := &recovery.Follower{Feeds: feeds, Sink: out, Start: start, Poll: poll, Margin: margin, Once: c.Bool("once"), Lanes: lanes,
		Exclude: exclude, ExcludeFile: c.String("exclude-ids"), Logger: log, Redactor: redactor, Stop: stop.Done(), Grace: stopGrace,
		SinkName: sinkName, Cycled: metrics.cycled, Progress: metrics.delivered}
	err = f.Run(ctx)
	if err != nil {
		if errors.Is(err, recovery.ErrStopped) {
			log.Warn("feed stopped", "reason", context.Cause(stop).Error())
		} else {
			_, name := exitCode(err)
			metrics.failed(name)
		}
		return err
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close the sink: %w", err)
	}
	st, err = store.Load(ctx)
	if err != nil {
		return err
	}
	attrs := []any{"checkpoint", store.Path()}
	for _, s := range st.All() {
		attrs = append(attrs, string(s.DataOf())+"_sent", s.FeedSent(), string(s.DataOf())+"_horizon", recovery.FormatMillis(s.FeedHorizon()))
	}
	log.Info("caught up", attrs...)
	return nil
}

// followStart reads --start: the feed's first start, 48 h before now by
// default.
func followStart(c *cli.Context, now time.Time) (int64, error) {
	v := c.String("start")
	if v == "" {
		return now.Add(-followBack).UnixMilli(), nil
	}
	ms, err := recovery.ParseTime(v)
	if err != nil {
		return 0, timeProblem("--start", err, remedyDate)
	}
	if ms >= now.UnixMilli() {
		return 0, recovery.Problemf(recovery.ErrUsage, "give a --start in the past (the default is 48 h ago)",
			"--start %s is in the future: a feed begins with what MCAS saved", recovery.FormatMillis(ms))
	}
	return ms, nil
}

// followIdentity is what a feed's checkpoint must hold: the source, the
// filters and the data types; no window, which moves with each cycle.
func followIdentity(src source.Target, streams []stream) checkpoint.Identity {
	key := "follow\n" + src.Key + "\ndata=" + dataNames(streams)
	for _, s := range streams {
		key += "\n" + string(s.data) + "-filter=" + s.filter.JSON()
	}
	sum := sha256.Sum256([]byte(key))
	data := make([]recovery.DataType, len(streams))
	for i, s := range streams {
		data[i] = s.data
	}
	filter := streams[0].filter.JSON()
	if filter == "" {
		filter = src.Filter
	}
	return checkpoint.Identity{Source: src.Display, Filter: filter, Fingerprint: hex.EncodeToString(sum[:]), Data: data, Follow: true}
}
