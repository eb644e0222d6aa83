package recovery

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

// Two data types recovered through one checkpoint: each pass keeps its
// own position and counters, an update of one never changes the other,
// and the checkpoint is completed once both are.
func TestStreamsShareOneCheckpoint(t *testing.T) {
	cp := &memCheckpoint{st: State{Window: Window{1000, 2000}, Pass: Pass{State: StatePending}}}
	alerts := make([]Activity, 7)
	for i := range alerts {
		alerts[i] = Activity{Kind: KindAlert, ID: fmt.Sprintf("al%d", i), Timestamp: int64(1000 + i)}
	}
	sink := &recordingSink{}
	// The alerts first, failing after a page: the activities' state stays
	// as it was.
	failing := &sliceSource{acts: alerts, n: 3, failAt: 3}
	_, err := (&Replayer{Source: failing, Sink: sink, Checkpoint: StreamCheckpoint{Checkpoint: cp, Data: DataAlerts, Filter: `{"severity":{"eq":[2]}}`}}).Run(context.Background())
	if err == nil {
		t.Fatal("the failing alerts pass did not fail")
	}
	if st := cp.st; st.State != StatePending || st.Sent != 0 || len(st.Streams) != 1 {
		t.Fatalf("activities' state %s, %d sent, %d streams: the alerts' failure reached it", st.State, st.Sent, len(st.Streams))
	}
	if al := cp.st.Streams[0]; al.Data != DataAlerts || al.State != StateFailed || al.Sent != 3 || al.Filter != `{"severity":{"eq":[2]}}` {
		t.Fatalf("alerts' state %+v", al)
	}
	if cp.st.Completed() {
		t.Fatal("completed with both pending")
	}
	// The activities, then the alerts again from where they stopped.
	if _, err := (&Replayer{Source: &sliceSource{acts: activities(10), n: 4, failAt: -1}, Sink: sink, Checkpoint: StreamCheckpoint{Checkpoint: cp, Data: DataActivities}}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Replayer{Source: &sliceSource{acts: alerts, n: 3, failAt: -1}, Sink: sink, Checkpoint: StreamCheckpoint{Checkpoint: cp, Data: DataAlerts}}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := cp.st
	if st.State != StateCompleted || st.Sent != 10 || st.Streams[0].State != StateCompleted || st.Streams[0].Sent != 7 || !st.Completed() {
		t.Fatalf("activities %s %d, alerts %s %d", st.State, st.Sent, st.Streams[0].State, st.Streams[0].Sent)
	}
	want := slices.Concat(ids(alerts[:3]), ids(activities(10)), ids(alerts[3:]))
	if !slices.Equal(sink.ids, want) {
		t.Fatalf("sent %v, want %v", sink.ids, want)
	}
	if v := st.StoredVersion(); v != 5 {
		t.Errorf("a state with streams is stored as version %d, want 5", v)
	}
}
