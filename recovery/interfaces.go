package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// The interfaces between the replay loop and the kinds of source, sink and
// checkpoint, in one place: a Source, Sink and Checkpoint each have one
// or two methods; what only some kinds can do is an optional interface a
// kind's package asserts it implements (var _ recovery.Counter = …), so
// that a drifted signature fails the build instead of switching a feature
// off.

// The source side.

// Source yields the window's activities page by page.
type Source interface {
	// Fetch returns the page that starts at cur; the zero Cursor is the
	// start of the window. Fetch retries what is worth retrying itself and
	// returns an error only when the run cannot go on.
	Fetch(ctx context.Context, cur Cursor) (Page, error)
}

// Scoped is a Source that can read another scope than the one it was made
// for: the recovery's pass up to its horizon, the sweeps for activities
// saved late, and the lanes of a scan all read through one Scoped source,
// so that they share its connection, its rate limit and its count of
// failed requests. A cursor that Over(s) gave is good for Over(s') when s'
// is s with an earlier end (the first lane of a pass, whose slice the plan
// cuts short while it reads): Fetch goes on from it and ends where s'
// does, listing nothing past it.
type Scoped interface {
	Source
	// Over returns the source of scope: its Fetch pages through scope, and
	// it is a Counter when the Scoped source is.
	Over(scope Scope) Source
}

// Counter is a Source that can count the activities of a part of its
// scope without paging through them, in one request (the MCAS API's plain
// answers carry a total; Microsoft Graph runs a count() query): the pass's
// size, the percent done, the counts that balance scan lanes, verify's and
// gaps' counts.
type Counter interface {
	// Count counts the scope's activities whose time lies in w (the
	// scope's own window, or a part of it: what lies outside the scope is
	// never counted). An answer without a usable total is ErrNoTotal.
	Count(ctx context.Context, w Window) (Tally, error)
}

// ErrNoTotal: the source's answer does not say how many activities the
// window holds; they can only be counted by paging through it.
var ErrNoTotal = errors.New("the answer carries no total")

// LaneSizer is a Source that can read its scope in scan lanes side by side
// (the MCAS API; an export is read in one lane). Its pages list its scope
// in ascending order of the scope's time: a page that reaches the end of a
// lane's slice is that lane's last.
type LaneSizer interface {
	Source
	// Lanes is how many lanes keep the source's rate limit busy at the
	// answer time it measured so far; 0 before it measured any.
	Lanes() int
	// PageSize is the most activities one of its pages holds.
	PageSize() int
}

// A DataOpener is a Source that can open another data type its service
// serves (the MCAS API's activities and alerts) on the connection,
// credential and request budget it has: the tenant's quota is one,
// whichever data type spends it.
type DataOpener interface {
	// OpenData returns the source of data over scope, with filter (that
	// data type's own: the alerts filter for alerts).
	OpenData(data DataType, scope Scope, filter Filter) (Source, error)
}

// The sink and checkpoint side.

// Checkpoint stores a recovery's State. Update runs fn on the current state
// and stores the result atomically; if fn returns an error nothing changes.
type Checkpoint interface {
	Load(ctx context.Context) (State, error)
	Update(ctx context.Context, fn func(*State) error) error
}

// Sink delivers formatted activities to the SIEM.
type Sink interface {
	// Send delivers the batch's activities in order and returns once the
	// receiver holds all of them (written and synced for a file, read or
	// acknowledged by the receiver for a network sink), retrying connection
	// failures itself. It returns an error only when it cannot go on (ctx
	// done, a planned stop while the receiver is down, a fault no retry
	// mends such as a refused TLS setup); then none of the batch may be
	// taken as delivered but what it told b.Acks. resent counts the
	// activities a retry sent again after a broken connection had possibly
	// delivered them already: the SIEM may hold those twice.
	Send(ctx context.Context, b Batch) (resent int, err error)
	Close() error
}

// Preparer is a Sink that can do a batch's work (formatting) before Send,
// while it still delivers the batch before; the replay loop calls Prepare
// from the goroutine that fetched the page (the one that reads ahead, or a
// scan lane's). Prepare may run beside Send and beside other Prepare calls.
type Preparer interface {
	// Prepare does batch's work, in reuse's memory when reuse is a
	// Prepared whose Send has returned (nil for none), and returns it.
	Prepare(reuse Prepared, batch []Activity) Prepared
}

// An Acknowledger is a Sink whose receiver acknowledges each activity
// (RELP). Send tells Batch.Acks the acknowledgements as they come, and keeps
// at most AckWindow activities on the wire past those Acks says are
// recorded: a run that dies has sent at most that many unrecorded, which
// the next run sends again.
type Acknowledger interface {
	Sink
	AckWindow() int
}

// Acks is where an Acknowledger's Send reports acknowledgements.
type Acks interface {
	// Acked says the receiver acknowledged the first n activities of the
	// batch.
	Acked(n int)
	// Recorded returns how many of them are recorded in the checkpoint,
	// and a channel closed once that number grows.
	Recorded() (n int, grown <-chan struct{})
}

// A Resumer is a Sink that can read back what it delivered (the file
// sink): Mark says where the next batch will start, and Resume, given the
// mark of a batch a run left in flight when it died, which of its
// activities the sink holds, by id. nil means the sink cannot tell (the
// file was rotated since): all of the batch may be there.
type Resumer interface {
	Sink
	Mark(ctx context.Context) (json.RawMessage, error)
	Resume(ctx context.Context, mark json.RawMessage) (held map[string]bool, err error)
}

// What check asks of a source or a sink.

// A Prober is a source or sink that can test its connection without moving
// any record: the API with one cheap request, a receiver with a connection
// (a handshake, a RELP session). A nil error means it answered as it must.
type Prober interface {
	Probe(ctx context.Context) error
}

// A Credentialed source says how it authenticates (without any secret) and
// can obtain its access token without asking the API: check tells a
// refusal by Entra ID from one by the API.
type Credentialed interface {
	Credential() string
	// Authorize obtains the token and tells how long it is valid; 0 for a
	// token given by hand, which it does not check.
	Authorize(ctx context.Context) (time.Duration, error)
}
