package recovery

import "fmt"

// TimeField is the time of an activity that a window applies to (--by):
// every activity carries when it happened and when MCAS saved it
// (docs/time-semantics.md).
type TimeField uint8

const (
	// ByDate: when the activity happened, its "timestamp" ("date" in the
	// API's filters and sort). The default, as the recovery guide reads
	// the alert's window.
	ByDate TimeField = iota
	// ByCreated: when MCAS saved it, "created": the order in which a
	// streaming SIEM agent delivers activities, so the window of an alert
	// about the agent's delivery.
	ByCreated
)

// ParseTimeField reads --by: "date" or "created".
func ParseTimeField(s string) (TimeField, error) {
	switch s {
	case "date":
		return ByDate, nil
	case "created":
		return ByCreated, nil
	}
	return ByDate, fmt.Errorf("%q is neither date nor created", s)
}

// String is the field's name in the API's filters and sortField.
func (f TimeField) String() string {
	if f == ByCreated {
		return "created"
	}
	return "date"
}

// MarshalText writes the field's name, for the checkpoint.
func (f TimeField) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText reads the field's name; an empty one is date, the only
// field of checkpoints written before --by existed.
func (f *TimeField) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*f = ByDate
		return nil
	}
	v, err := ParseTimeField(string(b))
	if err != nil {
		return fmt.Errorf("by: %w", err)
	}
	*f = v
	return nil
}

// Of is a's time on this field, in Unix ms (0 for an activity that does
// not say when it was saved).
func (f TimeField) Of(a Activity) int64 {
	if f == ByCreated {
		return a.Created
	}
	return a.Timestamp
}

// Scope is what one pass over a source reads: the activities whose By time
// lies in Window and, when the bounds are set, that MCAS saved (created)
// in [SavedFrom, SavedBefore). A recovery's pass, each late-arrival sweep
// and each scan lane is a pass over its own scope.
type Scope struct {
	Window      Window    `json:"window"`
	By          TimeField `json:"by"`
	SavedFrom   int64     `json:"saved_from,omitempty"`   // Unix ms; 0: no lower bound
	SavedBefore int64     `json:"saved_before,omitempty"` // Unix ms; 0: no upper bound
}

// Contains reports whether a belongs to the scope.
func (s Scope) Contains(a Activity) bool {
	if !s.Window.Contains(s.By.Of(a)) {
		return false
	}
	return (s.SavedFrom == 0 || a.Created >= s.SavedFrom) && (s.SavedBefore == 0 || a.Created < s.SavedBefore)
}

// Within is the scope narrowed to the part of its window in w: a scan
// lane's slice, or a part counted to balance the lanes.
func (s Scope) Within(w Window) Scope {
	s.Window.Start, s.Window.End = max(s.Window.Start, w.Start), min(s.Window.End, w.End)
	return s
}

func (s Scope) String() string {
	text := s.Window.String()
	if s.By == ByCreated {
		text += " by created"
	}
	switch {
	case s.SavedFrom != 0 && s.SavedBefore != 0:
		text += ", saved in [" + FormatMillis(s.SavedFrom) + ", " + FormatMillis(s.SavedBefore) + ")"
	case s.SavedFrom != 0:
		text += ", saved from " + FormatMillis(s.SavedFrom)
	case s.SavedBefore != 0:
		text += ", saved before " + FormatMillis(s.SavedBefore)
	}
	return text
}

// DataType is a kind of record a source serves (--data): the SIEM agent
// sent activities and alerts; Defender XDR's advanced hunting serves the
// CloudAppEvents table.
type DataType string

// The data types.
const (
	DataActivities     DataType = "activities"
	DataAlerts         DataType = "alerts"
	DataCloudAppEvents DataType = "cloudappevents"
)
