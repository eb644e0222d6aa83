package recovery

import (
	"testing"
	"time"
)

// A feed's state ages from its last sign of life: a cycle completed, or a
// page delivered by the cycle in progress. A first cycle that catches up
// on days of a busy tenant takes hours, delivering all along: it is
// catching_up, not connection_error; a feed that neither completes a cycle
// nor delivers a page is connection_error after 2 h, disconnected after
// 12 h.
func TestFeedStateAgesFromTheLastCycleOrDelivery(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	feed := func(lastCycle, lastPage time.Time, horizon time.Duration) State {
		st := State{CreatedAt: ago(48 * time.Hour), Follow: &Follow{Start: ago(96 * time.Hour).UnixMilli(),
			Horizon: ago(horizon).UnixMilli(), LastCycleAt: lastCycle, Poll: time.Minute, Margin: 10 * time.Minute}}
		st.Pass = Pass{State: StateRunning, LastSuccessAt: lastPage}
		return st
	}
	for _, tc := range []struct {
		name string
		st   State
		want string
	}{
		{"caught up", feed(ago(time.Minute), time.Time{}, 11*time.Minute), FeedRunning},
		{"behind, cycling", feed(ago(time.Minute), time.Time{}, 2*time.Hour), FeedCatchingUp},
		{"a first cycle of 3 h, delivering", feed(time.Time{}, ago(time.Minute), 90*time.Hour), FeedCatchingUp},
		{"a cycle of 3 h, delivering", feed(ago(3*time.Hour), ago(time.Minute), 5*time.Hour), FeedCatchingUp},
		{"no cycle, no page for 3 h", feed(ago(3*time.Hour), ago(3*time.Hour), 5*time.Hour), FeedConnectionError},
		{"no cycle for 3 h, no page yet", feed(ago(3*time.Hour), time.Time{}, 5*time.Hour), FeedConnectionError},
		{"no cycle, no page for 13 h", feed(ago(13*time.Hour), ago(13*time.Hour), 15*time.Hour), FeedDisconnected},
		{"nothing yet, created 48 h ago", feed(time.Time{}, time.Time{}, 90*time.Hour), FeedDisconnected},
	} {
		if got := tc.st.FeedState(now, true); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if got := feed(ago(time.Minute), ago(time.Minute), time.Hour).FeedState(now, false); got != StateStopped {
		t.Errorf("no run active: %s, want stopped", got)
	}
}

// With no run active (a feed cron starts with --once, or one stopped),
// a feed silent for 2 h is connection_error and for 12 h disconnected, as
// a recovery a schedule runs: a schedule whose every run stops without
// delivering (the SIEM down, --max-duration reached) must not look merely
// stopped. A failed run stays failed.
func TestFeedStateWithNoRunActive(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	feed := func(state string, lastCycle time.Time) State {
		st := State{CreatedAt: ago(48 * time.Hour), Follow: &Follow{Start: ago(96 * time.Hour).UnixMilli(),
			Horizon: lastCycle.Add(-10 * time.Minute).UnixMilli(), LastCycleAt: lastCycle, Poll: time.Minute, Margin: 10 * time.Minute}}
		st.Pass = Pass{State: state}
		return st
	}
	for _, tc := range []struct {
		name string
		st   State
		want string
	}{
		{"stopped a minute ago", feed(StateStopped, ago(time.Minute)), StateStopped},
		{"a cron feed, last cycle 5 min ago", feed(StateCompleted, ago(5*time.Minute)), StateStopped},
		{"a cron feed, last cycle 3 h ago", feed(StateStopped, ago(3*time.Hour)), FeedConnectionError},
		{"a cron feed, last cycle 13 h ago", feed(StateStopped, ago(13*time.Hour)), FeedDisconnected},
		{"failed 13 h ago", feed(StateFailed, ago(13*time.Hour)), StateFailed},
		{"never began", State{}, StateStopped},
	} {
		if got := tc.st.FeedState(now, false); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
