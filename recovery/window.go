package recovery

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is the half-open time range [Start, End) of a recovery, in Unix
// milliseconds, as MCAS timestamps its activities.
type Window struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// Contains reports whether an activity stamped ts (ms) belongs to the window.
func (w Window) Contains(ts int64) bool { return w.Start <= ts && ts < w.End }

// Fraction tells how far into the window ts lies, from 0 to 1.
func (w Window) Fraction(ts int64) float64 {
	switch {
	case ts <= w.Start:
		return 0
	case ts >= w.End:
		return 1
	}
	return float64(ts-w.Start) / float64(w.End-w.Start)
}

// Validate returns an error when the window is empty or reversed.
func (w Window) Validate() error {
	if w.End <= w.Start {
		return fmt.Errorf("the window ends (%s) at or before it starts (%s)", FormatMillis(w.End), FormatMillis(w.Start))
	}
	return nil
}

func (w Window) String() string {
	return "[" + FormatMillis(w.Start) + ", " + FormatMillis(w.End) + ")"
}

// FormatMillis renders Unix milliseconds as RFC 3339 UTC with milliseconds.
func FormatMillis(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// ParseTime reads a window bound: an RFC 3339 date (with or without
// fractional seconds) or Unix epoch milliseconds.
func ParseTime(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty date")
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms < 0 {
			return 0, fmt.Errorf("%q is a negative epoch", s)
		}
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither an RFC 3339 date (2024-05-01T10:00:00Z) nor epoch milliseconds", s)
	}
	return t.UnixMilli(), nil
}

// parseJSONTime reads a window bound from a JSON value: a string (RFC 3339
// or digits) or a number of epoch milliseconds.
func parseJSONTime(raw json.RawMessage) (int64, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return ParseTime(s)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, fmt.Errorf("%s is neither a date string nor epoch milliseconds", raw)
	}
	ms, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil || ms < 0 {
		return 0, fmt.Errorf("%s is not a whole, non-negative number of epoch milliseconds", raw)
	}
	return ms, nil
}

// ParseAlert reads the window out of an MCAS system alert in JSON: its
// startDate and endDate (or start and end), each an RFC 3339 string or
// epoch milliseconds.
func ParseAlert(data []byte) (Window, error) {
	var alert map[string]json.RawMessage
	if err := json.Unmarshal(data, &alert); err != nil {
		return Window{}, fmt.Errorf("not a JSON object: %w", err)
	}
	bound := func(keys ...string) (int64, error) {
		for _, k := range keys {
			if raw, ok := alert[k]; ok && string(raw) != "null" {
				ms, err := parseJSONTime(raw)
				if err != nil {
					return 0, fmt.Errorf("%s: %w", k, err)
				}
				return ms, nil
			}
		}
		return 0, fmt.Errorf("no %q (or %q) key", keys[0], keys[1])
	}
	start, err := bound("startDate", "start")
	if err != nil {
		return Window{}, err
	}
	end, err := bound("endDate", "end")
	if err != nil {
		return Window{}, err
	}
	return Window{Start: start, End: end}, nil
}
