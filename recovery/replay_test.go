package recovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// sliceSource serves activities in pages of size n, the cursor being an
// index (kept in Cursor.Offset).
type sliceSource struct {
	acts    []Activity
	n       int
	fetches int
	failAt  int64 // fail a fetch at this offset (-1: never)
	failErr error // the error of that fetch (nil: "boom")
}

func (s *sliceSource) Fetch(ctx context.Context, cur Cursor) (Page, error) {
	s.fetches++
	if err := ctx.Err(); err != nil {
		return Page{}, err
	}
	if cur.Offset == s.failAt {
		if s.failErr != nil {
			return Page{Requests: 1}, s.failErr
		}
		return Page{Requests: 1}, errors.New("boom")
	}
	end := min(int(cur.Offset)+s.n, len(s.acts))
	p := Page{Activities: slices.Clone(s.acts[cur.Offset:end]), Next: Cursor{Offset: int64(end)}, Requests: 1}
	p.Last = end == len(s.acts)
	p.Progress = float64(end) / float64(len(s.acts))
	return p, nil
}

type recordingSink struct {
	ids      []string
	failNext int // fail the next Send calls (after delivering half the batch)
	onSend   func()
}

func (s *recordingSink) Send(ctx context.Context, batch []Activity) (int, error) {
	if s.onSend != nil {
		s.onSend()
	}
	if s.failNext > 0 {
		s.failNext--
		for _, a := range batch[:len(batch)/2] {
			s.ids = append(s.ids, a.ID)
		}
		return 0, errors.New("receiver gone")
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	for _, a := range batch {
		s.ids = append(s.ids, a.ID)
	}
	return 0, nil
}

func (s *recordingSink) Close() error { return nil }

type memCheckpoint struct{ st State }

func (m *memCheckpoint) Load(context.Context) (State, error) { return m.st, nil }
func (m *memCheckpoint) Update(_ context.Context, fn func(*State) error) error {
	st := m.st
	if err := fn(&st); err != nil {
		return err
	}
	m.st = st
	return nil
}

func activities(n int) []Activity {
	acts := make([]Activity, n)
	for i := range acts {
		acts[i] = Activity{ID: fmt.Sprintf("id%03d", i), Timestamp: int64(1000 + i)}
	}
	return acts
}

func ids(acts []Activity) []string {
	var out []string
	for _, a := range acts {
		out = append(out, a.ID)
	}
	return out
}

func TestReplayDeliversAllAndCompletes(t *testing.T) {
	acts := activities(25)
	src := &sliceSource{acts: acts, n: 10, failAt: -1}
	sink := &recordingSink{}
	cp := &memCheckpoint{st: State{State: StatePending}}
	r := &Replayer{Source: src, Sink: sink, Checkpoint: cp}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sink.ids, ids(acts)) {
		t.Fatalf("delivered %v", sink.ids)
	}
	if res.Sent != 25 || cp.st.State != StateCompleted || cp.st.Sent != 25 || cp.st.APIRequests != 3 || cp.st.Progress != 1 || cp.st.InFlight != 0 {
		t.Fatalf("result %+v, state %+v", res, cp.st)
	}
	// A re-run of a completed checkpoint touches nothing.
	src.fetches = 0
	res, err = r.Run(context.Background())
	if err != nil || !res.AlreadyCompleted || src.fetches != 0 || len(sink.ids) != 25 {
		t.Fatalf("re-run: %+v, %v, fetches %d", res, err, src.fetches)
	}
}

func TestReplaySinkFailureResumesAndCountsResent(t *testing.T) {
	acts := activities(25)
	src := &sliceSource{acts: acts, n: 10, failAt: -1}
	sink := &recordingSink{}
	cp := &memCheckpoint{st: State{State: StatePending}}
	sink.onSend = func() {
		if len(sink.ids) == 10 && sink.failNext == 0 && cp.st.Runs == 1 {
			sink.failNext = 1
		}
	}
	r := &Replayer{Source: src, Sink: sink, Checkpoint: cp}
	_, err := r.Run(context.Background())
	if err == nil || cp.st.State != StateFailed || cp.st.Sent != 10 || cp.st.InFlight != 10 || cp.st.LastError.IsZero() {
		t.Fatalf("err %v, state %+v", err, cp.st)
	}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Page 2 went half out before the failure; it is sent again whole, and
	// counted as possibly duplicated.
	want := slices.Concat(ids(acts[:10]), ids(acts[10:15]), ids(acts[10:]))
	if !slices.Equal(sink.ids, want) {
		t.Fatalf("delivered %v\nwant      %v", sink.ids, want)
	}
	if res.Resent != 10 || cp.st.Resent != 10 || cp.st.Sent != 25 || cp.st.State != StateCompleted || cp.st.Runs != 2 {
		t.Fatalf("result %+v, state %+v", res, cp.st)
	}
}

func TestReplayStopsOnCancel(t *testing.T) {
	acts := activities(25)
	src := &sliceSource{acts: acts, n: 10, failAt: -1}
	ctx, cancel := context.WithCancel(context.Background())
	sink := &recordingSink{}
	sink.onSend = func() {
		if len(sink.ids) == 10 {
			cancel()
		}
	}
	cp := &memCheckpoint{st: State{State: StatePending}}
	_, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp}).Run(ctx)
	if !errors.Is(err, ErrStopped) || cp.st.State != StateStopped || cp.st.Sent != 10 || !cp.st.LastError.IsZero() {
		t.Fatalf("err %v, state %+v", err, cp.st)
	}
	res, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp}).Run(context.Background())
	if err != nil || cp.st.Sent != 25 || res.Resent != 10 {
		t.Fatalf("resume: %v, %+v, %+v", err, res, cp.st)
	}
}

// TestReplayPlannedStopFinishesTheBatchInFlight: a stop asked while a
// batch is being sent lets that batch finish and sends nothing after it,
// not even the page read ahead; the resumed run sends nothing twice.
func TestReplayPlannedStopFinishesTheBatchInFlight(t *testing.T) {
	acts := activities(45)
	src := &sliceSource{acts: acts, n: 10, failAt: -1}
	stop := make(chan struct{})
	sink := &recordingSink{}
	sink.onSend = func() {
		if len(sink.ids) == 10 { // the second batch is in flight
			close(stop)
		}
	}
	cp := &memCheckpoint{st: State{State: StatePending}}
	_, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp, Stop: stop, Grace: time.Minute}).Run(context.Background())
	if !errors.Is(err, ErrStopped) || cp.st.State != StateStopped || cp.st.InFlight != 0 || cp.st.Sent != 20 ||
		!slices.Equal(sink.ids, ids(acts[:20])) {
		t.Fatalf("err %v, delivered %v, state %+v", err, sink.ids, cp.st)
	}
	res, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp}).Run(context.Background())
	if err != nil || res.Resent != 0 || cp.st.Resent != 0 || !slices.Equal(sink.ids, ids(acts)) {
		t.Fatalf("resume: %v, %+v, delivered %v", err, res, sink.ids)
	}
}

// TestReplayGraceEndCutsTheBatch: a batch that is not confirmed within the
// grace is cut; it stays in flight, so the next run sends it again.
func TestReplayGraceEndCutsTheBatch(t *testing.T) {
	acts := activities(25)
	src := &sliceSource{acts: acts, n: 10, failAt: -1}
	stop := make(chan struct{})
	cp := &memCheckpoint{st: State{State: StatePending}}
	sink := blockingSink(func() { close(stop) })
	_, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp, Stop: stop, Grace: time.Millisecond}).Run(context.Background())
	if !errors.Is(err, ErrStopped) || cp.st.State != StateStopped || cp.st.InFlight != 10 || cp.st.Sent != 0 {
		t.Fatalf("err %v, state %+v", err, cp.st)
	}
}

// blockingSink is a receiver that never confirms: Send returns when its
// ctx ends. started runs when the first Send begins.
type blockingSink func()

func (s blockingSink) Send(ctx context.Context, batch []Activity) (int, error) {
	s()
	<-ctx.Done()
	return 0, ctx.Err()
}

func (s blockingSink) Close() error { return nil }

func TestReplayFetchFailureKeepsProgress(t *testing.T) {
	acts := activities(25)
	src := &sliceSource{acts: acts, n: 10, failAt: 20}
	sink := &recordingSink{}
	cp := &memCheckpoint{st: State{State: StatePending}}
	_, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp}).Run(context.Background())
	if err == nil || cp.st.Cursor.Offset != 20 || cp.st.Sent != 20 || cp.st.APIRequests != 3 || cp.st.InFlight != 0 || cp.st.State != StateFailed {
		t.Fatalf("err %v, state %+v", err, cp.st)
	}
	src.failAt = -1
	if _, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sink.ids, ids(acts)) || cp.st.Resent != 0 {
		t.Fatalf("delivered %v, state %+v", sink.ids, cp.st)
	}
}

func TestReplayRecordsTheFailureRedacted(t *testing.T) {
	const token = "replay-token-0123456789abcdefghij"
	src := &sliceSource{acts: activities(5), n: 10, failAt: 0,
		failErr: fmt.Errorf("a redirect to https://x/?t=%s\nlevel=INFO msg=completed", strings.ToUpper(token))}
	cp := &memCheckpoint{st: State{State: StatePending}}
	_, err := (&Replayer{Source: src, Sink: &recordingSink{}, Checkpoint: cp, Redactor: NewRedactor(token)}).Run(context.Background())
	want := `"fetch the page at the start of the window: a redirect to https://x/?t=[REDACTED]\nlevel=INFO msg=completed"`
	if err == nil || cp.st.State != StateFailed || cp.st.LastError.String() != want {
		t.Fatalf("err %v, last error %s, want %s", err, cp.st.LastError, want)
	}
}

func TestReplayExclude(t *testing.T) {
	acts := activities(5)
	sink := &recordingSink{}
	cp := &memCheckpoint{st: State{State: StatePending}}
	r := &Replayer{Source: &sliceSource{acts: acts, n: 10, failAt: -1}, Sink: sink, Checkpoint: cp,
		Exclude: func(id string) bool { return id == "id001" || id == "id003" }}
	res, err := r.Run(context.Background())
	if err != nil || !slices.Equal(sink.ids, []string{"id000", "id002", "id004"}) || res.Skipped != 2 || cp.st.Skipped != 2 || cp.st.Sent != 3 {
		t.Fatalf("%v %v %+v %+v", err, sink.ids, res, cp.st)
	}
}
