package recovery

import (
	"encoding/json"
)

// Cursor is where a pass stands in its source. Token is the source's own
// record of where its next page starts (the API's scan continuation or
// plain-paging cursor, an export's offset), opaque to everything but the
// source that made it and never secret; Text says the same for people, or
// is empty when the token means nothing to them. The zero Cursor is the
// start of the pass's scope. A checkpoint holds one per pass, and one per
// scan lane of a pass read in lanes.
type Cursor struct {
	Token json.RawMessage `json:"token,omitempty"`
	Text  string          `json:"text,omitempty"`
}

// NewCursor is the Cursor of a source's position pos, a value of the
// source's own type, with text for people ("" when it means nothing to
// them).
func NewCursor(pos any, text string) Cursor {
	token, err := json.Marshal(pos)
	if err != nil { // a source's position is plain numbers and strings
		panic(err)
	}
	return Cursor{Token: token, Text: text}
}

// Decode reads the position the cursor records into pos, a pointer to the
// position type of the source that made it (within, for messages: "the
// API", "the export"); the zero Cursor leaves pos as it is. A token that
// is not such a position means the checkpoint was made by another source:
// ErrCheckpointUnavailable.
func (c Cursor) Decode(pos any, within string) error {
	if c.IsZero() {
		return nil
	}
	if err := json.Unmarshal(c.Token, pos); err != nil {
		return Problemf(ErrCheckpointUnavailable, "start this recovery afresh with another --checkpoint",
			"the checkpoint's position in %s is not one this source made: %w", within, err)
	}
	return nil
}

// IsZero reports whether the cursor is the start of the scope.
func (c Cursor) IsZero() bool { return len(c.Token) == 0 }

func (c Cursor) String() string {
	switch {
	case c.Text != "":
		return c.Text
	case c.IsZero():
		return "at the start of the window"
	}
	return "past the start of the window"
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

// Over is src reading scope when it can (a Scoped source), else src itself:
// a source that cannot read another scope only ever has the one it was
// made for.
func Over(src Source, scope Scope) Source {
	if s, ok := src.(Scoped); ok {
		return s.Over(scope)
	}
	return src
}
