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
	// Exclude, when set, holds the ids the SIEM already has: those are
	// counted as skipped and not sent. On a completed window it asks for a
	// top-up pass that sends the rest (State.Plan); ExcludeFile names its
	// file for status.
	Exclude     *IDSet
	ExcludeFile string
	Logger      *slog.Logger
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
	AlreadyCompleted bool  // nothing to do: the window (and any pass asked for) was completed before this run
	TopUp            bool  // this run worked on a top-up pass over the completed window
	Sent             int64 // delivered by this run
	Skipped          int64 // excluded by this run
	Resent           int64 // sent again by this run (a dead run's batch, reconnects): the SIEM may hold them twice
}

// Current is the pass a run works on now, or worked on last: the current
// top-up when there is one, else the window's own pass.
func (st *State) Current() *Pass {
	if t := st.TopUp(); t != nil {
		return t
	}
	return &st.Pass
}

// Run recovers the window from where the checkpoint stands to its end, then
// marks the checkpoint completed; on a completed window with Exclude set it
// runs (or resumes) a top-up pass instead (State.Plan). A planned stop
// (Stop) ends it after the batch in flight, a cancelled ctx at once; the
// progress made is kept and the error wraps ErrStopped.
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
	excluded := r.Exclude.Fingerprint()
	plan := st.Plan(excluded)
	if plan == PlanNothing {
		res.State, res.AlreadyCompleted = st, true
		return res, nil
	}
	res.TopUp = plan == PlanTopUp
	if !res.TopUp {
		if err := r.count(ctx, &st); err != nil {
			return r.fail(ctx, &res, false, err, 0)
		}
	}
	// Writes must survive the cancellation that stops the run.
	save := context.WithoutCancel(ctx)
	err = r.Checkpoint.Update(save, func(s *State) error {
		s.Runs++
		s.Total = st.Total
		s.APIRequests = st.APIRequests
		res.Resent += r.begin(s, res.TopUp, excluded, log)
		st = *s
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("start run: %w", err)
	}
	pass := func(s *State) *Pass { return s.pass(res.TopUp) }
	p := pass(&st)
	log.Info("recovering", "window", st.Window.String(), "source", st.Source, "position", p.Position(),
		"sent_before", p.Sent)

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
	next = r.prefetch(fetchCtx, p.Cursor)
	for {
		f := <-next
		next = nil
		page, err := f.page, f.err
		if err != nil {
			return r.fail(ctx, &res, res.TopUp, fmt.Errorf("fetch the page at %s: %w", pass(&st).Position(), err), page.Requests)
		}
		if r.stopAsked() { // a page read before the stop is not sent after it
			return r.fail(ctx, &res, res.TopUp, nil, page.Requests)
		}
		if !page.Last {
			next = r.prefetch(fetchCtx, page.Next)
		}
		batch, skipped := f.batch, f.skipped
		if len(batch) > 0 {
			err := r.Checkpoint.Update(save, func(s *State) error {
				pass(s).InFlight = int64(len(batch))
				s.APIRequests += int64(page.Requests)
				return nil
			})
			if err != nil {
				return res, fmt.Errorf("record batch in flight: %w", err)
			}
			page.Requests = 0 // counted
			resent, err := r.Sink.Send(sendCtx, batch)
			if err != nil {
				return r.fail(ctx, &res, res.TopUp, fmt.Errorf("send %d activities at %s: %w", len(batch), pass(&st).Position(), err), 0)
			}
			res.Resent += int64(resent)
			res.Sent += int64(len(batch))
			pass(&st).Resent += int64(resent)
		}
		res.Skipped += skipped
		now := time.Now().UTC()
		resent := pass(&st).Resent
		err = r.Checkpoint.Update(save, func(s *State) error {
			p := pass(s)
			p.Cursor = page.Next
			p.Progress = page.Progress
			p.Reached = max(p.Reached, f.reached)
			p.Sent += int64(len(batch))
			p.Skipped += skipped
			p.Resent = resent
			p.InFlight = 0
			p.LastSuccessAt = now
			s.APIRequests += int64(page.Requests)
			if page.Last {
				p.State = StateCompleted
				p.Progress = 1
				p.CompletedAt = now
			}
			st = *s
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("advance checkpoint past %s: %w", pass(&st).Position(), err)
		}
		if r.Progress != nil {
			r.Progress(st)
		}
		p := pass(&st)
		log.Debug("page delivered", "activities", len(batch), "skipped", skipped, "position", p.Position())
		if page.Last {
			res.State = st
			what := "window recovered: checkpoint completed and disabled"
			if res.TopUp {
				what = "top-up completed: the window is complete again"
			}
			log.Info(what, "sent", p.Sent, "skipped", p.Skipped, "sent_again", p.Resent, "api_requests", st.APIRequests)
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

// pass is the pass a run works on: the window's own, or the latest top-up.
func (st *State) pass(topUp bool) *Pass {
	if topUp {
		return &st.TopUps[len(st.TopUps)-1]
	}
	return &st.Pass
}

// begin marks the start of a run on its pass (the window's own, or a
// top-up, begun or resumed) and returns the activities of a batch the last
// run left unconfirmed, which this run sends again.
func (r *Replayer) begin(s *State, topUp bool, excluded string, log *slog.Logger) (resent int64) {
	p := &s.Pass
	switch {
	case topUp:
		var resumed bool
		if p, resumed = s.topUpFor(excluded, r.ExcludeFile, time.Now().UTC()); !resumed {
			log.Info("the window was completed; sweeping it again to send what the SIEM lacks (top-up)",
				"ids_file", r.ExcludeFile, "ids", r.Exclude.Len())
		}
	case p.Cursor.IsZero() && p.Sent+p.Skipped+p.InFlight == 0:
		p.Excluded, p.IDsFile = excluded, r.ExcludeFile
	case p.Excluded != excluded:
		// Runs of one pass left out different ids: no single file says
		// what it skipped, so none will be taken for done.
		p.Excluded, p.IDsFile = "", ""
	}
	p.State = StateRunning
	if p.InFlight > 0 {
		log.Warn("the previous run stopped before the sink confirmed its last batch; that batch is sent again",
			"activities", p.InFlight, "position", p.Position())
		p.Resent += p.InFlight
		resent, p.InFlight = p.InFlight, 0
	}
	p.RunStartedAt = time.Now().UTC()
	p.RunStartedDone, _ = s.Done(*p)
	p.RunStartedSent = p.Sent
	return resent
}

// count asks the source for the window's total once per checkpoint, when
// it can answer in one request: the percent done then counts activities.
func (r *Replayer) count(ctx context.Context, st *State) error {
	c, ok := r.Source.(Counter)
	if !ok || st.Total != nil {
		return nil
	}
	n, requests, err := c.Count(ctx)
	st.APIRequests += int64(requests)
	if errors.Is(err, ErrNoTotal) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("count the window's activities: %w", err)
	}
	st.Total = &n
	return nil
}

// fetched is the outcome of one Fetch: the page, and the batch to send
// from it once the activities the SIEM holds are left out.
type fetched struct {
	page    Page
	batch   []Activity
	skipped int64
	reached int64 // the latest activity time of the page, sent or not
	err     error
}

// prefetch fetches the page at cur in the background, drops what Exclude
// names, and has the sink prepare the batch if it can.
func (r *Replayer) prefetch(ctx context.Context, cur Cursor) <-chan fetched {
	ch := make(chan fetched, 1)
	go func() {
		page, err := r.Source.Fetch(ctx, cur)
		f := fetched{page: page, batch: page.Activities, err: err}
		for _, a := range page.Activities {
			f.reached = max(f.reached, a.Timestamp)
		}
		if err == nil && r.Exclude != nil {
			kept := f.batch[:0]
			for _, a := range f.batch {
				if r.Exclude.Contains(a.ID) {
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
func (r *Replayer) fail(ctx context.Context, res *Result, topUp bool, cause error, requests int) (Result, error) {
	stopped := r.stopAsked() || ctx.Err() != nil
	var p Pass
	err := r.Checkpoint.Update(context.WithoutCancel(ctx), func(s *State) error {
		s.APIRequests += int64(requests)
		cur := s.pass(topUp)
		if stopped {
			cur.State = StateStopped
		} else {
			cur.State = StateFailed
			s.LastError = r.Redactor.Redacted(cause.Error())
			s.LastErrorAt = time.Now().UTC()
		}
		res.State, p = *s, *cur
		return nil
	})
	if err != nil {
		return *res, errors.Join(cause, fmt.Errorf("record the failure in the checkpoint: %w", err))
	}
	if stopped {
		if n := p.InFlight; n > 0 && r.Logger != nil {
			r.Logger.Warn("stopped before the sink confirmed the batch in flight; the next run sends it again", "activities", n)
		}
		done := res.State.ProgressOf(p, time.Now(), false)
		what := "of the window done"
		if topUp {
			what = "of the top-up done"
		}
		return *res, Problemf(ErrStopped, "re-run the same command to resume",
			"stopped at %s with %.1f%% %s (%d sent in all); progress is saved", p.Position(), done.Percent, what, p.Sent)
	}
	return *res, cause
}

// Counter is a Source that can count the window's activities without
// paging through them: the MCAS API's plain answers carry the total, so a
// count costs one request.
type Counter interface {
	// Count returns the number of the window's activities that match the
	// filter, and the requests that took. An answer without a total is
	// ErrNoTotal.
	Count(ctx context.Context) (activities int64, requests int, err error)
}

// ErrNoTotal: the source's answer does not say how many activities the
// window holds; they can only be counted by paging through it.
var ErrNoTotal = errors.New("the answer carries no total")

// Count returns how many activities the window holds at src, and the API
// requests that took: one when src is a Counter, else a Scan of the whole
// window (told to progress after each page, when set). It sends nothing and
// records nothing (--dry-run, verify, check).
func Count(ctx context.Context, src Source, progress func(Page)) (activities, requests int64, err error) {
	if c, ok := src.(Counter); ok {
		n, req, err := c.Count(ctx)
		if !errors.Is(err, ErrNoTotal) {
			return n, int64(req), err
		}
		requests = int64(req)
	}
	n, more, err := Scan(ctx, src, nil, progress)
	return n, requests + more, err
}

// Scan pages through src from the start of the window, telling each every
// activity and progress every page, and returns how many activities it
// yielded and how many API requests that took. It sends nothing and
// records nothing (verify --received, which needs the ids).
func Scan(ctx context.Context, src Source, each func(Activity), progress func(Page)) (activities, requests int64, err error) {
	var cur Cursor
	for {
		page, err := src.Fetch(ctx, cur)
		requests += int64(page.Requests)
		if err != nil {
			return activities, requests, fmt.Errorf("fetch the page after %d activities: %w", activities, err)
		}
		activities += int64(len(page.Activities))
		if each != nil {
			for _, a := range page.Activities {
				each(a)
			}
		}
		if progress != nil {
			progress(page)
		}
		if page.Last {
			return activities, requests, nil
		}
		cur = page.Next
	}
}
