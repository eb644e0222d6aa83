package recovery

import "time"

// Follow is what the checkpoint of a feed (follow) keeps of one data
// type, beside the pass of its current cycle: where the feed stands in
// time, and what its cycles delivered. A feed's window runs from its first
// start to its horizon, which each cycle moves to the present (less the
// margin); its pass reads the part the cycle added.
type Follow struct {
	// Start is where the feed began (--start of its first run), Unix ms.
	Start int64 `json:"start"`
	// Horizon is the time (Unix ms, on the data type's field: created for
	// activities, date for alerts) before which everything was delivered:
	// the end of the last cycle completed.
	Horizon int64 `json:"horizon"`
	// Cycles counts the cycles completed.
	Cycles int64 `json:"cycles"`
	// Sent, Skipped and Resent sum the cycles completed (the current
	// cycle's pass counts its own).
	Sent    int64 `json:"sent"`
	Skipped int64 `json:"skipped"`
	Resent  int64 `json:"resent"`
	// CaughtUpAt is when a cycle last ended at the present; LastCycleAt
	// when one last completed.
	CaughtUpAt  time.Time `json:"caught_up_at,omitzero"`
	LastCycleAt time.Time `json:"last_cycle_at,omitzero"`
	// Poll and Margin are --poll and --settle-margin as of the latest run.
	Poll   time.Duration `json:"poll"`
	Margin time.Duration `json:"margin"`
}
