package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Replayer moves one window's activities from a Source to a Sink. The
// checkpoint advances only after the sink has accepted everything before the
// new position, so a crash at any point loses nothing and re-sends at most
// the batch that was in flight.
type Replayer struct {
	Source     Source
	Sink       Sink
	Checkpoint Checkpoint
	// Exclude, when set, reports ids the SIEM already holds; those are
	// counted as skipped and not sent.
	Exclude func(id string) bool
	Logger  *slog.Logger
	// Redactor hides the secrets of the run (the source adds them) in the
	// last error the checkpoint records; nil escapes it only.
	Redactor *Redactor
	// Progress, when set, is told after every delivered page.
	Progress func(State)
	// Stop, once closed, asks for a planned stop (--max-duration, a
	// signal): no page is fetched or sent after it, and the batch in flight
	// is given Grace to be confirmed, so that the next run sends nothing of
	// it again. Nil never stops. The ctx given to Run cuts everything at
	// once (a second signal).
	Stop <-chan struct{}
	// Grace bounds how long a planned stop waits for the batch in flight;
	// zero cuts it at once.
	Grace time.Duration
}

// Result sums up a run.
type Result struct {
	State            State
	AlreadyCompleted bool  // the checkpoint was completed before this run: nothing was done
	Sent             int64 // delivered by this run
	Skipped          int64 // excluded by this run
	Resent           int64 // sent again by this run (a dead run's batch, reconnects): the SIEM may hold them twice
}

// Run recovers the window from where the checkpoint stands to its end, then
// marks the checkpoint completed. A planned stop (Stop) ends it after the
// batch in flight, a cancelled ctx at once; the progress made is kept and
// the error wraps ErrStopped.
func (r *Replayer) Run(ctx context.Context) (Result, error) {
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var res Result
	st, err := r.Checkpoint.Load(ctx)
	if err != nil {
		return res, err
	}
	if st.State == StateCompleted {
		res.State, res.AlreadyCompleted = st, true
		return res, nil
	}
	// Writes must survive the cancellation that stops the run.
	save := context.WithoutCancel(ctx)
	err = r.Checkpoint.Update(save, func(s *State) error {
		s.Runs++
		s.State = StateRunning
		if s.InFlight > 0 {
			log.Warn("the previous run stopped before the sink confirmed its last batch; that batch is sent again",
				"activities", s.InFlight, "position", s.Cursor.String())
			s.Resent += s.InFlight
			res.Resent += s.InFlight
			s.InFlight = 0
		}
		st = *s
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("start run: %w", err)
	}
	log.Info("recovering", "window", st.Window.String(), "source", st.Source, "position", st.Cursor.String(),
		"sent_before", st.Sent)

	// The next page is fetched while the sink takes the current one, so
	// decoding and delivery overlap; at most one page is read ahead.
	sendCtx, fetchCtx, release := r.stopContexts(ctx)
	var next <-chan fetched
	defer func() {
		release()
		if next != nil {
			<-next // never leave a fetch running behind the caller
		}
	}()
	next = r.prefetch(fetchCtx, st.Cursor)
	for {
		f := <-next
		next = nil
		page, err := f.page, f.err
		if err != nil {
			return r.fail(ctx, &res, fmt.Errorf("fetch the page %s: %w", st.Cursor, err), page.Requests)
		}
		if r.stopAsked() { // a page read before the stop is not sent after it
			return r.fail(ctx, &res, nil, page.Requests)
		}
		if !page.Last {
			next = r.prefetch(fetchCtx, page.Next)
		}
		batch, skipped := f.batch, f.skipped
		if len(batch) > 0 {
			err := r.Checkpoint.Update(save, func(s *State) error {
				s.InFlight = int64(len(batch))
				s.APIRequests += int64(page.Requests)
				return nil
			})
			if err != nil {
				return res, fmt.Errorf("record batch in flight: %w", err)
			}
			page.Requests = 0 // counted
			resent, err := r.Sink.Send(sendCtx, batch)
			if err != nil {
				return r.fail(ctx, &res, fmt.Errorf("send %d activities %s: %w", len(batch), st.Cursor, err), 0)
			}
			res.Resent += int64(resent)
			res.Sent += int64(len(batch))
			st.Resent += int64(resent)
		}
		res.Skipped += skipped
		now := time.Now().UTC()
		err = r.Checkpoint.Update(save, func(s *State) error {
			s.Cursor = page.Next
			s.Progress = page.Progress
			s.Sent += int64(len(batch))
			s.Skipped += skipped
			s.Resent = st.Resent
			s.APIRequests += int64(page.Requests)
			s.InFlight = 0
			s.LastSuccessAt = now
			if page.Last {
				s.State = StateCompleted
				s.Progress = 1
				s.CompletedAt = now
			}
			st = *s
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("advance checkpoint to %s: %w", page.Next, err)
		}
		if r.Progress != nil {
			r.Progress(st)
		}
		log.Debug("page delivered", "activities", len(batch), "skipped", skipped, "position", st.Cursor.String())
		if page.Last {
			res.State = st
			log.Info("window recovered: checkpoint completed and disabled", "sent", st.Sent, "skipped", st.Skipped,
				"sent_again", st.Resent, "api_requests", st.APIRequests)
			return res, nil
		}
	}
}

// stopContexts returns the contexts a planned stop ends in two steps:
// fetch at the stop, so that no page is read after it; send Grace later,
// so that the batch in flight can be confirmed. Both end with ctx. release
// ends them and the goroutine that watches Stop.
func (r *Replayer) stopContexts(ctx context.Context) (send, fetch context.Context, release func()) {
	send, cutSend := context.WithCancel(ctx)
	fetch, cutFetch := context.WithCancel(send)
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-r.Stop:
		case <-done:
			return
		}
		cutFetch()
		grace := time.NewTimer(r.Grace)
		defer grace.Stop()
		select {
		case <-grace.C:
			cutSend()
		case <-done:
		}
	}()
	return send, fetch, func() {
		close(done)
		<-exited
		cutFetch()
		cutSend()
	}
}

// stopAsked reports whether a planned stop was asked.
func (r *Replayer) stopAsked() bool {
	select {
	case <-r.Stop:
		return true
	default:
		return false
	}
}

// fetched is the outcome of one Fetch: the page, and the batch to send
// from it once the activities the SIEM holds are left out.
type fetched struct {
	page    Page
	batch   []Activity
	skipped int64
	err     error
}

// prefetch fetches the page at cur in the background, drops what Exclude
// names, and has the sink prepare the batch if it can.
func (r *Replayer) prefetch(ctx context.Context, cur Cursor) <-chan fetched {
	ch := make(chan fetched, 1)
	go func() {
		page, err := r.Source.Fetch(ctx, cur)
		f := fetched{page: page, batch: page.Activities, err: err}
		if err == nil && r.Exclude != nil {
			kept := f.batch[:0]
			for _, a := range f.batch {
				if r.Exclude(a.ID) {
					f.skipped++
					continue
				}
				kept = append(kept, a)
			}
			f.batch = kept
		}
		if p, ok := r.Sink.(Preparer); ok && err == nil && len(f.batch) > 0 {
			p.Prepare(f.batch)
		}
		ch <- f
	}()
	return ch
}

// fail records why the run ended: stopped (a planned stop, or ctx
// cancelled; cause may then be nil) or failed. A batch the sink did not
// confirm stays in flight: the next run sends it again and counts it as
// possibly duplicated.
func (r *Replayer) fail(ctx context.Context, res *Result, cause error, requests int) (Result, error) {
	stopped := r.stopAsked() || ctx.Err() != nil
	err := r.Checkpoint.Update(context.WithoutCancel(ctx), func(s *State) error {
		s.APIRequests += int64(requests)
		if stopped {
			s.State = StateStopped
		} else {
			s.State = StateFailed
			s.LastError = r.Redactor.Redacted(cause.Error())
			s.LastErrorAt = time.Now().UTC()
		}
		res.State = *s
		return nil
	})
	if err != nil {
		return *res, errors.Join(cause, fmt.Errorf("record the failure in the checkpoint: %w", err))
	}
	if stopped {
		if n := res.State.InFlight; n > 0 && r.Logger != nil {
			r.Logger.Warn("stopped before the sink confirmed the batch in flight; the next run sends it again", "activities", n)
		}
		return *res, Problemf(ErrStopped, "re-run the same command to resume",
			"stopped %s with %.1f%% of the window done (%d sent in all); progress is saved", res.State.Cursor, 100*res.State.Progress, res.State.Sent)
	}
	return *res, cause
}

// Count pages through src from the start of the window and returns how many
// activities it yields and how many API requests that took. It sends
// nothing and records nothing (--dry-run, verify).
func Count(ctx context.Context, src Source, each func(Activity)) (activities, requests int64, err error) {
	var cur Cursor
	for {
		page, err := src.Fetch(ctx, cur)
		requests += int64(page.Requests)
		if err != nil {
			return activities, requests, fmt.Errorf("fetch the page %s: %w", cur, err)
		}
		activities += int64(len(page.Activities))
		if each != nil {
			for _, a := range page.Activities {
				each(a)
			}
		}
		if page.Last {
			return activities, requests, nil
		}
		cur = page.Next
	}
}
