package recovery

import (
	"context"
	"math"
	"testing"
	"time"
)

// TestProgressOneModel: the percent counts activities when the window's
// total is known, else the source's measure; it is floored to a tenth and
// reaches 100 only once the pass completed; the time left comes from the
// latest run's own rate.
func TestProgressOneModel(t *testing.T) {
	total, capped := int64(150_304), int64(10_000)
	start := time.Date(2024, 5, 14, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		st      State
		now     time.Time
		running bool
		want    Progress
	}{
		{name: "by count", st: State{Total: &total, Pass: Pass{State: StateRunning, Sent: 60_000, Skipped: 3_579, Lane: Lane{Progress: 0.9}}},
			want: Progress{Percent: 42.3, ByCount: true}},
		{name: "without a total, the source's measure", st: State{Pass: Pass{State: StateRunning, Sent: 60_000, Lane: Lane{Progress: 0.42399}}},
			want: Progress{Percent: 42.3}},
		// Activities saved since the count: the time reached measures the
		// rest of the pass, never more than 99.9 before its end.
		{name: "late arrivals do not make 100 before the end", st: State{Total: &total, Pass: Pass{State: StateRunning, Sent: 151_000, Lane: Lane{Progress: 1}}},
			want: Progress{Percent: 99.9}},
		{name: "a pass that outgrew its count is measured by time", st: State{Total: &total, Pass: Pass{State: StateRunning, Sent: 150_304, Lane: Lane{Progress: 0.97}}},
			want: Progress{Percent: 97}},
		// A total that is a lower bound (issue 26: 10,000 of 100,304) is
		// no measure: "100.0% of 10000 activities" with 100,304 sent, or
		// 1000 %, is what it gave.
		{name: "a lower bound is no measure", st: State{Total: &capped, TotalAtLeast: true, Pass: Pass{State: StateRunning, Sent: 50_000, Lane: Lane{Progress: 0.5}}},
			want: Progress{Percent: 50}},
		{name: "nor beyond it", st: State{Total: &capped, TotalAtLeast: true, Pass: Pass{State: StateRunning, Sent: 100_304, Lane: Lane{Progress: 0.99}}},
			want: Progress{Percent: 99}},
		{name: "a lower bound completed", st: State{Total: &capped, TotalAtLeast: true, Pass: Pass{State: StateCompleted, Sent: 100_304}},
			want: Progress{Percent: 100}},
		{name: "time left by time when the count is a lower bound", running: true, now: start.Add(time.Minute),
			st:   State{Total: &capped, TotalAtLeast: true, Pass: Pass{State: StateRunning, Sent: 90_000, Lane: Lane{Progress: 0.5}, RunStartedAt: start, RunStartedDone: 0.25}},
			want: Progress{Percent: 50, Left: 2 * time.Minute}},
		// The run began counting activities, then outgrew the count: its
		// mark is a share of activities, the percent now of time; no
		// time left is better than one from two measures.
		{name: "no time left across measures", running: true, now: start.Add(time.Minute),
			st:   State{Total: &total, Pass: Pass{State: StateRunning, Sent: 150_400, Lane: Lane{Progress: 0.98}, RunStartedAt: start, RunStartedDone: 0.9, RunStartedSent: 135_000}},
			want: Progress{Percent: 98}},
		{name: "nor does the last byte of an export", st: State{Pass: Pass{State: StateStopped, Lane: Lane{Progress: 1}}},
			want: Progress{Percent: 99.9}},
		{name: "completed", st: State{Total: &total, Pass: Pass{State: StateCompleted, Sent: 150_000}},
			want: Progress{Percent: 100, ByCount: true}},
		// A resumed run that did 10% in 1 minute has 5 minutes left for the
		// 50% that remains, whatever the runs before it did.
		{name: "time left at this run's rate", running: true, now: start.Add(time.Minute),
			st:   State{Total: &total, Pass: Pass{State: StateRunning, Sent: 75_152, RunStartedAt: start, RunStartedDone: 0.4}},
			want: Progress{Percent: 50, ByCount: true, Left: 5 * time.Minute}},
		{name: "no time left without a run", running: false, now: start.Add(time.Minute),
			st:   State{Total: &total, Pass: Pass{State: StateStopped, Sent: 75_152, RunStartedAt: start, RunStartedDone: 0.4}},
			want: Progress{Percent: 50, ByCount: true}},
		{name: "no time left before the run did anything", running: true, now: start.Add(time.Minute),
			st:   State{Total: &total, Pass: Pass{State: StateRunning, Sent: 60_121, RunStartedAt: start, RunStartedDone: 0.4}},
			want: Progress{Percent: 39.9, ByCount: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.st.ProgressOf(tt.st.Pass, tt.now, tt.running); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPosition(t *testing.T) {
	tests := []struct {
		p    Pass
		want string
	}{
		{Pass{}, "the start of the window"},
		{Pass{Lane: Lane{Reached: 1715675472345, Cursor: Cursor{Token: []byte(`{"next_filters":{"_cursor":"x"}}`)}}}, "2024-05-14T08:31:12.345Z"},
		{Pass{Lane: Lane{Reached: 1715675472345, Cursor: Cursor{Token: []byte(`{"offset":123,"line":5000}`), Text: "line 5000 of the export"}}}, "2024-05-14T08:31:12.345Z (line 5000 of the export)"},
		{Pass{Lane: Lane{Cursor: Cursor{Token: []byte(`{"offset":123,"line":5000}`), Text: "line 5000 of the export"}}}, "line 5000 of the export"},
		{Pass{Lane: Lane{Cursor: Cursor{Token: []byte(`{"next_filters":{}}`)}}}, "past the start of the window"},
		{Pass{State: StateCompleted, Lane: Lane{Reached: 1715675472345}}, "the end of the window"},
		// A pass in scan lanes stands where its slowest lane does.
		{Pass{Lane: Lane{Reached: 1715675472345}, Lanes: make([]ScanLane, 3)}, "2024-05-14T08:31:12.345Z (the slowest of 3 lanes)"},
		{Pass{Lanes: make([]ScanLane, 2)}, "the start of the window (2 lanes)"},
	}
	for _, tt := range tests {
		if got := tt.p.Position(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestFormatLeft(t *testing.T) {
	for d, want := range map[time.Duration]string{
		25 * time.Second:               "25s",
		4*time.Minute + 10*time.Second: "4m10s",
		62 * time.Minute:               "1h02m",
		1500 * time.Millisecond:        "2s",
		27*time.Hour + 30*time.Second:  "27h00m",
	} {
		if got := FormatLeft(d); got != want {
			t.Errorf("FormatLeft(%v) = %q, want %q", d, got, want)
		}
	}
}

// lowerBoundSource counts its window as the API does past the point
// where it stops counting: more than 10.
type lowerBoundSource struct{ *sliceSource }

func (lowerBoundSource) Count(context.Context, Window) (Tally, error) {
	return Tally{Activities: 10, AtLeast: true, Requests: 1}, nil
}

// TestReplayKeepsALowerBound: a count that is a lower bound is kept as
// one in the checkpoint, and the percent done is then the source's own
// measure, never 100 % before the end (issue 26: "100.0% of 10000
// activities" with 100,304 sent).
func TestReplayKeepsALowerBound(t *testing.T) {
	src := lowerBoundSource{&sliceSource{acts: activities(25), n: 10, failAt: 20}}
	cp := &memCheckpoint{st: State{Pass: Pass{State: StatePending}}}
	r := &Replayer{Source: src, Sink: &recordingSink{}, Checkpoint: cp}
	if _, err := r.Run(context.Background()); err == nil {
		t.Fatal("the fetch at 20 should fail")
	}
	if cp.st.Total == nil || *cp.st.Total != 10 || !cp.st.TotalAtLeast || cp.st.Sent != 20 {
		t.Fatalf("after the first run: total %v (at least: %v), %d sent", cp.st.Total, cp.st.TotalAtLeast, cp.st.Sent)
	}
	if p := cp.st.ProgressOf(cp.st.Pass, time.Time{}, false); p.ByCount || p.Percent >= 100 || p.Percent != math.Floor(cp.st.Progress*1000)/10 {
		t.Fatalf("progress %+v, want the source's measure (%v)", p, cp.st.Progress)
	}
	src.failAt = -1
	if _, err := r.Run(context.Background()); err != nil || cp.st.State != StateCompleted {
		t.Fatalf("resume: %v, %s", err, cp.st.State)
	}
	if p := cp.st.ProgressOf(cp.st.Pass, time.Time{}, false); p.ByCount || p.Percent != 100 {
		t.Fatalf("completed: %+v", p)
	}
}
