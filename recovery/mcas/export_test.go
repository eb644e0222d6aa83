package mcas

import (
	"encoding/json"

	"siem-recovery/recovery"
)

// Budget is what the Source's requests spend, and every scope and lane
// read through it.
func (s *Source) Budget() *Budget { return s.budget }

// SetMaxAnswer lowers the byte cap of one answer, so that a test can pass
// it without sending 32 MiB.
func SetMaxAnswer(s *Source, n int64) { s.maxAnswer = n }

// Continuation is the scan continuation a cursor of the Source holds (nil
// for none), and SeenIDs the ids a plain-paging cursor lists at its
// millisecond.
func Continuation(c recovery.Cursor) json.RawMessage {
	p, _ := decodePosition(c)
	return p.NextFilters
}

func SeenIDs(c recovery.Cursor) []string {
	p, _ := decodePosition(c)
	return p.SeenIDs
}

// BudgetOf is the Budget an activities or alerts source of this package
// spends (nil for another source).
func BudgetOf(src recovery.Source) *Budget {
	switch s := src.(type) {
	case *Source:
		return s.budget
	case alertReader:
		return s.s.budget
	}
	return nil
}
