package recovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sliceSource serves activities in pages of size n, the cursor being an
// index (its token, in decimal: at, offset).
type sliceSource struct {
	acts    []Activity
	n       int
	fetches int
	failAt  int   // fail a fetch at this offset (-1: never)
	failErr error // the error of that fetch (nil: "boom")
}

// at is the cursor of index i; offset the index of a cursor.
func at(i int) Cursor { return Cursor{Token: []byte(strconv.Itoa(i))} }

func offset(c Cursor) int {
	if c.IsZero() {
		return 0
	}
	i, err := strconv.Atoi(string(c.Token))
	if err != nil {
		panic(err)
	}
	return i
}

func (s *sliceSource) Fetch(ctx context.Context, cur Cursor) (Page, error) {
	s.fetches++
	if err := ctx.Err(); err != nil {
		return Page{}, err
	}
	if offset(cur) == s.failAt {
		if s.failErr != nil {
			return Page{Requests: 1}, s.failErr
		}
		return Page{Requests: 1}, errors.New("boom")
	}
	return pageAt(s.acts, cur, s.n), nil
}

// pageAt is the page of acts at cur, n activities long: the fake sources'
// paging, the cursor an index, the progress the share of acts behind it.
func pageAt(acts []Activity, cur Cursor, n int) Page {
	from := offset(cur)
	end := min(from+n, len(acts))
	return Page{Activities: slices.Clone(acts[from:end]), Next: at(end), Last: end == len(acts),
		Progress: float64(end) / float64(max(len(acts), 1)), Requests: 1}
}

type recordingSink struct {
	ids      []string
	failNext int // fail the next Send calls (after delivering half the batch)
	onSend   func()
}

func (s *recordingSink) Send(ctx context.Context, b Batch) (int, error) {
	batch := b.Activities
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

type memCheckpoint struct {
	mu sync.Mutex // an Acknowledger's acknowledgements are recorded beside Send
	st State
}

// Load returns a copy of the state that shares no memory with the one
// stored, as a real checkpoint's: lanes read it while others update it.
func (m *memCheckpoint) Load(context.Context) (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.withOwnLanes(), nil
}

func (m *memCheckpoint) Update(_ context.Context, fn func(*State) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st.withOwnLanes()
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

func idSet(t *testing.T, ids ...string) *IDSet {
	t.Helper()
	set, err := ReadIDSet(strings.NewReader(strings.Join(ids, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return set
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
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	r := &Replayer{Source: src, Sink: sink, Checkpoint: cp}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sink.ids, ids(acts)) {
		t.Fatalf("delivered %v", sink.ids)
	}
	if res.Sent != 25 || cp.st.State != StateCompleted || cp.st.Sent != 25 || cp.st.APIRequests != 3 || cp.st.Progress != 1 || cp.st.InFlight.Activities != 0 {
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
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	sink.onSend = func() {
		if len(sink.ids) == 10 && sink.failNext == 0 && cp.st.Runs == 1 {
			sink.failNext = 1
		}
	}
	r := &Replayer{Source: src, Sink: sink, Checkpoint: cp}
	_, err := r.Run(context.Background())
	if err == nil || cp.st.State != StateFailed || cp.st.Sent != 10 || cp.st.InFlight.Activities != 10 || cp.st.LastError.IsZero() {
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
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
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
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	_, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp, Stop: stop, Grace: time.Minute}).Run(context.Background())
	if !errors.Is(err, ErrStopped) || cp.st.State != StateStopped || cp.st.InFlight.Activities != 0 || cp.st.Sent != 20 ||
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
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	sink := blockingSink(func() { close(stop) })
	_, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp, Stop: stop, Grace: time.Millisecond}).Run(context.Background())
	if !errors.Is(err, ErrStopped) || cp.st.State != StateStopped || cp.st.InFlight.Activities != 10 || cp.st.Sent != 0 {
		t.Fatalf("err %v, state %+v", err, cp.st)
	}
}

// blockingSink is a receiver that never confirms: Send returns when its
// ctx ends. started runs when the first Send begins.
type blockingSink func()

func (s blockingSink) Send(ctx context.Context, _ Batch) (int, error) {
	s()
	<-ctx.Done()
	return 0, ctx.Err()
}

func (s blockingSink) Close() error { return nil }

func TestReplayFetchFailureKeepsProgress(t *testing.T) {
	acts := activities(25)
	src := &sliceSource{acts: acts, n: 10, failAt: 20}
	sink := &recordingSink{}
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	_, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp}).Run(context.Background())
	if err == nil || offset(cp.st.Cursor) != 20 || cp.st.Sent != 20 || cp.st.APIRequests != 3 || cp.st.InFlight.Activities != 0 || cp.st.State != StateFailed {
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
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	_, err := (&Replayer{Source: src, Sink: &recordingSink{}, Checkpoint: cp, Redactor: NewRedactor(token)}).Run(context.Background())
	want := `"fetch the page at the start of the window: a redirect to https://x/?t=[REDACTED]\nlevel=INFO msg=completed"`
	if err == nil || cp.st.State != StateFailed || cp.st.LastError.String() != want {
		t.Fatalf("err %v, last error %s, want %s", err, cp.st.LastError, want)
	}
}

func TestReplayExclude(t *testing.T) {
	acts := activities(5)
	sink := &recordingSink{}
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	r := &Replayer{Source: &sliceSource{acts: acts, n: 10, failAt: -1}, Sink: sink, Checkpoint: cp,
		Exclude: idSet(t, "id001", "id003")}
	res, err := r.Run(context.Background())
	if err != nil || !slices.Equal(sink.ids, []string{"id000", "id002", "id004"}) || res.Skipped != 2 || cp.st.Skipped != 2 || cp.st.Sent != 3 {
		t.Fatalf("%v %v %+v %+v", err, sink.ids, res, cp.st)
	}
}

// countingSource is a sliceSource that can also count its window.
type countingSource struct {
	*sliceSource
	counts int
	err    error
	// counted, when set, is closed at the first count; the fetch at the
	// sliceSource's failAt waits for it.
	counted chan struct{}
}

func (s *countingSource) Count(context.Context, Window) (Tally, error) {
	s.counts++
	if s.counted != nil && s.counts == 1 {
		close(s.counted)
	}
	return Tally{Activities: int64(len(s.acts)), Requests: 1}, s.err
}

func (s *countingSource) Fetch(ctx context.Context, cur Cursor) (Page, error) {
	if s.counted != nil && offset(cur) == s.failAt {
		<-s.counted
	}
	return s.sliceSource.Fetch(ctx, cur)
}

// TestReplayCountsTheWindowOnce: a source that can count is asked once per
// checkpoint (beside the first page, which does not wait for it); the
// total is kept and its request counted. One that answers without a total
// is paged through as before.
func TestReplayCountsTheWindowOnce(t *testing.T) {
	src := &countingSource{sliceSource: &sliceSource{acts: activities(25), n: 10, failAt: 20}, counted: make(chan struct{})}
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	r := &Replayer{Source: src, Sink: &recordingSink{}, Checkpoint: cp}
	if _, err := r.Run(context.Background()); err == nil {
		t.Fatal("the fetch at 20 should fail")
	}
	if cp.st.Total == nil || *cp.st.Total != 25 || cp.st.APIRequests != 1+3 || src.counts != 1 {
		t.Fatalf("after the first run: total %v, %d requests, %d counts", cp.st.Total, cp.st.APIRequests, src.counts)
	}
	if p := cp.st.ProgressOf(cp.st.Pass, time.Time{}, false); p.Percent != 80 || !p.ByCount {
		t.Fatalf("progress %+v, want 80%% by count", p)
	}
	src.failAt = -1
	if _, err := r.Run(context.Background()); err != nil || src.counts != 1 || cp.st.APIRequests != 1+3+1 {
		t.Fatalf("resume: %v, %d counts, %d requests", err, src.counts, cp.st.APIRequests)
	}

	none := &countingSource{sliceSource: &sliceSource{acts: activities(5), n: 10, failAt: -1}, err: fmt.Errorf("x: %w", ErrNoTotal)}
	cp = &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	if _, err := (&Replayer{Source: none, Sink: &recordingSink{}, Checkpoint: cp}).Run(context.Background()); err != nil || cp.st.Total != nil || cp.st.Sent != 5 {
		t.Fatalf("no total: %v, %+v", err, cp.st)
	}
	n, err := Count(context.Background(), none, Window{Start: 0, End: 1 << 40}, nil)
	if err != nil || n.Activities != 5 || n.AtLeast || n.Requests != 2 {
		t.Fatalf("Count without a total = %+v, %v; want exactly 5 in 1+1 requests", n, err)
	}
}

// slowAPI is a source whose count, and whose fetch at blockAt, wait for
// their context to end, as requests to an API that answers in minutes (or
// is being retried) do; asked is closed once both are asked for.
type slowAPI struct {
	*sliceSource
	blockAt      int
	mu           sync.Mutex
	count, fetch bool
	asked        chan struct{}
}

func (s *slowAPI) ask(count bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if count {
		s.count = true
	} else {
		s.fetch = true
	}
	if s.count && s.fetch {
		close(s.asked)
	}
}

func (s *slowAPI) Count(ctx context.Context, _ Window) (Tally, error) {
	s.ask(true)
	<-ctx.Done()
	return Tally{Requests: 1}, ctx.Err()
}

func (s *slowAPI) Fetch(ctx context.Context, cur Cursor) (Page, error) {
	if offset(cur) != s.blockAt {
		return s.sliceSource.Fetch(ctx, cur)
	}
	s.ask(false)
	<-ctx.Done()
	return Page{Requests: 1}, ctx.Err()
}

// TestReplayPlannedStopCutsTheCount: a planned stop while the window is
// being counted, and a page fetched, ends both at once (issue 22: the
// count was made with the run's context, which only a second signal
// cuts): the run stops, recording every request made, the first page's,
// the count's and the one cut short.
func TestReplayPlannedStopCutsTheCount(t *testing.T) {
	src := &slowAPI{sliceSource: &sliceSource{acts: activities(25), n: 10, failAt: -1}, blockAt: 10, asked: make(chan struct{})}
	stop := make(chan struct{})
	go func() {
		<-src.asked
		close(stop)
	}()
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a failure would wait for it
	defer cancel()
	sink := &recordingSink{}
	_, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp, Stop: stop, Grace: time.Minute}).Run(ctx)
	if !errors.Is(err, ErrStopped) || ctx.Err() != nil || cp.st.State != StateStopped || cp.st.APIRequests != 3 || cp.st.Total != nil {
		t.Fatalf("err %v (ctx %v), state %+v", err, ctx.Err(), cp.st)
	}
	// The first page may have reached the sink before the stop: what did
	// is recorded.
	if int64(len(sink.ids)) != cp.st.Sent || cp.st.Sent > 10 || cp.st.Unconfirmed() != 0 {
		t.Fatalf("%d delivered, %d recorded as sent, %d unconfirmed", len(sink.ids), cp.st.Sent, cp.st.Unconfirmed())
	}
}

// TestReplayTopUp: --exclude-ids on a completed window sweeps it again and
// sends exactly what the file lacks, recorded as a pass of its own that
// resumes where it stopped; once done, the same run does nothing, and so
// does a run whose every pass left out the same ids.
func TestReplayTopUp(t *testing.T) {
	acts := activities(25)
	src := &sliceSource{acts: acts, n: 10, failAt: -1}
	sink := &recordingSink{}
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	if _, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The SIEM holds all but id003, id017 and id024.
	var held []string
	for _, a := range acts {
		if a.ID != "id003" && a.ID != "id017" && a.ID != "id024" {
			held = append(held, a.ID)
		}
	}
	received := idSet(t, held...)
	sink.ids = nil
	ctx, cancel := context.WithCancel(context.Background())
	sink.onSend = atSend(2, cancel) // stop after the first batch of the top-up
	r := &Replayer{Source: src, Sink: sink, Checkpoint: cp, Exclude: received, ExcludeFile: "siem.txt"}
	res, err := r.Run(ctx)
	if !errors.Is(err, ErrStopped) || !res.TopUp || !slices.Equal(sink.ids, []string{"id003"}) {
		t.Fatalf("first top-up run: %v, %+v, sent %v", err, res, sink.ids)
	}
	tu := cp.st.TopUp()
	if cp.st.State != StateCompleted || tu == nil || tu.State != StateStopped || tu.Sent != 1 || tu.Skipped != 9 ||
		tu.InFlight.Activities != 1 || offset(tu.Cursor) != 10 || tu.IDsFile != "siem.txt" || cp.st.Sent != 25 || cp.st.Current() != tu {
		t.Fatalf("after the stop: %+v", cp.st)
	}
	sink.onSend = nil
	res, err = r.Run(context.Background())
	if err != nil || !res.TopUp || !slices.Equal(sink.ids, []string{"id003", "id017", "id024"}) || res.Sent != 2 {
		t.Fatalf("resumed top-up: %v, %+v, sent %v", err, res, sink.ids)
	}
	done := cp.st.TopUps[0]
	if len(cp.st.TopUps) != 1 || done.State != StateCompleted || done.Sent != 3 || done.Skipped != 22 || done.Resent != 1 || cp.st.TopUp() != nil {
		t.Fatalf("after the top-up: %+v", cp.st)
	}
	// The same command once more: nothing to do, nothing fetched.
	src.fetches = 0
	if res, err := r.Run(context.Background()); err != nil || !res.AlreadyCompleted || src.fetches != 0 {
		t.Fatalf("re-run: %+v, %v, %d fetches", res, err, src.fetches)
	}
	// A run without --exclude-ids: nothing to do either.
	if res, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp}).Run(context.Background()); err != nil || !res.AlreadyCompleted {
		t.Fatalf("plain re-run: %+v, %v", res, err)
	}

	// A recovery that left out the same ids from its start is not topped
	// up by the same command; one whose runs left out different ids is.
	for _, tt := range []struct {
		name  string
		first *IDSet
		topUp bool
	}{{"same ids throughout", received, false}, {"other ids first", idSet(t, "id000"), true}} {
		t.Run(tt.name, func(t *testing.T) {
			src := &sliceSource{acts: acts, n: 10, failAt: -1}
			cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
			ctx, cancel := context.WithCancel(context.Background())
			sink := &recordingSink{onSend: atSend(2, cancel)}
			(&Replayer{Source: src, Sink: sink, Checkpoint: cp, Exclude: tt.first}).Run(ctx)
			sink.onSend = nil
			if _, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp, Exclude: received}).Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			res, err := (&Replayer{Source: src, Sink: sink, Checkpoint: cp, Exclude: received}).Run(context.Background())
			if err != nil || res.TopUp != tt.topUp || res.AlreadyCompleted == tt.topUp {
				t.Fatalf("second run: %+v, %v", res, err)
			}
		})
	}
}

// atSend returns an onSend that calls do at the n-th Send, before the
// sink takes its batch: a cancel cuts that batch, the batches before it
// are delivered.
func atSend(n int, do func()) func() {
	calls := 0
	return func() {
		if calls++; calls == n {
			do()
		}
	}
}
