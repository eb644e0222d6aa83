package recovery

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// Cursor is where a recovery stands in its source: enough to fetch the next
// page after a restart, and nothing that is secret. Each source uses the
// fields of its own paging mode and leaves the others zero.
type Cursor struct {
	// NextFilters is the "nextQueryFilters" of the last MCAS scan-mode
	// answer, kept as the API sent it: the filters of the next request.
	NextFilters json.RawMessage `json:"next_filters,omitempty"`
	// Timestamp and SeenIDs are the date cursor of plain paging: the
	// timestamp (ms) of the last activity delivered, and the ids already
	// delivered at that very millisecond (many activities may share one).
	Timestamp int64    `json:"timestamp,omitempty"`
	SeenIDs   []string `json:"seen_ids,omitempty"`
	// Offset and Line locate the next line of a JSON-lines export; LineHash
	// identifies the line before Offset, so that a resume notices an export
	// that changed underneath it.
	Offset   int64  `json:"offset,omitempty"`
	Line     int64  `json:"line,omitempty"`
	LineHash string `json:"line_hash,omitempty"`
}

// IsZero reports whether the cursor is the start of the window.
func (c Cursor) IsZero() bool {
	return len(c.NextFilters) == 0 && c.Timestamp == 0 && len(c.SeenIDs) == 0 && c.Offset == 0 && c.Line == 0
}

func (c Cursor) String() string {
	var parts []string
	if len(c.NextFilters) > 0 {
		// The continuation is the API's opaque filter; its bytes mean
		// nothing to people (status --json shows them).
		parts = append(parts, "at a scan continuation")
	}
	if c.Timestamp != 0 {
		parts = append(parts, fmt.Sprintf("after %s (%d ids at that ms)", FormatMillis(c.Timestamp), len(c.SeenIDs)))
	}
	if c.Offset != 0 || c.Line != 0 {
		parts = append(parts, fmt.Sprintf("after line %d (byte %d)", c.Line, c.Offset))
	}
	if len(parts) == 0 {
		return "at the start of the window"
	}
	return strings.Join(parts, ", ")
}

// Page is one batch of activities from a source, in the window, matching
// the filter, in source order.
type Page struct {
	Activities []Activity
	// Next is the cursor to fetch the page after this one.
	Next Cursor
	// Last is true when no page follows: the window is exhausted.
	Last bool
	// Progress is how much of the window lies behind Next, from 0 to 1.
	Progress float64
	// Requests is the number of API requests this page cost (0 for files).
	Requests int
}

// Source yields the window's activities page by page.
type Source interface {
	// Fetch returns the page that starts at cur; the zero Cursor is the
	// start of the window. Fetch retries what is worth retrying itself and
	// returns an error only when the run cannot go on.
	Fetch(ctx context.Context, cur Cursor) (Page, error)
}
