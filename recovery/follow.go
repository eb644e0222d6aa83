package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Follow is what the checkpoint of a feed (follow) keeps of one data
// type, beside the pass of its current cycle: where the feed stands in
// time, and what its cycles delivered. A feed's window runs from its first
// start to its horizon, which each cycle moves to the present (less the
// margin); its pass reads the part the cycle added.
type Follow struct {
	// Start is where the feed began (--start of its first run), Unix ms;
	// 0 until its first cycle.
	Start int64 `json:"start"`
	// Horizon is the time (Unix ms, on the data type's field: created for
	// activities, date for alerts) before which everything was delivered:
	// the end of the last cycle completed.
	Horizon int64 `json:"horizon"`
	// Cycles counts the cycles completed.
	Cycles int64 `json:"cycles"`
	// Sent, Skipped and Resent sum the cycles before the current one (its
	// pass counts its own).
	Sent    int64 `json:"sent"`
	Skipped int64 `json:"skipped"`
	Resent  int64 `json:"resent"`
	// LastCycleAt is when a cycle last completed: the API answered and
	// the sink took all it was given. A feed with nothing new still
	// completes its cycles, so this is its heartbeat; so is a page
	// delivered by the cycle in progress (the pass's LastSuccessAt), for
	// a cycle that catches up on days may take hours (status's
	// connection_error and disconnected age from the later of the two).
	LastCycleAt time.Time `json:"last_cycle_at,omitzero"`
	// Poll and Margin are --poll and --settle-margin as of the latest run.
	Poll   time.Duration `json:"poll"`
	Margin time.Duration `json:"margin"`
}

// Sent is everything the feed of this data type delivered: its cycles
// before the current one, and the current one's pass.
func (st State) FeedSent() int64 {
	if st.Follow == nil {
		return st.Sent
	}
	return st.Follow.Sent + st.Sent
}

// FeedHorizon is where the feed of this data type stands: the time before
// which everything was delivered. A cycle whose pass completed counts,
// even if the run died before it noted so in Follow.
func (st State) FeedHorizon() int64 {
	if st.Follow == nil {
		return 0
	}
	h := st.Follow.Horizon
	if st.State == StateCompleted {
		h = max(h, st.Pass.Scope.Window.End)
	}
	return h
}

// Lag is how far behind the present the feed of this data type is at now.
func (st State) Lag(now time.Time) time.Duration {
	h := st.FeedHorizon()
	if h == 0 {
		return 0
	}
	return max(now.Sub(time.UnixMilli(h)), 0)
}

// The states of a feed in status (the SIEM agent's, SPEC §8).
const (
	FeedRunning         = "running"          // caught up: the lag is within margin + poll + a page's time
	FeedCatchingUp      = "catching_up"      // reading what it is behind
	FeedConnectionError = "connection_error" // no cycle completed, no page delivered, for over 2 h
	FeedDisconnected    = "disconnected"     // the same for over 12 h
)

// The ages of the last cycle after which a feed shows connection_error
// and disconnected, as the MCAS portal showed its agents.
const (
	FeedConnectionErrorAfter = 2 * time.Hour
	FeedDisconnectedAfter    = 12 * time.Hour
)

// FeedState is the state of a feed of this data type at now, as status
// and the metrics show it: failed when no run is active and the last
// ended on an error; else disconnected or connection_error when no cycle
// completed and no page was delivered for 12 h or 2 h, whether a run is
// active or not (a feed that cron starts with --once, each run stopping
// at --max-duration with the SIEM down, must not look merely stopped, as
// the agent showed in the portal); else, with no run active, stopped (a
// planned stop, or a run that died); while one is, catching_up when it
// lags more than its margin, poll and a minute (a page's time), running
// when not.
func (st State) FeedState(now time.Time, active bool) string {
	if !active && st.State == StateFailed {
		return StateFailed
	}
	f := st.Follow
	if f == nil {
		if !active {
			return StateStopped
		}
		return StatePending
	}
	last := f.LastCycleAt
	if st.LastSuccessAt.After(last) {
		last = st.LastSuccessAt // a page delivered in the cycle in progress
	}
	if last.IsZero() {
		last = st.CreatedAt
	}
	switch age := now.Sub(last); {
	case age > FeedDisconnectedAfter:
		return FeedDisconnected
	case age > FeedConnectionErrorAfter:
		return FeedConnectionError
	case !active:
		return StateStopped
	}
	if st.Lag(now) > f.Margin+f.Poll+time.Minute {
		return FeedCatchingUp
	}
	return FeedRunning
}

// Feed is one data type a Follower keeps fed: its source, which reads the
// scope each cycle gives it (a Scoped source), its checkpoint (the data
// type's, in the feed's one checkpoint), and the time its cycles move on:
// created for activities (what MCAS saved, in the order it saved them,
// as the agent streamed them), date for alerts (their one time).
type Feed struct {
	Data       DataType
	Source     Source
	Checkpoint Checkpoint
	By         TimeField
}

// Follower keeps a SIEM fed, as the SIEM agent did: in cycles, each a pass
// per data type from its horizon to the present less Margin, then a sleep
// of Poll once caught up. A cycle is a recovery's pass over the minutes it
// adds (the same delivery, the same checkpoint rules), so what holds for a
// recovery holds for a feed: each record once into a file across kill -9,
// a sink down waited for, too many API failures in a row an error. It
// holds nothing that grows with time: a cycle's pass replaces the last's,
// whose counts are folded into the data type's Follow.
type Follower struct {
	Feeds []Feed
	Sink  Sink
	// Start is where a feed's first cycle begins (Unix ms); a feed that has
	// begun goes on from its horizon.
	Start int64
	// Poll is the sleep between cycles once caught up; Margin is how long
	// after saving a record MCAS is trusted to list it (what was saved
	// later is left to the next cycle).
	Poll, Margin time.Duration
	// Once catches up and returns (follow --once, for a schedule).
	Once bool
	// Lanes is the scan lanes of a cycle's pass (1 by default: a cycle is
	// a minute's records).
	Lanes int
	// Exclude are the ids the SIEM holds already (switching from the agent
	// without a duplicate at the seam).
	Exclude     *IDSet
	ExcludeFile string
	Logger      *slog.Logger
	Redactor    *Redactor
	// Stop asks for a planned stop (see Replayer.Stop); Grace bounds the
	// batch in flight after it.
	Stop  <-chan struct{}
	Grace time.Duration
	// SinkName is the sink as the checkpoint records it.
	SinkName string
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Cycled, when set, is told after each data type's cycle: its state
	// (its Follow, its counters) and how much the cycle sent.
	Cycled func(d DataType, st State, sent int64)
	// Progress, when set, is told after every delivered page.
	Progress func(State)
}

func (f *Follower) now() time.Time {
	if f.Now == nil {
		return time.Now().UTC()
	}
	return f.Now().UTC()
}

// Run feeds until a planned stop (Stop: its error wraps ErrStopped, the
// batch in flight confirmed first), ctx ends, a failure no retry mends,
// or, with Once, the feeds are caught up (nil).
func (f *Follower) Run(ctx context.Context) error {
	log := f.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// With Once, the present to catch up to is the one of the start: a
	// cycle that outlasts the poll (a slow API, a rate limit spacing the
	// requests further apart than the poll) would otherwise leave every
	// next one behind the clock, and the run would never end.
	target := Horizon(f.now(), f.Margin)
	for {
		behind := false
		for _, feed := range f.Feeds {
			reached, err := f.cycle(ctx, feed, log)
			if err != nil {
				return err
			}
			if f.Once {
				behind = behind || reached < target
			} else {
				// The cycle took longer than a poll: what MCAS saved
				// meanwhile is read at once, without a sleep.
				behind = behind || Horizon(f.now(), f.Margin)-reached > f.Poll.Milliseconds()
			}
		}
		if behind {
			continue
		}
		if f.Once {
			return nil
		}
		t := time.NewTimer(f.Poll)
		select {
		case <-t.C:
		case <-f.Stop:
			t.Stop()
			return Problemf(ErrStopped, "re-run the same command to go on from where it stands", "stopped between cycles, caught up")
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("follow: %w", ctx.Err())
		}
	}
}

// cycle makes one cycle of feed: it resumes a pass an earlier run left
// unfinished, or begins the next from the feed's horizon to the present
// less the margin (none when that is no later). It returns the feed's
// horizon once done: everything saved before it was delivered.
func (f *Follower) cycle(ctx context.Context, feed Feed, log *slog.Logger) (reached int64, err error) {
	st, err := feed.Checkpoint.Load(ctx)
	if err != nil {
		return 0, err
	}
	start := f.now()
	horizon := Horizon(start, f.Margin)
	if st.Follow == nil || st.Follow.Start == 0 || !unfinished(st) {
		from := st.FeedHorizon()
		if st.Follow == nil || st.Follow.Start == 0 {
			from = f.Start
		}
		if horizon <= from {
			return from, nil // nothing saved since that MCAS lists yet
		}
		err := feed.Checkpoint.Update(ctx, func(s *State) error {
			next(s, feed, f, from, horizon)
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("begin a cycle: %w", err)
		}
	}
	r := &Replayer{Source: feed.Source, Sink: f.Sink, Checkpoint: feed.Checkpoint, Logger: slog.New(demoted{log.Handler()}),
		Redactor: f.Redactor, Stop: f.Stop, Grace: f.Grace, Exclude: f.Exclude, ExcludeFile: f.ExcludeFile,
		Lanes: max(f.Lanes, 1), NoCount: true, SinkName: f.SinkName, Now: f.Now, Progress: f.Progress}
	res, err := r.Run(ctx)
	if errors.Is(err, ErrStopped) {
		return 0, f.stopped(ctx, feed, err)
	}
	if err != nil {
		return 0, err
	}
	done := f.now()
	err = feed.Checkpoint.Update(ctx, func(s *State) error {
		if s.Follow != nil {
			s.Follow.Horizon = s.FeedHorizon()
			s.Follow.Cycles++
			s.Follow.LastCycleAt = done
		}
		st = *s
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("end a cycle: %w", err)
	}
	if res.Sent > 0 {
		log.Info("cycle done", "data", string(feed.Data), "sent", res.Sent, "skipped", res.Skipped, "sent_again", res.Resent,
			"horizon", FormatMillis(st.FeedHorizon()), "lag", st.Lag(done).Round(time.Second), "sent_total", st.FeedSent())
	}
	if f.Cycled != nil {
		f.Cycled(feed.Data, st, res.Sent)
	}
	return st.FeedHorizon(), nil
}

// stopped is the error of a planned stop during a cycle of feed: where
// the feed stands, not where the cycle's pass does (a recovery's "0.0% of
// the window done, 0 sent in all" says nothing of a feed that sent for
// months). err is the pass's stop, kept when the state cannot be read.
func (f *Follower) stopped(ctx context.Context, feed Feed, err error) error {
	st, lerr := feed.Checkpoint.Load(context.WithoutCancel(ctx))
	if lerr != nil {
		return err
	}
	return Problemf(ErrStopped, "re-run the same command to go on from where it stands",
		"stopped during a cycle of %s: everything before %s (by %s) is delivered, %d sent since the feed began; progress is saved",
		feed.Data, FormatMillis(st.FeedHorizon()), feed.By, st.FeedSent())
}

// unfinished tells whether st's pass is a cycle an earlier run began and
// did not complete.
func unfinished(st State) bool {
	return st.State != StateCompleted && st.Pass.Scope.Window.End > st.Pass.Scope.Window.Start
}

// next makes s's pass the cycle from to horizon, folding the counts of the
// cycle before into s.Follow.
func next(s *State, feed Feed, f *Follower, from, horizon int64) {
	if s.Follow == nil {
		s.Follow = &Follow{}
	}
	fl := s.Follow
	if fl.Start == 0 {
		fl.Start, fl.Horizon = from, from
	}
	fl.Sent += s.Sent
	fl.Skipped += s.Skipped
	fl.Resent += s.Resent
	fl.Horizon = max(fl.Horizon, from)
	fl.Poll, fl.Margin = f.Poll, f.Margin
	s.Data = feed.Data
	if feed.Data == DataActivities {
		s.Data = ""
	}
	s.By = feed.By
	s.Window = Window{Start: fl.Start, End: horizon}
	s.Pass = Pass{State: StatePending, Scope: Scope{Window: Window{Start: from, End: horizon}, By: feed.By}}
	s.Total, s.CompletedAt = nil, time.Time{}
}

// demoted is a log handler that writes a cycle's pass's Info lines at
// Debug: a feed says once a cycle what it did, not twice a minute that a
// window was "recovered".
type demoted struct{ slog.Handler }

func (d demoted) Enabled(ctx context.Context, l slog.Level) bool {
	if l == slog.LevelInfo {
		l = slog.LevelDebug
	}
	return d.Handler.Enabled(ctx, l)
}

func (d demoted) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo {
		r.Level = slog.LevelDebug
	}
	return d.Handler.Handle(ctx, r)
}

func (d demoted) WithAttrs(attrs []slog.Attr) slog.Handler {
	return demoted{d.Handler.WithAttrs(attrs)}
}
func (d demoted) WithGroup(name string) slog.Handler { return demoted{d.Handler.WithGroup(name)} }

// ErrFollowCheckpoint marks a checkpoint of the other kind: a feed's for
// run, a recovery's for follow.
var ErrFollowCheckpoint = errors.New("a checkpoint of the other kind")
