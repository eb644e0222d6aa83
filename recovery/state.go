package recovery

import (
	"encoding/json"
	"strconv"
	"time"
)

// Run states recorded in the checkpoint. Status derives connection_error and
// disconnected from a running state whose last success is old (SPEC §4).
const (
	StatePending   = "pending"   // created, nothing delivered yet
	StateRunning   = "running"   // a run is (or was, until it died) delivering
	StateStopped   = "stopped"   // a run stopped cleanly before the end date
	StateCompleted = "completed" // the end date was reached: disabled
	StateFailed    = "failed"    // the last run ended on an error
	// StateSettling: the pass is done and runs sweep for activities saved
	// late until the deadline (--settle; Settle).
	StateSettling = "settling"
	// StateWaiting: the pass reached the present, but the window has not
	// ended (its end lies after now − margin): each run sweeps for what MCAS
	// saved since the last, and the first run from the window's end plus the
	// margin (Settle.CompletesFrom) reads the rest and completes it.
	StateWaiting = "waiting"
)

// StateVersion is the latest version of the State a checkpoint stores
// (StoredVersion tells which one a state needs). Version 1 (no "version"
// key) held every source's cursor fields side by side and knew no --by;
// the checkpoint package reads it as version 2. Version 3 adds the scan
// lanes of a pass (--parallel): an earlier siem-recovery would read such a
// pass from its start, so a state with lanes is stored as version 3 and
// one without as version 2, which the one before this reads as it is.
// Version 4 adds the waiting state of a window that has not ended: an
// earlier siem-recovery would take it for a pass to resume and, finding
// nothing after its cursor, complete a window MCAS is still filling. Only
// a waiting state is stored as version 4.
// Version 5 adds the states of other data types (Streams: alerts beside
// activities) and the feeds of follow: an earlier siem-recovery would
// resume the activities and never send the alerts, or take a feed's
// moving window for a recovery's.
const StateVersion = 5

// StoredVersion is the version st is stored as: the earliest that holds
// all it records.
func (st State) StoredVersion() int {
	if len(st.Streams) > 0 || st.Follow != nil || st.Data != "" && st.Data != DataActivities {
		return 5
	}
	if st.State == StateWaiting {
		return 4
	}
	passes := append([]Pass{st.Pass}, st.TopUps...)
	if st.Sweep != nil {
		passes = append(passes, *st.Sweep)
	}
	for _, p := range passes {
		if len(p.Lanes) > 0 {
			return 3
		}
	}
	return 2
}

// State is everything a checkpoint records about one recovery. It never
// holds the token.
type State struct {
	Version     int       `json:"version"`
	Window      Window    `json:"window"`
	By          TimeField `json:"by"`          // the time the window applies to (--by)
	Source      string    `json:"source"`      // the source as the operator named it, token-free
	Filter      string    `json:"filter"`      // the activity filter, canonical JSON ("" for none)
	Fingerprint string    `json:"fingerprint"` // identity of source and filter

	// Pass is the window's own pass, the recovery proper. Embedded, its
	// fields keep their place in the stored JSON.
	Pass

	// Total is the window's activity count at the source when a run first
	// asked it (nil: the source cannot count, e.g. an export); the percent
	// done is counted in activities against it. It is an estimate: it may
	// plan, never decide that anything is complete or missing.
	// TotalAtLeast tells that the source said the window holds more than
	// Total (the API's moreThanTotal): then Total is a lower bound, shown
	// as one ("more than N"), and the percent done is the source's own
	// measure (the time reached), never a share of it.
	Total        *int64 `json:"total,omitempty"`
	TotalAtLeast bool   `json:"total_at_least,omitempty"`

	APIRequests int64 `json:"api_requests"` // requests made to the source API, by every pass
	Runs        int64 `json:"runs"`         // how many runs worked on this checkpoint

	// TopUps are the passes over the completed window that sent what the
	// SIEM still lacked (run --exclude-ids on a completed checkpoint),
	// oldest first; the last is the current one.
	TopUps []Pass `json:"top_ups,omitempty"`

	// Settle is the late-arrival phase: set when the pass began with a
	// horizon (a source that keeps saving activities, the API), nil
	// otherwise. Sweep is the sweep in progress, or the last one made.
	Settle *Settle `json:"settle,omitempty"`
	Sweep  *Pass   `json:"sweep,omitempty"`

	// Sinks are the sinks the recovery delivered to (SinkName's form: the
	// scheme, host and port, or the file; never a secret), each once, the
	// one delivered to last at the end. Not part of the identity:
	// moving to another SIEM mid-recovery is legitimate, and a run tells it.
	Sinks []string `json:"sinks,omitempty"`

	// LastError is why the last run failed, or what it is waiting for (a
	// sink outage); a Redacted, so that no secret is ever stored in it.
	LastError   Redacted  `json:"last_error,omitzero"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`

	// Data is the data type this state is about: "" is activities, the
	// only one before --data. Streams are the states of the recovery's
	// other data types (run --data activities,alerts): each its own pass,
	// position and counters over the same window, kept in the same record
	// so that one checksum and one lock cover them (stream.go).
	Data    DataType `json:"data,omitempty"`
	Streams []State  `json:"streams,omitempty"`

	// Follow is set on the state of a feed (follow): where it stands in
	// time and what its cycles delivered (follow.go). A recovery has none,
	// and run refuses a checkpoint that has one.
	Follow *Follow `json:"follow,omitempty"`
}

// Pass is one reading of a scope, from its start to its end: its resume
// position and its counters. A recovery has its own pass over the window;
// each top-up is another over the completed window, and each sweep one over
// what MCAS saved late.
type Pass struct {
	State string `json:"state"`
	Scope Scope  `json:"scope"`
	// Lane is where the pass stands when it reads its scope in one lane;
	// embedded, its fields keep their place in the stored JSON. A pass read
	// in scan lanes leaves it zero and keeps each lane's in Lanes.
	Lane
	// Lanes are the scan lanes of a pass that reads its scope in slices
	// side by side (--parallel): each has its own position and batch in
	// flight, and advances only past what the sink accepted of its own
	// batches. Nil for a pass read in one lane. The counters below are the
	// sums over the lanes.
	Lanes []ScanLane `json:"lanes,omitempty"`
	// LanesPlanned tells that the pass's lanes are decided: its scan lanes
	// (Lanes), or its own lane when one is all it needs. Until then a run
	// reads the pass in its own lane from where it stands, while it counts
	// and plans the lanes beside it; once the plan is recorded no run
	// counts or plans the pass again. (A pass of a checkpoint made before
	// the plan was recorded has scan lanes, or reads on in its own lane
	// while a run plans the rest of it.)
	LanesPlanned bool `json:"lanes_planned,omitempty"`

	Sent    int64 `json:"sent"`    // activities the sink accepted
	Skipped int64 `json:"skipped"` // activities not sent: already in the SIEM (--exclude-ids)
	Resent  int64 `json:"resent"`  // activities sent again (a dead run's batch, reconnects): the SIEM may hold them twice

	// Excluded is the fingerprint (IDSet.Fingerprint) of the ids every run
	// of the pass left out (--exclude-ids); "" for none, or when its runs
	// left out different ids. IDsFile names the file.
	Excluded string `json:"excluded,omitempty"`
	IDsFile  string `json:"ids_file,omitempty"`

	// RunStartedAt, RunStartedDone and RunStartedSent mark where the
	// latest run of this pass started (done as a fraction, see State.Done):
	// its rate and the time left are reckoned from this run alone.
	// RunStartedSkipped is Skipped then: a top-up mostly skips, and its
	// rate counts what it read.
	RunStartedAt      time.Time `json:"run_started_at,omitzero"`
	RunStartedDone    float64   `json:"run_started_done,omitempty"`
	RunStartedSent    int64     `json:"run_started_sent,omitempty"`
	RunStartedSkipped int64     `json:"run_started_skipped,omitempty"`

	StartedAt     time.Time `json:"started_at,omitzero"` // a top-up's start
	LastSuccessAt time.Time `json:"last_success_at,omitzero"`
	CompletedAt   time.Time `json:"completed_at,omitzero"`
}

// Lane is where one lane of a pass stands in its scope: its resume
// position and the batch it handed the sink.
type Lane struct {
	Cursor   Cursor  `json:"cursor"`
	Progress float64 `json:"progress"` // fraction of the lane's window behind Cursor, as the source measures it
	// Reached is the time (ms, on the scope's field: date or created) of
	// the latest activity behind Cursor: where the lane stands, for people
	// (Cursor is the source's own business).
	Reached int64 `json:"reached,omitempty"`
	// InFlight is the batch handed to the sink and not yet confirmed whole;
	// one found on open was left by a run that died mid-batch.
	InFlight InFlight `json:"in_flight"`
}

// ScanLane is one scan lane of a pass: its slice of the pass's scope, where
// it stands in it, and what it delivered.
type ScanLane struct {
	Window Window `json:"window"` // its slice of the pass's window
	Lane
	State string `json:"state"` // running, stopped, failed, completed: the pass's, until the lane is done
	// Planned is how many activities the slice held by the counts that
	// balanced the lanes (an estimate: a cut between two counts is
	// interpolated); 0 when not counted.
	Planned int64 `json:"planned,omitempty"`
	Sent    int64 `json:"sent"`
	Skipped int64 `json:"skipped"`
}

// InFlight is the batch a pass handed the sink and the sink has not
// confirmed whole: what a run needs, after the run that sent it died, to
// send of it only what the sink does not hold. Each lane of a pass would
// hold one. The page at the pass's cursor, fetched again, is the batch.
type InFlight struct {
	// Activities is the size of the batch; 0 when none is in flight.
	Activities int64 `json:"activities"`
	// FirstID is its first activity's id: the page fetched again must
	// start the same way for Acked to count.
	FirstID string `json:"first_id,omitempty"`
	// Acked of its activities, from the first, the receiver acknowledged
	// (an Acknowledger's); AckedID is the last of them. Window is how many
	// past Acked the sink may have sent (0: any of the batch).
	Acked   int64  `json:"acked,omitempty"`
	AckedID string `json:"acked_id,omitempty"`
	Window  int64  `json:"window,omitempty"`
	// Mark is where the batch starts in the sink, as a Resumer said.
	Mark json.RawMessage `json:"mark,omitempty"`
}

// UnmarshalJSON reads an in-flight record, or the bare batch size that
// checkpoints of earlier versions hold.
func (f *InFlight) UnmarshalJSON(b []byte) error {
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		*f = InFlight{Activities: n}
		return nil
	}
	type record InFlight // without this method
	return json.Unmarshal(b, (*record)(f))
}

// Batch is what the replay loop hands the sink.
type Batch struct {
	Activities []Activity
	// Prepared is what the sink's Prepare made of Activities ahead of
	// Send (a Preparer's), or nil: Send then does that work itself.
	Prepared Prepared
	// Acks, for an Acknowledger, takes the acknowledgements as they come
	// and says how many are recorded; nil: nobody records them.
	Acks Acks
}

// Prepared is the work a Preparer did for a batch ahead of its Send. Only
// the sink that made it reads it; it belongs to the caller, who passes it
// in the Batch of those very activities, and may hand it back to Prepare
// for its memory once that Send has returned.
type Prepared any

// Plan is what a run has to do on a checkpoint.
type Plan int

const (
	// PlanNothing: the window is completed, and so is any pass the run
	// asks for: "already completed, nothing to do".
	PlanNothing Plan = iota
	// PlanRecover: the window's own pass, from where it stands.
	PlanRecover
	// PlanTopUp: a pass over the completed window that sends what is not
	// in the run's --exclude-ids file (started, or resumed where it
	// stopped).
	PlanTopUp
)

// Plan tells what a run that leaves out the ids with fingerprint excluded
// ("" for none) has to do. On a completed window, leaving out ids asks for
// a top-up pass, unless a completed pass already left out the very same
// ids (the recovery's own, started with that file; or an earlier top-up),
// or the window holds no activity: then there is nothing to do. So a
// schedule that keeps re-running the same command does nothing once done,
// and following verify's advice with a fresh file of the SIEM's ids sends
// exactly what the SIEM lacks.
func (st State) Plan(excluded string) Plan {
	switch {
	case st.State != StateCompleted:
		return PlanRecover
	case excluded == "" || excluded == st.Excluded || st.Sent+st.Skipped == 0:
		return PlanNothing
	}
	for _, t := range st.TopUps {
		if t.Excluded == excluded && t.State == StateCompleted {
			return PlanNothing
		}
	}
	return PlanTopUp
}

// TopUp is the current top-up pass: the latest, if it is not completed.
func (st *State) TopUp() *Pass {
	if n := len(st.TopUps); n > 0 && st.TopUps[n-1].State != StateCompleted {
		return &st.TopUps[n-1]
	}
	return nil
}

// topUpFor returns the top-up pass for the ids with fingerprint excluded
// (read from file): the current one when it was started for them, else a
// new one from the start of the window. An unfinished top-up for other ids
// is left as it stands: the newer file is what the SIEM holds now.
func (st *State) topUpFor(excluded, file string, now time.Time) (p *Pass, resumed bool) {
	if t := st.TopUp(); t != nil && t.Excluded == excluded {
		return t, true
	}
	st.TopUps = append(st.TopUps, Pass{State: StatePending, Scope: Scope{Window: st.Window, By: st.By}, Excluded: excluded, IDsFile: file, StartedAt: now})
	return &st.TopUps[len(st.TopUps)-1], false
}
