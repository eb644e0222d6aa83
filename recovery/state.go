package recovery

import (
	"context"
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
)

// State is everything a checkpoint records about one recovery. It never
// holds the token.
type State struct {
	Window      Window `json:"window"`
	Source      string `json:"source"`      // the source as the operator named it, token-free
	Filter      string `json:"filter"`      // the activity filter, canonical JSON ("" for none)
	Fingerprint string `json:"fingerprint"` // identity of source and filter

	State    string  `json:"state"`
	Cursor   Cursor  `json:"cursor"`
	Progress float64 `json:"progress"` // fraction of the window behind Cursor

	Sent        int64 `json:"sent"`         // activities the sink accepted
	Skipped     int64 `json:"skipped"`      // activities not sent: already in the SIEM (--exclude-ids)
	Resent      int64 `json:"resent"`       // activities sent again (a dead run's batch, reconnects): the SIEM may hold them twice
	APIRequests int64 `json:"api_requests"` // requests made to the source API
	Runs        int64 `json:"runs"`         // how many runs worked on this checkpoint

	// InFlight is the size of the batch handed to the sink and not yet
	// confirmed; non-zero on open means the last run died mid-batch and that
	// batch will be sent again.
	InFlight int64 `json:"in_flight"`

	// LastError is why the last run failed, or what it is waiting for (a
	// sink outage); a Redacted, so that no secret is ever stored in it.
	LastError     Redacted  `json:"last_error,omitzero"`
	LastErrorAt   time.Time `json:"last_error_at,omitzero"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	LastSuccessAt time.Time `json:"last_success_at,omitzero"`
	CompletedAt   time.Time `json:"completed_at,omitzero"`
}

// Checkpoint stores a recovery's State. Update runs fn on the current state
// and stores the result atomically; if fn returns an error nothing changes.
type Checkpoint interface {
	Load(ctx context.Context) (State, error)
	Update(ctx context.Context, fn func(*State) error) error
}

// Sink delivers formatted activities to the SIEM.
type Sink interface {
	// Send delivers batch in order and returns once the receiver holds all
	// of it (written and synced for a file, read by the receiver for a
	// network sink), retrying connection failures itself. It returns an
	// error only when it cannot go on (ctx done, a planned stop while the
	// receiver is down, a fault no retry mends such as a refused TLS setup);
	// then none of the batch may be taken as delivered. resent counts the
	// activities a retry sent again after a broken connection had possibly
	// delivered them already: the SIEM may hold those twice.
	Send(ctx context.Context, batch []Activity) (resent int, err error)
	Close() error
}

// Preparer is a Sink that can do a batch's work (formatting) before Send,
// while it still delivers the batch before; the replay loop calls Prepare
// from the goroutine that reads ahead. Send of the same batch then uses
// what Prepare made.
type Preparer interface {
	Prepare(batch []Activity)
}
