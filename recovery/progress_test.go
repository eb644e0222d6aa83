package recovery

import (
	"testing"
	"time"
)

// TestProgressOneModel: the percent counts activities when the window's
// total is known, else the source's measure; it is floored to a tenth and
// reaches 100 only once the pass completed; the time left comes from the
// latest run's own rate.
func TestProgressOneModel(t *testing.T) {
	total := int64(150_304)
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
		{name: "late arrivals do not make 100 before the end", st: State{Total: &total, Pass: Pass{State: StateRunning, Sent: 151_000}},
			want: Progress{Percent: 99.9, ByCount: true}},
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
