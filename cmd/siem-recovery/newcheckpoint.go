package main

import (
	"context"
	"time"

	"siem-recovery/checkpoint"
	"siem-recovery/recovery"
)

// runCheckpoint is a run's checkpoint (a recovery.Checkpoint). One that
// exists is opened (locked, its identity checked) before anything else.
// One that does not is created once there is something to keep: a batch
// handed to the sink (recorded in flight before the sink has it), or the
// run's end other than a failure (a planned stop, an empty window done).
// So a run that fails before it handed the sink anything (a bad token, no
// token, a dead proxy, an API that is down or refuses the filter, an
// export whose first lines are malformed) leaves no checkpoint and no lock
// behind, and the next run starts as the first would have; nothing was
// sent that a checkpoint would have to account for. Until then the state
// lives in memory.
type runCheckpoint struct {
	path  string
	id    checkpoint.Identity
	store *checkpoint.Store // nil until the checkpoint exists
	st    recovery.State    // the state before the checkpoint exists
}

// newRunCheckpoint is the checkpoint at path for id, still to be created.
func newRunCheckpoint(path string, id checkpoint.Identity, now time.Time) *runCheckpoint {
	return &runCheckpoint{path: path, id: id, st: id.NewState(now)}
}

// Path is the checkpoint's path, whether it exists yet or not.
func (c *runCheckpoint) Path() string { return c.path }

// Exists tells whether the checkpoint is on disk (and locked by this run).
func (c *runCheckpoint) Exists() bool { return c.store != nil }

// Load returns the state.
func (c *runCheckpoint) Load(ctx context.Context) (recovery.State, error) {
	if c.store != nil {
		return c.store.Load(ctx)
	}
	return c.st, nil
}

// Update changes the state with fn. A checkpoint not yet on disk is
// created when the change leaves something to keep (worthKeeping): before,
// the change is kept in memory.
func (c *runCheckpoint) Update(ctx context.Context, fn func(*recovery.State) error) error {
	if c.store != nil {
		return c.store.Update(ctx, fn)
	}
	next := c.st
	if err := fn(&next); err != nil {
		return err
	}
	next.UpdatedAt = time.Now().UTC()
	if !worthKeeping(next) {
		c.st = next
		return nil
	}
	store, err := checkpoint.Open(ctx, c.path, c.id)
	if err != nil {
		return err
	}
	if !store.Created() {
		store.Close()
		return recovery.Problemf(recovery.ErrCheckpointUnavailable, "re-run the same command: it resumes that recovery",
			"another run created %s while this one was starting", c.path)
	}
	c.store = store
	return store.Update(ctx, func(s *recovery.State) error {
		*s = next
		return nil
	})
}

// worthKeeping tells whether a new recovery's state holds what its
// checkpoint must keep: activities handed to the sink (in flight, sent or
// left out as the SIEM's), or an end other than a failure (a planned stop,
// which status must show; a pass done). A pass begun, counted and planned
// is not: a run that fails there made nothing to account for.
func worthKeeping(st recovery.State) bool {
	for _, s := range st.All() { // every data type's
		switch s.State {
		case recovery.StatePending, recovery.StateRunning, recovery.StateFailed:
			if s.Sent+s.Skipped > 0 || s.Unconfirmed() > 0 {
				return true
			}
		default:
			return true
		}
	}
	return false
}

// Close releases the checkpoint's lock, if the run took it.
func (c *runCheckpoint) Close() error {
	if c.store == nil {
		return nil
	}
	return c.store.Close()
}
