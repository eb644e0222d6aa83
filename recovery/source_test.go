package recovery

import (
	"errors"
	"strings"
	"testing"
)

// TestCursorDecode: a source's position goes through its cursor as it is;
// the zero cursor leaves the position as it is, and a token another
// source made is a checkpoint of another recovery (exit 6).
func TestCursorDecode(t *testing.T) {
	type position struct {
		Offset int64  `json:"offset,omitempty"`
		Hash   string `json:"hash,omitempty"`
	}
	c := NewCursor(position{Offset: 42, Hash: "h"}, "line 7")
	var got position
	if err := c.Decode(&got, "the export"); err != nil || got != (position{42, "h"}) || c.Text != "line 7" {
		t.Fatalf("round trip: %+v, %q, %v", got, c.Text, err)
	}
	got = position{Offset: 1}
	if err := (Cursor{}).Decode(&got, "the export"); err != nil || got.Offset != 1 {
		t.Fatalf("the zero cursor: %+v, %v", got, err)
	}
	err := Cursor{Token: []byte(`["another", "source"]`)}.Decode(&got, "the export")
	if !errors.Is(err, ErrCheckpointUnavailable) || !strings.HasPrefix(err.Error(), "the checkpoint's position in the export is not one this source made: ") {
		t.Fatalf("a foreign token: %v", err)
	}
}
