package main

import (
	"encoding/json"
	"fmt"
	"io"
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

func statusCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show a recovery's progress from its checkpoint (works while a run is in progress)",
		UsageText: "siem-recovery status --checkpoint PATH [--json]",
		Description: "States: pending (no run yet), running (in progress, or a run died without a word: run active says which),\n" +
			"stopped (the last run stopped before the end date, exit 75: --max-duration or a signal; a re-run resumes),\n" +
			"connection_error (running or stopped, and nothing delivered for over 2 h), disconnected (the same for over 12 h),\n" +
			"completed (window delivered, recovery disabled), failed (the last run ended on an error; a re-run resumes).",
		Flags: []cli.Flag{
			checkpointFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object (keys: state, window_start, window_end, position, percent, sent, skipped, api_requests, last_error, updated_at, sent_again, ...)"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageError(fmt.Errorf("unexpected argument %q (flags only)", c.Args().First()))
			}
			st, active, err := checkpoint.Read(c.Context, c.String("checkpoint"))
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
type statusReport struct {
	State         string  `json:"state"`
	WindowStart   string  `json:"window_start"`
	WindowEnd     string  `json:"window_end"`
	Position      string  `json:"position"`
	Percent       float64 `json:"percent"`
	Sent          int64   `json:"sent"`
	Skipped       int64   `json:"skipped"`
	APIRequests   int64   `json:"api_requests"`
	LastError     string  `json:"last_error"`
	UpdatedAt     string  `json:"updated_at"`
	SentAgain     int64   `json:"sent_again"`
	Resent        int64   `json:"resent"` // the old name of sent_again, kept for scripts
	InFlight      int64   `json:"in_flight"`
	Source        string  `json:"source"`
	Filter        string  `json:"filter"`
	RunActive     bool    `json:"run_active"`
	Runs          int64   `json:"runs"`
	LastSuccessAt string  `json:"last_success_at"`
	CompletedAt   string  `json:"completed_at"`
}

func newStatusReport(st recovery.State, active bool, now time.Time) statusReport {
	return statusReport{
		State:         displayState(st, now),
		WindowStart:   recovery.FormatMillis(st.Window.Start),
		WindowEnd:     recovery.FormatMillis(st.Window.End),
		Position:      st.Cursor.String(),
		Percent:       float64(int(st.Progress*1000)) / 10, // floor to 0.1: 100 only when done
		Sent:          st.Sent,
		Skipped:       st.Skipped,
		APIRequests:   st.APIRequests,
		LastError:     st.LastError.String(),
		UpdatedAt:     stamp(st.UpdatedAt),
		SentAgain:     st.Resent,
		Resent:        st.Resent,
		InFlight:      st.InFlight,
		Source:        st.Source,
		Filter:        st.Filter,
		RunActive:     active,
		Runs:          st.Runs,
		LastSuccessAt: stamp(st.LastSuccessAt),
		CompletedAt:   stamp(st.CompletedAt),
	}
}

// displayState turns the stored state into the states of SPEC §4: a
// recovery not yet done (running, or stopped to be resumed by the next
// slot) whose last success is old shows as the MCAS portal shows a silent
// agent: a schedule whose every slot stops without delivering must not
// look merely stopped.
func displayState(st recovery.State, now time.Time) string {
	switch st.State {
	case recovery.StateCompleted, recovery.StateFailed, recovery.StatePending:
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
	case st.State == recovery.StateStopped:
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
	fmt.Fprintf(tw, "state:\t%s\n", r.State)
	fmt.Fprintf(tw, "window:\t[%s, %s)\n", r.WindowStart, r.WindowEnd)
	fmt.Fprintf(tw, "source:\t%s\n", r.Source)
	fmt.Fprintf(tw, "filter:\t%s\n", filter)
	fmt.Fprintf(tw, "position:\t%s\n", r.Position)
	fmt.Fprintf(tw, "percent:\t%.1f%%\n", r.Percent)
	fmt.Fprintf(tw, "sent:\t%d\n", r.Sent)
	fmt.Fprintf(tw, "skipped:\t%d\n", r.Skipped)
	if r.SentAgain > 0 {
		fmt.Fprintf(tw, "sent again:\t%d (after a broken connection or a run that died mid-batch: the SIEM may hold up to that many twice)\n", r.SentAgain)
	} else {
		fmt.Fprintf(tw, "sent again:\t0\n")
	}
	if r.InFlight > 0 {
		fmt.Fprintf(tw, "unconfirmed:\t%d (handed to the sink, not yet confirmed: sent again if this run dies)\n", r.InFlight)
	}
	fmt.Fprintf(tw, "api requests:\t%d\n", r.APIRequests)
	fmt.Fprintf(tw, "last error:\t%s\n", dash(r.LastError))
	fmt.Fprintf(tw, "run active:\t%s (runs so far: %d)\n", active, r.Runs)
	fmt.Fprintf(tw, "last success:\t%s\n", dash(r.LastSuccessAt))
	fmt.Fprintf(tw, "updated at:\t%s\n", dash(r.UpdatedAt))
	if r.CompletedAt != "" {
		fmt.Fprintf(tw, "completed at:\t%s\n", r.CompletedAt)
	}
	return tw.Flush()
}
