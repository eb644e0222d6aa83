package recovery

import (
	"bytes"
	"encoding/json"
	"errors"
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

// Bounds of a plausible window bound: MCAS began keeping activities in 2015,
// and RFC 3339 ends with the year 9999.
var (
	mcasBegan = time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	lastYear  = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixMilli()
)

// The reasons a window bound is refused; a *TimeError wraps one of them.
var (
	// ErrNotATime: neither an RFC 3339 date nor a whole number.
	ErrNotATime = errors.New("not an RFC 3339 date nor epoch milliseconds")
	// ErrEpochSeconds: a number that is a plausible date only in seconds
	// (what date +%s prints); in milliseconds it would be 1970.
	ErrEpochSeconds = errors.New("epoch seconds, not milliseconds")
	// ErrEpochMicros: a number that is a plausible date only in
	// microseconds.
	ErrEpochMicros = errors.New("epoch microseconds, not milliseconds")
	// ErrBeforeMCAS: a date before 2015 (before 1970 included): MCAS holds
	// no activity that old, so the date is a mistake.
	ErrBeforeMCAS = errors.New("before 2015, when MCAS began")
	// ErrTooLate: a date after the year 9999.
	ErrTooLate = errors.New("after the year 9999")
)

// TimeError is a window bound that cannot be right. It carries the value as
// given and, for a number in the wrong unit, the value in milliseconds, so
// that the caller can name its flag and suggest the fix.
type TimeError struct {
	Field  string // the alert's key ("startDate"), empty for a bare value
	Value  string // as given
	Kind   error  // one of ErrNotATime, ErrEpochSeconds, ErrEpochMicros, ErrBeforeMCAS, ErrTooLate
	Millis int64  // Value as epoch milliseconds: read as given, or converted from its unit
}

func (e *TimeError) Error() string {
	var b strings.Builder
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	fmt.Fprintf(&b, "%q is ", e.Value)
	switch e.Kind {
	case ErrEpochSeconds, ErrEpochMicros:
		fmt.Fprintf(&b, "%v (%d ms, %s)", e.Kind, e.Millis, FormatMillis(e.Millis))
	case ErrBeforeMCAS:
		fmt.Fprintf(&b, "%s, %v", FormatMillis(e.Millis), e.Kind)
	case ErrNotATime:
		b.WriteString("neither an RFC 3339 date (2024-05-01T10:00:00Z) nor epoch milliseconds")
	default:
		b.WriteString(e.Kind.Error())
	}
	return b.String()
}

func (e *TimeError) Unwrap() error { return e.Kind }

// ParseTime reads a window bound: an RFC 3339 date (with or without
// fractional seconds) or Unix epoch milliseconds. A date before 2015 is
// refused (ErrBeforeMCAS), and so is a number that is a plausible date only
// in seconds or microseconds: read as milliseconds it would silently make
// a window in 1970 or in the far future. Errors are *TimeError.
func ParseTime(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty date")
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return epochMillis(s, n)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, &TimeError{Value: s, Kind: ErrNotATime}
	}
	ms := t.UnixMilli()
	if ms < mcasBegan {
		return 0, &TimeError{Value: s, Kind: ErrBeforeMCAS, Millis: ms}
	}
	return ms, nil
}

// epochMillis checks a number meant as epoch milliseconds.
func epochMillis(s string, n int64) (int64, error) {
	plausible := func(ms int64) bool { return mcasBegan <= ms && ms <= lastYear }
	switch {
	case plausible(n):
		return n, nil
	case n >= 0 && n < mcasBegan && n <= lastYear/1000 && plausible(n*1000):
		return 0, &TimeError{Value: s, Kind: ErrEpochSeconds, Millis: n * 1000}
	case n > lastYear && plausible(n/1000):
		return 0, &TimeError{Value: s, Kind: ErrEpochMicros, Millis: n / 1000}
	case n > lastYear:
		return 0, &TimeError{Value: s, Kind: ErrTooLate, Millis: n}
	}
	return 0, &TimeError{Value: s, Kind: ErrBeforeMCAS, Millis: n}
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
	if err != nil {
		return 0, fmt.Errorf("%s is not a whole number of epoch milliseconds", raw)
	}
	return epochMillis(n.String(), ms)
}

// ParseAlert reads the window out of an MCAS system alert in JSON: its
// startDate and endDate (or start and end), each an RFC 3339 string or
// epoch milliseconds. A key given twice counts the first time, as in an
// activity.
func ParseAlert(data []byte) (Window, error) {
	alert, err := firstKeys(data)
	if err != nil {
		return Window{}, fmt.Errorf("not a JSON object: %w", err)
	}
	bound := func(keys ...string) (int64, error) {
		for _, k := range keys {
			if raw, ok := alert[k]; ok && string(raw) != "null" {
				ms, err := parseJSONTime(raw)
				var te *TimeError
				if errors.As(err, &te) {
					te.Field = k
					return 0, te
				}
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

// firstKeys decodes a JSON object into its members, each key's first
// value: encoding/json keeps the last of a key given twice.
func firstKeys(data []byte) (map[string]json.RawMessage, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil { // the whole text, checked
		return nil, err
	}
	first := make(map[string]json.RawMessage, len(all))
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // {
		return nil, err
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if k := key.(string); first[k] == nil {
			first[k] = v
		}
	}
	return first, nil
}
