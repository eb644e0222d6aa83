package recovery

import (
	"context"
	"slices"
	"time"
)

// The data types of one recovery or feed share a checkpoint: the state of
// the first data type is the checkpoint's own State, and the others' are in
// its Streams, each a State of its own (its pass, position, counters, last
// error) over the same window. One record holds them all, so one checksum
// and one lock cover them, and a crash between two data types' records
// cannot leave them apart.

// DataOf is the data type st is about: activities when it names none (a
// checkpoint from before --data).
func (st State) DataOf() DataType {
	if st.Data == "" {
		return DataActivities
	}
	return st.Data
}

// Stream returns the state of data type d in the checkpoint whose own
// state is st: st itself when it is d's, else its Streams' entry (added,
// pending over st's window, when there is none yet). The result is a
// pointer into st.
func (st *State) Stream(d DataType) *State {
	if st.DataOf() == d {
		return st
	}
	for i := range st.Streams {
		if st.Streams[i].DataOf() == d {
			return &st.Streams[i]
		}
	}
	st.Streams = append(st.Streams, State{
		Data: d, Window: st.Window, By: st.By, Source: st.Source, Fingerprint: st.Fingerprint,
		Pass:      Pass{State: StatePending, Scope: Scope{Window: st.Window, By: st.By}},
		CreatedAt: st.UpdatedAt, UpdatedAt: st.UpdatedAt,
	})
	return &st.Streams[len(st.Streams)-1]
}

// All are the states of every data type st's checkpoint holds, its own
// first.
func (st State) All() []State {
	return append([]State{st}, st.Streams...)
}

// Completed reports whether every data type's state is completed.
func (st State) Completed() bool {
	for _, s := range st.All() {
		if s.State != StateCompleted {
			return false
		}
	}
	return true
}

// StreamCheckpoint is the Checkpoint of one data type within a checkpoint
// that holds several: it loads and updates that data type's State alone,
// in the records of the whole.
type StreamCheckpoint struct {
	Checkpoint Checkpoint
	Data       DataType
	// Filter is the data type's filter, canonical JSON ("" for none): the
	// state of a data type made here records it.
	Filter string
}

// Load returns the data type's state.
func (c StreamCheckpoint) Load(ctx context.Context) (State, error) {
	st, err := c.Checkpoint.Load(ctx)
	if err != nil {
		return State{}, err
	}
	s := *st.Stream(c.Data)
	if s.Filter == "" {
		s.Filter = c.Filter
	}
	return s.withOwnLanes(), nil
}

// Update changes the data type's state with fn, in one update of the
// whole.
func (c StreamCheckpoint) Update(ctx context.Context, fn func(*State) error) error {
	return c.Checkpoint.Update(ctx, func(st *State) error {
		s := st.Stream(c.Data)
		if s.Filter == "" {
			s.Filter = c.Filter
		}
		own := *s
		own.Streams = slices.Clone(own.Streams) // fn sees its own copy of the list
		if err := fn(&own); err != nil {
			return err
		}
		own.Streams = s.Streams // one data type's update never changes another's
		if s != st {
			own.UpdatedAt = time.Now().UTC() // the checkpoint stamps its own state
		}
		*s = own
		return nil
	})
}

var _ Checkpoint = StreamCheckpoint{}
