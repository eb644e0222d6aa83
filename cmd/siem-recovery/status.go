package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"siem-recovery/checkpoint"
	"siem-recovery/recovery"
)

// The ages of the last success after which a recovery in progress shows as
// connection_error and disconnected, as the MCAS portal shows its agents.
const (
	connectionErrorAfter = 2 * time.Hour
	disconnectedAfter    = 12 * time.Hour
)

func statusCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show a recovery's progress from its checkpoint (works while a run is in progress)",
		UsageText: "siem-recovery status [--checkpoint PATH] [--json]   (without --checkpoint: the only checkpoint in the state directory)",
		Description: "States: pending (no run yet), running (in progress), stopped (the last run stopped before the end date, exit 75:\n" +
			"--max-duration or a signal; or it died without a word, kill -9 or a reboot, which status says; a re-run resumes),\n" +
			"connection_error (running or stopped, and nothing delivered for over 2 h), disconnected (the same for over 12 h),\n" +
			"settling (run --settle: the window's pass is done, and each run until the deadline sends what MCAS saved late),\n" +
			"waiting (the window has not ended: what MCAS saved so far is sent, and a run from its end plus the margin completes it),\n" +
			"completed (window delivered, recovery disabled), failed (the last run ended on an error; a re-run resumes).\n" +
			"While a top-up pass (run --exclude-ids on a completed window) or a sweep for activities saved late is unfinished,\n" +
			"the state is its own.",
		Flags: []cli.Flag{
			checkpointFlag(),
			&cli.BoolFlag{Name: "json", EnvVars: env("json"), Usage: "print one JSON object (keys: state, window_start, window_end, position, percent, sent, skipped, api_requests, last_error, updated_at, sent_again, ...)"},
		},
		Action: func(c *cli.Context) error {
			if err := flagsOnly(c); err != nil {
				return err
			}
			path := c.String("checkpoint")
			if path == "" {
				var err error
				if path, err = onlyCheckpoint(); err != nil {
					return err
				}
				fmt.Fprintf(stderr, "status of %s, the only checkpoint in %s\n", path, filepath.Dir(path))
			}
			st, active, err := checkpoint.Read(c.Context, path)
			if err != nil {
				return err
			}
			r := newStatusReport(st, active, time.Now())
			if c.Bool("json") {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			return r.writeText(stdout)
		},
	}
}

// statusReport is what status prints; its JSON keys are part of SPEC §4.
// Position, percent and the counters are the recovery's own pass; state is
// that of the work in progress (a top-up, while one is unfinished), so that
// a script waiting for "completed" waits for the top-up too.
type statusReport struct {
	State             string          `json:"state"`
	WindowStart       string          `json:"window_start"`
	WindowEnd         string          `json:"window_end"`
	By                string          `json:"by"` // the time the window applies to: date or created
	Position          string          `json:"position"`
	Percent           float64         `json:"percent"`
	Sent              int64           `json:"sent"`
	Skipped           int64           `json:"skipped"`
	APIRequests       int64           `json:"api_requests"`
	LastError         string          `json:"last_error"`
	UpdatedAt         string          `json:"updated_at"`
	LastErrorResolved bool            `json:"last_error_resolved"`
	Cursor            json.RawMessage `json:"cursor"`                   // the source's resume position, raw
	Total             *int64          `json:"total,omitempty"`          // the window's count at the source, when it can count
	TotalAtLeast      bool            `json:"total_at_least,omitempty"` // total is only a lower bound: the source holds more
	PercentOf         string          `json:"percent_of"`               // "activities" (of total) or "window" (the source's measure)
	Left              string          `json:"left,omitempty"`           // time left at the running run's rate
	Lanes             []laneReport    `json:"lanes,omitempty"`          // the scan lanes of the recovery's pass, when it has them
	TopUp             *topUpReport    `json:"top_up,omitempty"`         // the latest top-up pass
	Settle            *settleReport   `json:"settle,omitempty"`         // the late-arrival phase, when the pass had a horizon
	SentAgain         int64           `json:"sent_again"`
	Resent            int64           `json:"resent"` // the old name of sent_again, kept for scripts
	InFlight          int64           `json:"in_flight"`
	Source            string          `json:"source"`
	Filter            string          `json:"filter"`
	RunActive         bool            `json:"run_active"`
	Runs              int64           `json:"runs"`
	LastSuccessAt     string          `json:"last_success_at"`
	CompletedAt       string          `json:"completed_at"` // the recovery's: "" until it is completed
	// PassCompletedAt is when the window's pass was done, while the
	// recovery waits or settles after it.
	PassCompletedAt string `json:"pass_completed_at,omitempty"`
	// CompletesFrom is the earliest time a run can complete a waiting or
	// settling recovery: the window's end plus the margin, or the
	// --settle deadline when later.
	CompletesFrom string `json:"completes_from,omitempty"`
	// Interrupted: the state is stopped because the last run died without
	// recording its end (kill -9, a crash, a reboot).
	Interrupted bool `json:"interrupted,omitempty"`
	// Sink is where the recovery delivered last; Sinks every sink it
	// delivered to, that one last.
	Sink  string   `json:"sink"`
	Sinks []string `json:"sinks,omitempty"`
	// Data is the data type the report is about, when the checkpoint keeps
	// several (run --data activities,alerts); Streams are the reports of
	// the others. State is then the recovery's as a whole: completed only
	// once every data type is.
	Data    string         `json:"data,omitempty"`
	Streams []statusReport `json:"streams,omitempty"`
	// Feed, for the checkpoint of a feed (follow): its state is the
	// agent's (running, catching_up, connection_error, disconnected,
	// stopped, failed), sent counts every cycle, and these say where it
	// stands: lag_seconds (the most of its data types'), the horizon before
	// which all was delivered, the cycles done, when one last completed.
	Feed        bool   `json:"feed,omitempty"`
	LagSeconds  int64  `json:"lag_seconds,omitempty"`
	Horizon     string `json:"horizon,omitempty"`
	Cycles      int64  `json:"cycles,omitempty"`
	LastCycleAt string `json:"last_cycle_at,omitempty"`
	FeedStart   string `json:"feed_start,omitempty"`
}

// topUpReport is a top-up pass as status shows it.
type topUpReport struct {
	State       string          `json:"state"`
	IDsFile     string          `json:"ids_file"`
	Position    string          `json:"position"`
	Cursor      json.RawMessage `json:"cursor"`
	Percent     float64         `json:"percent"`
	Left        string          `json:"left,omitempty"`
	Sent        int64           `json:"sent"`
	Skipped     int64           `json:"skipped"`
	SentAgain   int64           `json:"sent_again"`
	InFlight    int64           `json:"in_flight"`
	StartedAt   string          `json:"started_at"`
	CompletedAt string          `json:"completed_at"`
	Earlier     int             `json:"earlier"` // top-ups before this one
	Lanes       []laneReport    `json:"lanes,omitempty"`
}

// laneReport is one scan lane of a pass as status shows it.
type laneReport struct {
	Lane        int             `json:"lane"` // from 1
	WindowStart string          `json:"window_start"`
	WindowEnd   string          `json:"window_end"`
	State       string          `json:"state"`
	Position    string          `json:"position"`
	Percent     float64         `json:"percent"` // of Planned, else of the slice's time
	Planned     int64           `json:"planned"` // the slice's activities by the counts that balanced the lanes
	Sent        int64           `json:"sent"`
	Skipped     int64           `json:"skipped"`
	InFlight    int64           `json:"in_flight"`
	Cursor      json.RawMessage `json:"cursor"`
}

// newLaneReports are the scan lanes of pass p, or nil when it reads its
// scope in one lane.
func newLaneReports(p recovery.Pass) []laneReport {
	var out []laneReport
	for i, l := range p.Lanes {
		out = append(out, laneReport{Lane: i + 1, WindowStart: recovery.FormatMillis(l.Window.Start), WindowEnd: recovery.FormatMillis(l.Window.End),
			State: l.State, Position: p.LanePosition(i), Percent: l.Percent(), Planned: l.Planned, Sent: l.Sent, Skipped: l.Skipped,
			InFlight: l.InFlight.Activities, Cursor: rawCursor(l.Cursor)})
	}
	return out
}

// settleReport is the late-arrival phase as status shows it.
type settleReport struct {
	For      string `json:"for"`      // --settle
	Margin   string `json:"margin"`   // --settle-margin
	Deadline string `json:"deadline"` // "" until the pass is done
	// NextFrom is the created time the next sweep reads from.
	NextFrom string       `json:"next_from"`
	Sweeps   int64        `json:"sweeps"`
	LateSent int64        `json:"late_sent"`
	Sweep    *sweepReport `json:"sweep,omitempty"` // the sweep in progress, or the last one
}

// sweepReport is one sweep as status shows it.
type sweepReport struct {
	State       string `json:"state"`
	SavedFrom   string `json:"saved_from"`
	SavedBefore string `json:"saved_before"` // "" for the final sweep: no bound
	Final       bool   `json:"final"`
	Position    string `json:"position"`
	Sent        int64  `json:"sent"`
	InFlight    int64  `json:"in_flight"`
	StartedAt   string `json:"started_at"`
	CompletedAt string `json:"completed_at"`
}

func newSettleReport(st recovery.State, now time.Time, active bool) *settleReport {
	s := st.Settle
	if s == nil {
		return nil
	}
	r := &settleReport{For: s.For.String(), Margin: s.Margin.String(), Deadline: stamp(s.Deadline), NextFrom: recovery.FormatMillis(s.Horizon),
		Sweeps: s.Sweeps, LateSent: s.LateSent}
	if sw := st.Sweep; sw != nil {
		r.Sweep = &sweepReport{State: displayState(recovery.State{Pass: *sw, CreatedAt: sw.StartedAt}, now, active),
			SavedFrom: recovery.FormatMillis(sw.Scope.SavedFrom), Final: s.Final, Position: sw.Position(), Sent: sw.Sent,
			InFlight: sw.InFlight.Activities, StartedAt: stamp(sw.StartedAt), CompletedAt: stamp(sw.CompletedAt)}
		if b := sw.Scope.SavedBefore; b != 0 && !s.Final {
			r.Sweep.SavedBefore = recovery.FormatMillis(b)
		}
	}
	return r
}

func newStatusReport(st recovery.State, active bool, now time.Time) statusReport {
	pr := st.ProgressOf(st.Pass, now, active)
	current := st
	if t := st.Current(); t != &st.Pass {
		// An unfinished top-up or sweep is the work in progress: its
		// state, aged from its own start.
		current.Pass, current.CreatedAt = *t, t.StartedAt
	}
	r := statusReport{
		State:             displayState(current, now, active),
		WindowStart:       recovery.FormatMillis(st.Window.Start),
		WindowEnd:         recovery.FormatMillis(st.Window.End),
		By:                st.By.String(),
		Position:          st.Position(),
		Percent:           pr.Percent,
		Sent:              st.Sent,
		Skipped:           st.Skipped,
		APIRequests:       st.APIRequests,
		LastError:         st.LastError.String(),
		LastErrorResolved: lastErrorResolved(st),
		UpdatedAt:         stamp(st.UpdatedAt),
		Cursor:            rawCursor(st.Cursor),
		Total:             st.Total,
		TotalAtLeast:      st.TotalAtLeast,
		PercentOf:         "window",
		Left:              left(pr),
		SentAgain:         st.Resent,
		Resent:            st.Resent,
		InFlight:          st.Unconfirmed(),
		Lanes:             newLaneReports(st.Pass),
		Source:            st.Source,
		Filter:            st.Filter,
		RunActive:         active,
		Runs:              st.Runs,
		LastSuccessAt:     stamp(st.LastSuccessAt),
		Settle:            newSettleReport(st, now, active),
		Interrupted:       current.State == recovery.StateRunning && !active,
		Sinks:             st.Sinks,
	}
	if n := len(st.Sinks); n > 0 {
		r.Sink = st.Sinks[n-1]
	}
	if st.State == recovery.StateCompleted {
		r.CompletedAt = stamp(st.CompletedAt)
	} else {
		r.PassCompletedAt = stamp(st.CompletedAt)
	}
	if (st.State == recovery.StateWaiting || st.State == recovery.StateSettling) && st.Settle != nil {
		r.CompletesFrom = stamp(st.Settle.CompletesFrom(st.Window))
	}
	if pr.ByCount {
		r.PercentOf = "activities"
	}
	if f := st.Follow; f != nil {
		r.Feed, r.State, r.Sent = true, st.FeedState(now, active), st.FeedSent()
		r.LagSeconds = int64(st.Lag(now).Seconds())
		r.Horizon, r.Cycles, r.LastCycleAt = recovery.FormatMillis(st.FeedHorizon()), f.Cycles, stamp(f.LastCycleAt)
		r.FeedStart = recovery.FormatMillis(f.Start)
		r.Skipped, r.CompletedAt, r.PassCompletedAt = f.Skipped+st.Skipped, "", ""
	}
	if len(st.Streams) > 0 {
		r.Data = string(st.DataOf())
		for _, other := range st.Streams {
			sr := newStatusReport(other, active, now)
			sr.Data = string(other.DataOf())
			r.Streams = append(r.Streams, sr)
			if r.State == recovery.StateCompleted && sr.State != recovery.StateCompleted {
				r.State = sr.State // a data type not done is the recovery's state
			}
			if r.Feed {
				r.LagSeconds = max(r.LagSeconds, sr.LagSeconds)
				if feedWorse(sr.State, r.State) {
					r.State = sr.State
				}
			}
		}
	}
	if n := len(st.TopUps); n > 0 {
		t := st.TopUps[n-1]
		tp := st.ProgressOf(t, now, active)
		r.TopUp = &topUpReport{State: displayState(recovery.State{Pass: t, CreatedAt: t.StartedAt}, now, active), IDsFile: t.IDsFile,
			Position: t.Position(), Cursor: rawCursor(t.Cursor), Percent: tp.Percent, Left: left(tp),
			Sent: t.Sent, Skipped: t.Skipped, SentAgain: t.Resent, InFlight: t.Unconfirmed(),
			StartedAt: stamp(t.StartedAt), CompletedAt: stamp(t.CompletedAt), Earlier: n - 1, Lanes: newLaneReports(t)}
	}
	return r
}

// feedWorse tells whether feed state a is worse than b: stopped and failed
// worst, then disconnected, connection_error, catching_up, running.
func feedWorse(a, b string) bool {
	order := []string{recovery.FeedRunning, recovery.FeedCatchingUp, recovery.FeedConnectionError, recovery.FeedDisconnected,
		recovery.StateStopped, recovery.StateFailed}
	return slices.Index(order, a) > slices.Index(order, b)
}

// writeLanes writes a line for each scan lane of a pass ("top-up " for
// a top-up's).
func writeLanes(tw io.Writer, pass string, lanes []laneReport) {
	for _, l := range lanes {
		of := "of its slice"
		if l.Planned > 0 {
			of = fmt.Sprintf("of about %d", l.Planned)
		}
		fmt.Fprintf(tw, "%slane %d:\t[%s, %s) %s, %.1f%% %s, %d sent, at %s\n", pass, l.Lane, l.WindowStart, l.WindowEnd,
			l.State, l.Percent, of, l.Sent, l.Position)
	}
}

// lastErrorResolved tells whether the run got past its last error: a page
// was delivered after it (a completed recovery has always got past it).
func lastErrorResolved(st recovery.State) bool {
	last := st.Current().LastSuccessAt
	return st.LastError.String() != "" && (st.State == recovery.StateCompleted && st.TopUp() == nil || last.After(st.LastErrorAt))
}

// rawCursor is the source's own record of where a pass stands (the API's
// scan continuation, say), for the curious: people get Pass.Position.
func rawCursor(c recovery.Cursor) json.RawMessage {
	if c.IsZero() {
		return json.RawMessage("{}")
	}
	return c.Token
}

func left(pr recovery.Progress) string {
	if pr.Left <= 0 {
		return ""
	}
	return recovery.FormatLeft(pr.Left)
}

// displayState turns the stored state into the states of SPEC §4: a
// recovery not yet done (running, or stopped to be resumed by the next
// slot) whose last success is old shows as the MCAS portal shows a silent
// agent: a schedule whose every slot stops without delivering must not
// look merely stopped. A running state no run holds (active false) is a
// run that died without recording its end: stopped.
func displayState(st recovery.State, now time.Time, active bool) string {
	switch st.State {
	case recovery.StateCompleted, recovery.StateFailed, recovery.StatePending, recovery.StateSettling, recovery.StateWaiting:
		return st.State
	}
	since := st.LastSuccessAt
	if since.IsZero() {
		since = st.CreatedAt
	}
	switch age := now.Sub(since); {
	case age > disconnectedAfter:
		return "disconnected"
	case age > connectionErrorAfter:
		return "connection_error"
	case st.State == recovery.StateStopped, !active:
		return recovery.StateStopped
	}
	return recovery.StateRunning
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func (r statusReport) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	active := "no"
	if r.RunActive {
		active = "yes"
	}
	filter := r.Filter
	if filter == "" {
		filter = "none"
	}
	state := r.State
	if r.Interrupted {
		state += " (the last run died without recording its end: kill -9, a crash or a reboot; a re-run resumes)"
	}
	fmt.Fprintf(tw, "state:\t%s\n", state)
	if r.Data != "" {
		fmt.Fprintf(tw, "data:\t%s\n", r.Data)
	}
	if r.Feed {
		fmt.Fprintf(tw, "feed:\tsince %s, by %s; all delivered before %s (lag %s), %d cycles, the last at %s\n",
			r.FeedStart, r.By, r.Horizon, (time.Duration(r.LagSeconds) * time.Second).String(), r.Cycles, dash(r.LastCycleAt))
	} else {
		fmt.Fprintf(tw, "window:\t[%s, %s), by %s\n", r.WindowStart, r.WindowEnd, r.By)
	}
	if r.State == recovery.StateWaiting {
		fmt.Fprintf(tw, "waiting:\tthe window ends at %s, after the pass reached the present; a run from %s reads the rest and completes it "+
			"(a run before sends what MCAS saved since the last, exit 75; siem-recovery follow keeps a SIEM fed)\n", r.WindowEnd, r.CompletesFrom)
	}
	fmt.Fprintf(tw, "source:\t%s\n", r.Source)
	fmt.Fprintf(tw, "filter:\t%s\n", filter)
	if r.Sink != "" {
		sink := r.Sink
		if n := len(r.Sinks); n > 1 {
			sink += " (before it: " + strings.Join(r.Sinks[:n-1], ", ") + ")"
		}
		fmt.Fprintf(tw, "sink:\t%s\n", sink)
	}
	if !r.Feed { // a feed's window moves with the clock: the feed line says where it stands
		fmt.Fprintf(tw, "position:\t%s\n", r.Position)
		fmt.Fprintf(tw, "percent:\t%s\n", percentText(r.Percent, r.PercentOf, r.Total, r.TotalAtLeast, r.Left))
		writeLanes(tw, "", r.Lanes)
	}
	fmt.Fprintf(tw, "sent:\t%d\n", r.Sent)
	fmt.Fprintf(tw, "skipped:\t%d\n", r.Skipped)
	if r.SentAgain > 0 {
		fmt.Fprintf(tw, "sent again:\t%d (after a broken connection or a run that died mid-batch: the SIEM may hold up to that many twice)\n", r.SentAgain)
	} else {
		fmt.Fprintf(tw, "sent again:\t0\n")
	}
	if r.InFlight > 0 {
		fmt.Fprintf(tw, "unconfirmed:\t%d (handed to the sink, not confirmed whole yet: if this run dies, the next sends again what the sink is not known to hold)\n", r.InFlight)
	}
	if t := r.TopUp; t != nil {
		fmt.Fprintf(tw, "top-up:\t%s, for the ids not in %s (started %s)\n", t.State, t.IDsFile, t.StartedAt)
		fmt.Fprintf(tw, "top-up position:\t%s\n", t.Position)
		fmt.Fprintf(tw, "top-up percent:\t%s\n", percentText(t.Percent, r.PercentOf, r.Total, r.TotalAtLeast, t.Left))
		writeLanes(tw, "top-up ", t.Lanes)
		fmt.Fprintf(tw, "top-up sent:\t%d (skipped as already in the SIEM: %d; sent again: %d)\n", t.Sent, t.Skipped, t.SentAgain)
	}
	if s := r.Settle; s != nil {
		s.writeText(tw, r.State)
	}
	fmt.Fprintf(tw, "api requests:\t%d\n", r.APIRequests)
	if r.LastErrorResolved {
		fmt.Fprintf(tw, "last error (resolved):\t%s\n", r.LastError)
	} else {
		fmt.Fprintf(tw, "last error:\t%s\n", dash(r.LastError))
	}
	fmt.Fprintf(tw, "run active:\t%s (runs so far: %d)\n", active, r.Runs)
	fmt.Fprintf(tw, "last success:\t%s\n", dash(r.LastSuccessAt))
	fmt.Fprintf(tw, "updated at:\t%s\n", dash(r.UpdatedAt))
	if r.CompletedAt != "" {
		fmt.Fprintf(tw, "completed at:\t%s\n", r.CompletedAt)
	}
	if r.PassCompletedAt != "" {
		fmt.Fprintf(tw, "pass done at:\t%s\n", r.PassCompletedAt)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, sr := range r.Streams {
		fmt.Fprintf(w, "\n%s:\n", sr.Data)
		if err := sr.writeText(w); err != nil {
			return err
		}
	}
	return nil
}

// writeText says how the late-arrival phase stands, as lines of status.
func (s *settleReport) writeText(tw io.Writer, state string) {
	late := fmt.Sprintf("%d activities saved late sent by %d sweeps", s.LateSent, s.Sweeps)
	switch {
	case s.Deadline == "":
		fmt.Fprintf(tw, "settle:\tafter the pass (--settle %s): sweeps read what MCAS saved from %s on\n", s.For, s.NextFrom)
	case state == recovery.StateWaiting:
		fmt.Fprintf(tw, "settle:\t%s since the pass; the next reads what MCAS saved from %s (--settle %s)\n", late, s.NextFrom, s.For)
	case state == recovery.StateCompleted:
		fmt.Fprintf(tw, "settle:\tdone: %s (--settle %s, until %s)\n", late, s.For, s.Deadline)
	default:
		fmt.Fprintf(tw, "settle:\tuntil %s (--settle %s): %s; the next reads what MCAS saved from %s\n", s.Deadline, s.For, late, s.NextFrom)
	}
	if sw := s.Sweep; sw != nil && sw.CompletedAt == "" {
		saved := "from " + sw.SavedFrom
		if sw.SavedBefore != "" {
			saved = "in [" + sw.SavedFrom + ", " + sw.SavedBefore + ")"
		}
		what := "sweep"
		if sw.Final {
			what = "final sweep"
		}
		fmt.Fprintf(tw, "%s:\t%s at %s, %d sent, for what MCAS saved %s (started %s)\n", what, sw.State, sw.Position, sw.Sent, saved, sw.StartedAt)
	}
}

// percentText is "42.3% of 150304 activities at the source, 2m10s left";
// by the source's measure, "of the window", and when the source counted
// only a lower bound, it says so ("more than 10000").
func percentText(percent float64, of string, total *int64, atLeast bool, left string) string {
	s := fmt.Sprintf("%.1f%%", percent)
	switch {
	case of == "activities" && total != nil:
		s += fmt.Sprintf(" of %d activities at the source", *total)
	case total != nil && atLeast:
		s += " of the window (by time: the source counted " + recovery.CountText(*total, true) + " activities, a lower bound)"
	default:
		s += " of the window"
	}
	if left != "" {
		s += ", " + left + " left at this run's rate"
	}
	return s
}
