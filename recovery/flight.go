package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
)

// errRecord marks a failure to write the checkpoint around a batch: the
// run ends on it as it is, without recording it as the run's failure.
var errRecord = errors.New("record the batch in flight")

// flight is one batch's trip to the sink: it records the batch in flight,
// sends what the sink lacks of it, and records an Acknowledger's
// acknowledgements as they come.
type flight struct {
	r        *Replayer
	save     context.Context    // for checkpoint writes: never cancelled
	lane     func(*State) *Lane // the lane whose batch it is
	batch    []Activity         // the page's batch
	prepared Prepared           // what the sink prepared of batch; nil once batch is not what is sent
	requests func() int64       // the API requests made and not recorded: recorded with the batch
	sent     []Activity         // what of batch was handed to the sink
}

// deliver records the batch in flight, sends it and returns once the sink
// confirmed it: how many activities of the batch are now in the sink
// (all), and how many were sent again. left is the batch a dead run left in
// flight, if any (the same page): only what the sink lacks of it is sent.
func (fl *flight) deliver(ctx, sendCtx context.Context, left InFlight, position string, log *slog.Logger) (delivered, resent int, err error) {
	rest, keep := fl.batch, false
	if left.Activities > 0 {
		if rest, resent, keep, err = fl.resume(ctx, left, position, log); err != nil {
			return 0, 0, err
		}
		if len(rest) != len(fl.batch) {
			fl.prepared = nil // it was made for the whole batch
		}
	}
	rec := left
	if !keep {
		if rec, err = fl.record(ctx); err != nil {
			return 0, resent, err
		}
	}
	err = fl.r.Checkpoint.Update(fl.save, func(s *State) error {
		fl.lane(s).InFlight = rec
		s.APIRequests += fl.requests()
		return nil
	})
	if err != nil {
		return 0, resent, fmt.Errorf("%w: %w", errRecord, err)
	}
	fl.sent = rest
	if len(rest) == 0 {
		return len(fl.batch), resent, nil
	}
	b := Batch{Activities: rest, Prepared: fl.prepared}
	var acks *ackRecorder
	if _, ok := fl.r.Sink.(Acknowledger); ok {
		// rest is then the batch from its first unacknowledged activity on.
		acks = fl.recordAcks(len(fl.batch)-len(rest), int(rec.Window))
		b.Acks = acks
	}
	again, err := fl.r.Sink.Send(sendCtx, b)
	resent += again
	if acks != nil {
		if rerr := acks.stop(); rerr != nil && err == nil {
			return 0, resent, fmt.Errorf("%w: %w", errRecord, rerr)
		}
	}
	if err != nil {
		return 0, resent, err
	}
	return len(fl.batch), resent, nil
}

// record is the in-flight record of a batch sent whole: with where it
// starts in a Resumer, and the window of an Acknowledger.
func (fl *flight) record(ctx context.Context) (InFlight, error) {
	rec := InFlight{Activities: int64(len(fl.batch)), FirstID: fl.batch[0].ID}
	if rs, ok := fl.r.Sink.(Resumer); ok {
		mark, err := rs.Mark(ctx)
		if err != nil {
			return rec, fmt.Errorf("mark where the batch starts in the sink: %w", err)
		}
		rec.Mark = mark
	}
	if ak, ok := fl.r.Sink.(Acknowledger); ok {
		rec.Window = int64(ak.AckWindow())
	}
	return rec, nil
}

// resume works out what the sink lacks of the batch a dead run left in
// flight: rest, to send, and again, how many of rest the dead run may have
// sent already. keep says left still describes the batch, and is the
// record of this attempt: a second crash then finds the same.
func (fl *flight) resume(ctx context.Context, left InFlight, position string, log *slog.Logger) (rest []Activity, again int, keep bool, err error) {
	batch := fl.batch
	rest, again = batch, len(batch)
	switch rs, resumer := fl.r.Sink.(Resumer); {
	case left.Mark != nil && resumer:
		held, err := rs.Resume(ctx, left.Mark)
		if err != nil {
			return nil, 0, false, fmt.Errorf("read back what the sink holds of the batch in flight: %w", err)
		}
		if held != nil {
			rest, again, keep = nil, 0, true
			for _, a := range batch {
				if !held[a.ID] {
					rest = append(rest, a)
				}
			}
		}
	case left.Window > 0:
		n := int(left.Acked)
		if n > len(batch) || batch[0].ID != left.FirstID || n > 0 && batch[n-1].ID != left.AckedID {
			log.Warn("the page fetched again does not start as the batch the previous run left in flight did; it is sent again whole",
				"position", position)
			break
		}
		rest, keep = batch[n:], true
		again = min(len(rest), int(left.Window))
	}
	if !keep {
		log.Warn("the previous run stopped before the sink confirmed its last batch; that batch is sent again",
			"activities", len(batch), "position", position)
		return rest, again, false, nil
	}
	log.Warn("the previous run stopped before the sink confirmed its last batch; what the sink lacks of it is sent",
		"activities", len(batch), "held", len(batch)-len(rest), "sent_again", again, "position", position)
	return rest, again, true, nil
}

// recordAcks starts recording the acknowledgements of the batch's
// activities from offset on. A write (an fsync) is made once a quarter of
// the sink's window is acknowledged and not recorded: the sink, which runs
// at most window past the record, then seldom waits for one.
func (fl *flight) recordAcks(offset, window int) *ackRecorder {
	a := &ackRecorder{every: max(1, window/4), grown: make(chan struct{}), wake: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{})}
	go a.run(func(n int) error {
		return fl.r.Checkpoint.Update(fl.save, func(s *State) error {
			f := &fl.lane(s).InFlight
			f.Acked, f.AckedID = int64(offset+n), fl.batch[offset+n-1].ID
			s.APIRequests += fl.requests()
			return nil
		})
	})
	return a
}

// ackRecorder is the Acks of a batch: it writes the acknowledgements into
// the in-flight record as they come, one checkpoint write at a time, beside
// Send, which reads back how many are recorded.
type ackRecorder struct {
	every    int // acknowledgements not recorded that make a write
	mu       sync.Mutex
	acked    int
	recorded int
	grown    chan struct{} // closed when recorded grows, then replaced
	err      error         // the write that failed: recording stopped
	wake     chan struct{} // one slot: acked grew
	quit     chan struct{}
	done     chan struct{}
}

func (a *ackRecorder) Acked(n int) {
	a.mu.Lock()
	a.acked = max(a.acked, n)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

func (a *ackRecorder) Recorded() (int, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.recorded, a.grown
}

func (a *ackRecorder) run(write func(n int) error) {
	defer close(a.done)
	for {
		select {
		case <-a.wake:
		case <-a.quit:
			return
		}
		a.mu.Lock()
		n, before := a.acked, a.recorded
		a.mu.Unlock()
		if n-before < a.every {
			continue
		}
		err := write(n)
		a.mu.Lock()
		if err != nil {
			// The sink must not wait for records that will not come; the
			// run ends on the error once Send returns.
			a.err, n = err, math.MaxInt
		}
		a.recorded = n
		close(a.grown)
		a.grown = make(chan struct{})
		a.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// stop ends the recording and returns the write that failed, if one did.
func (a *ackRecorder) stop() error {
	close(a.quit)
	<-a.done
	return a.err
}
