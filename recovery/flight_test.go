package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fileLikeSink is a Resumer that holds what it was sent, like a file: a
// Send that fails after k activities keeps those k, and Resume tells them
// from a mark (the count held when the batch started).
type fileLikeSink struct {
	held      []string
	failAfter int // a Send fails once the sink holds this many (-1: never)
	resumed   []json.RawMessage
}

func (s *fileLikeSink) Send(ctx context.Context, b Batch) (int, error) {
	for _, a := range b.Activities {
		if len(s.held) == s.failAfter {
			s.failAfter = -1
			return 0, errors.New("killed")
		}
		s.held = append(s.held, a.ID)
	}
	return 0, nil
}

func (s *fileLikeSink) Close() error { return nil }

func (s *fileLikeSink) Mark(context.Context) (json.RawMessage, error) {
	return json.Marshal(len(s.held))
}

func (s *fileLikeSink) Resume(_ context.Context, mark json.RawMessage) (map[string]bool, error) {
	s.resumed = append(s.resumed, mark)
	var from int
	if err := json.Unmarshal(mark, &from); err != nil {
		return nil, err
	}
	held := map[string]bool{}
	for _, id := range s.held[from:] {
		held[id] = true
	}
	return held, nil
}

// TestResumeSendsWhatAResumerLacks: a run dies in the middle of a batch;
// the next sends only the activities the sink does not hold, counts none
// as sent again, and keeps the first mark for a second crash.
func TestResumeSendsWhatAResumerLacks(t *testing.T) {
	acts := activities(30)
	src := &sliceSource{acts: acts, n: 10, failAt: -1}
	sink := &fileLikeSink{failAfter: -1}
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	r := &Replayer{Source: src, Sink: sink, Checkpoint: cp}

	sink.failAfter = 14 // fails 4 activities into the second batch
	if _, err := r.Run(context.Background()); err == nil {
		t.Fatal("the first run did not fail")
	}
	if f := cp.st.InFlight; f.Activities != 10 || f.FirstID != "id010" || string(f.Mark) != "10" {
		t.Fatalf("in flight after the failure: %+v", f)
	}
	sink.failAfter = len(sink.held) + 3 // the resumed batch's rest fails too
	if _, err := r.Run(context.Background()); err == nil {
		t.Fatal("the second run did not fail")
	}
	if f := cp.st.InFlight; f.Activities != 10 || string(f.Mark) != "10" {
		t.Fatalf("in flight after the second failure: %+v, want the first mark kept", f)
	}
	var logs strings.Builder
	r.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sink.held, ids(acts)) {
		t.Fatalf("the sink holds %v, want every activity once, in order", sink.held)
	}
	if res.Resent != 0 || cp.st.Resent != 0 || cp.st.Sent != 30 || cp.st.InFlight.Activities != 0 || cp.st.State != StateCompleted {
		t.Fatalf("result %+v, state %+v", res, cp.st)
	}
	if want := `level=WARN msg="the previous run stopped before the sink confirmed its last batch; what the sink lacks of it is sent" activities=10 held=7 sent_again=0`; !strings.Contains(logs.String(), want) {
		t.Errorf("log:\n%s\nwant %s", logs.String(), want)
	}
	if len(sink.resumed) != 2 {
		t.Errorf("Resume called %d times, want once a run after each failure", len(sink.resumed))
	}
}

// ackingSink is an Acknowledger: it acknowledges each activity as it
// takes it, keeping at most window beyond what Acks says is recorded, and
// a Send can be made to fail after some.
type ackingSink struct {
	window    int
	held      []string
	failAfter int // a Send fails once the sink holds this many (-1: never)
	maxAhead  int // the most activities taken past the recorded ones
}

func (s *ackingSink) AckWindow() int { return s.window }
func (s *ackingSink) Close() error   { return nil }

func (s *ackingSink) Send(ctx context.Context, b Batch) (int, error) {
	for i, a := range b.Activities {
		for {
			recorded, grown := b.Acks.Recorded()
			if i < recorded+s.window {
				s.maxAhead = max(s.maxAhead, i+1-recorded)
				break
			}
			<-grown
		}
		if len(s.held) == s.failAfter {
			s.failAfter = -1
			return 0, errors.New("killed")
		}
		s.held = append(s.held, a.ID)
		b.Acks.Acked(i + 1)
	}
	return 0, nil
}

// TestResumeSkipsWhatAnAcknowledgerAcknowledged: the acknowledgements are
// recorded while the batch is sent, the sink never runs more than its
// window past the recorded ones, and the next run skips what was recorded,
// counting at most the window as sent again.
func TestResumeSkipsWhatAnAcknowledgerAcknowledged(t *testing.T) {
	acts := activities(300)
	src := &sliceSource{acts: acts, n: 100, failAt: -1}
	sink := &ackingSink{window: 8, failAfter: -1}
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	r := &Replayer{Source: src, Sink: sink, Checkpoint: cp}

	sink.failAfter = 150 // half-way through the second batch
	if _, err := r.Run(context.Background()); err == nil {
		t.Fatal("the first run did not fail")
	}
	f := cp.st.InFlight
	if f.Activities != 100 || f.Window != 8 || f.Acked < 50-8 || f.Acked > 50 || f.AckedID != fmt.Sprintf("id%03d", 100+f.Acked-1) {
		t.Fatalf("in flight after the failure: %+v", f)
	}
	if sink.maxAhead > sink.window {
		t.Fatalf("the sink ran %d past the recorded acknowledgements, window %d", sink.maxAhead, sink.window)
	}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// What was held and not recorded is sent again: at most the window.
	dups := len(sink.held) - len(acts)
	if dups < 0 || dups > sink.window || res.Resent != int64(min(sink.window, int(100-f.Acked))) || int64(dups) > res.Resent {
		t.Fatalf("%d sent twice, %d counted as sent again, window %d", dups, res.Resent, sink.window)
	}
	count := map[string]int{}
	for _, id := range sink.held {
		count[id]++
	}
	for _, a := range acts {
		if count[a.ID] == 0 || count[a.ID] > 1 && a.ID < "id100" {
			t.Fatalf("the sink holds %s %d times", a.ID, count[a.ID])
		}
	}
	if cp.st.Sent != 300 || cp.st.State != StateCompleted {
		t.Fatalf("state %+v", cp.st)
	}
}

// TestResumeOfAChangedPageSendsItWhole: acknowledgements recorded for a
// batch that no longer starts the page at the cursor count for nothing.
func TestResumeOfAChangedPageSendsItWhole(t *testing.T) {
	acts := activities(20)
	cp := &memCheckpoint{st: State{Pass: Pass{State: StateRunning,
		Lane: Lane{InFlight: InFlight{Activities: 10, FirstID: "other", Acked: 5, AckedID: "id004", Window: 8}}}}}
	sink := &ackingSink{window: 8, failAfter: -1}
	var logs strings.Builder
	r := &Replayer{Source: &sliceSource{acts: acts, n: 10, failAt: -1}, Sink: sink, Checkpoint: cp,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sink.held, ids(acts)) || res.Resent != 10 {
		t.Fatalf("held %v, resent %d: want the whole first batch again", sink.held, res.Resent)
	}
	if !strings.Contains(logs.String(), "the page fetched again does not start as the batch the previous run left in flight did") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// TestInFlightOfEarlierCheckpoints: a checkpoint of an earlier version
// holds the batch's size alone.
func TestInFlightOfEarlierCheckpoints(t *testing.T) {
	var p Pass
	if err := json.Unmarshal([]byte(`{"state":"running","in_flight":5000}`), &p); err != nil {
		t.Fatal(err)
	}
	if f := p.InFlight; f.Activities != 5000 || f.FirstID != "" || f.Mark != nil {
		t.Fatalf("%+v", p.InFlight)
	}
	b, err := json.Marshal(InFlight{Activities: 3, FirstID: "a", Mark: json.RawMessage(`{"size":7}`)})
	if err != nil {
		t.Fatal(err)
	}
	var back InFlight
	if err := json.Unmarshal(b, &back); err != nil || back.FirstID != "a" || string(back.Mark) != `{"size":7}` {
		t.Fatalf("%s read back as %+v, %v", b, back, err)
	}
}

// preparingSink checks that each Send gets what Prepare made of its very
// activities, and that a Prepared is handed back for reuse only after its
// Send returned.
type preparingSink struct {
	mu       sync.Mutex
	inSend   map[*prepared]bool
	t        *testing.T
	reused   int
	prepares int
	sent     []string
}

type prepared struct{ ids []string }

func (s *preparingSink) Prepare(reuse Prepared, batch []Activity) Prepared {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prepares++
	p, _ := reuse.(*prepared)
	if p != nil {
		if s.inSend[p] {
			s.t.Error("Prepare was handed the memory of a batch still being sent")
		}
		s.reused++
	} else {
		p = &prepared{}
	}
	p.ids = ids(batch)
	return p
}

func (s *preparingSink) Send(ctx context.Context, b Batch) (int, error) {
	p, _ := b.Prepared.(*prepared)
	if p == nil || !slices.Equal(p.ids, ids(b.Activities)) {
		s.t.Errorf("Send of %v got what was prepared for %v", ids(b.Activities), p)
	}
	s.mu.Lock()
	s.inSend[p] = true
	s.mu.Unlock()
	s.sent = append(s.sent, ids(b.Activities)...)
	s.mu.Lock()
	delete(s.inSend, p)
	s.mu.Unlock()
	return 0, nil
}

func (s *preparingSink) Close() error { return nil }

func TestPreparedBatchesAreTheCallers(t *testing.T) {
	acts := activities(100)
	sink := &preparingSink{t: t, inSend: map[*prepared]bool{}}
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	r := &Replayer{Source: &sliceSource{acts: acts, n: 10, failAt: -1}, Sink: sink, Checkpoint: cp}
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sink.sent, ids(acts)) || sink.prepares != 10 || sink.reused < 7 {
		t.Fatalf("sent %v; %d prepared, %d in reused memory", sink.sent, sink.prepares, sink.reused)
	}
}
