package recovery

import (
	"fmt"
	"time"
)

// DefaultSettleMargin is --settle-margin's default: how long after saving
// an activity MCAS is trusted to list it. It costs latency only (a late
// arrival saved within it waits for the next sweep), never a duplicate:
// docs/time-semantics.md says why 10 minutes.
const DefaultSettleMargin = 10 * time.Minute

// Settle is the late-arrival phase of a recovery whose source keeps saving
// activities after its pass read them (the MCAS API). The pass reads what
// was saved before its horizon; each sweep reads what was saved from the
// last horizon to its own, so each activity is read by one pass or sweep
// only; the final sweep, made by the first run after Deadline, reads all
// that is left and completes the recovery (docs/time-semantics.md).
type Settle struct {
	// For is --settle: how long after the pass completes sweeps go on.
	// Zero makes the final sweep right after the pass, in the same run.
	For time.Duration `json:"for"`
	// Margin is --settle-margin as of the latest run: what was saved less
	// than Margin before a sweep began is left to the next.
	Margin time.Duration `json:"margin"`
	// Deadline is the pass's completion plus For; zero until the pass
	// completes.
	Deadline time.Time `json:"deadline,omitzero"`
	// Horizon is where the next sweep starts: the created time (Unix ms)
	// up to which the pass and the sweeps so far have read.
	Horizon int64 `json:"horizon"`
	// Final tells that the sweep in progress (or the last one) is the
	// final one: it completes the recovery.
	Final bool `json:"final,omitempty"`
	// Sweeps counts the sweeps completed; LateSent the activities they
	// sent (also counted in the recovery's sent).
	Sweeps   int64 `json:"sweeps"`
	LateSent int64 `json:"late_sent"`
}

// Horizon is the created time (Unix ms) up to which a pass or sweep begun
// at now reads: what MCAS saved at least margin before.
func Horizon(now time.Time, margin time.Duration) int64 {
	return now.Add(-margin).UnixMilli()
}

// Ended tells whether the window w is over at now as far as MCAS is
// concerned: its end lies at least the margin before now, so what MCAS
// saved up to the end is listed. Until then the window is still open:
// activities of it are still being saved, in the ordinary way, not late.
func (s Settle) Ended(w Window, now time.Time) bool {
	return !now.Before(s.EndsAt(w))
}

// EndsAt is when the window w is over (Ended): its end plus the margin.
func (s Settle) EndsAt(w Window) time.Time {
	return time.UnixMilli(w.End).UTC().Add(s.Margin)
}

// CompletesFrom is the earliest time the final sweep over the window w
// can be made: once the window is over (EndsAt) and the deadline has
// passed. Before the pass is done (no deadline yet) it is EndsAt.
func (s Settle) CompletesFrom(w Window) time.Time {
	if end := s.EndsAt(w); end.After(s.Deadline) {
		return end
	}
	return s.Deadline
}

// NextSweep is the scope of the sweep a run begun at now makes over the
// pass's scope: from the horizon to now's horizon, or, once the deadline
// has passed and the window is over (CompletesFrom), the final sweep, with
// no upper bound. empty tells that the range can hold no activity of the
// window (past the end of a window by created, or behind the horizon after
// the clock was set back): it needs no request.
func (s Settle) NextSweep(pass Scope, now time.Time) (scope Scope, final, empty bool) {
	final = !now.Before(s.CompletesFrom(pass.Window))
	scope = Scope{Window: pass.Window, By: pass.By, SavedFrom: s.Horizon}
	if !final {
		scope.SavedBefore = Horizon(now, s.Margin)
	}
	if pass.By == ByCreated {
		scope.SavedFrom = max(scope.SavedFrom, pass.Window.Start)
		if scope.SavedBefore == 0 || scope.SavedBefore > pass.Window.End {
			scope.SavedBefore = pass.Window.End
		}
	}
	empty = scope.SavedBefore != 0 && scope.SavedBefore <= scope.SavedFrom
	return scope, final, empty
}

// WindowOpen is how a run ends on a window that has not ended: its pass
// (and the sweeps since) read what MCAS had saved up to the present, and
// the checkpoint is waiting until the window is over (Settle.Ended). It
// is a stop before the end date (errors.Is ErrStopped): a re-run resumes,
// and the first run from EndsAt reads the rest. The command words it for
// the operator.
type WindowOpen struct {
	Window Window
	By     TimeField
	// ReadBefore is the created time (Unix ms) before which what MCAS saved
	// for the window has been read: the next sweep's start.
	ReadBefore int64
	// EndsAt is when the window is over: its end plus the margin. From
	// then a run reads the rest (Deadline, when later, is when it
	// completes: --settle).
	EndsAt   time.Time
	Deadline time.Time
	Margin   time.Duration
	Sent     int64 // by the recovery so far
}

func (e *WindowOpen) Error() string {
	return fmt.Sprintf("the window %s ends at %s: what MCAS saved for it before %s was read (%d sent); a run from %s reads the rest",
		e.Window, FormatMillis(e.Window.End), FormatMillis(e.ReadBefore), e.Sent, e.EndsAt.Format(time.RFC3339))
}

// Is makes a WindowOpen a stop before the end date.
func (e *WindowOpen) Is(target error) bool { return target == ErrStopped }
