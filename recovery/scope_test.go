package recovery

import (
	"encoding/json"
	"testing"
)

func TestTimeField(t *testing.T) {
	a := Activity{Timestamp: 100, Created: 250}
	for _, tc := range []struct {
		name string
		f    TimeField
		of   int64
	}{{"date", ByDate, 100}, {"created", ByCreated, 250}} {
		f, err := ParseTimeField(tc.name)
		if err != nil || f != tc.f || f.String() != tc.name || f.Of(a) != tc.of {
			t.Errorf("%s: %v %v %q %d", tc.name, f, err, f.String(), f.Of(a))
		}
	}
	if _, err := ParseTimeField("timestamp"); err == nil || err.Error() != `"timestamp" is neither date nor created` {
		t.Errorf("timestamp: %v", err)
	}
	// A checkpoint written before --by has no "by": date.
	var s Scope
	if err := json.Unmarshal([]byte(`{"window":{"start":1,"end":2},"by":""}`), &s); err != nil || s.By != ByDate {
		t.Errorf("empty by: %v %v", s.By, err)
	}
	b, _ := json.Marshal(Scope{Window: Window{Start: 1, End: 2}, By: ByCreated, SavedBefore: 9})
	if string(b) != `{"window":{"start":1,"end":2},"by":"created","saved_before":9}` {
		t.Errorf("marshalled %s", b)
	}
	if err := json.Unmarshal([]byte(`{"by":"mtime"}`), &s); err == nil {
		t.Error("an unknown field was read")
	}
}

func TestScopeContains(t *testing.T) {
	w := Window{Start: 1000, End: 2000}
	for _, tc := range []struct {
		scope Scope
		a     Activity
		want  bool
	}{
		{Scope{Window: w}, Activity{Timestamp: 1000, Created: 5000}, true},
		{Scope{Window: w}, Activity{Timestamp: 2000, Created: 1500}, false},
		{Scope{Window: w, By: ByCreated}, Activity{Timestamp: 10, Created: 1999}, true},
		{Scope{Window: w, By: ByCreated}, Activity{Timestamp: 1500, Created: 2000}, false},
		{Scope{Window: w, SavedFrom: 3000}, Activity{Timestamp: 1500, Created: 2999}, false},
		{Scope{Window: w, SavedFrom: 3000}, Activity{Timestamp: 1500, Created: 3000}, true},
		{Scope{Window: w, SavedBefore: 3000}, Activity{Timestamp: 1500, Created: 3000}, false},
		{Scope{Window: w, SavedFrom: 2500, SavedBefore: 3000}, Activity{Timestamp: 1500, Created: 2999}, true},
	} {
		if got := tc.scope.Contains(tc.a); got != tc.want {
			t.Errorf("%s contains %+v: %v, want %v", tc.scope, tc.a, got, tc.want)
		}
	}
	s := Scope{Window: w, By: ByCreated, SavedFrom: 1500, SavedBefore: 1600}
	if got := s.String(); got != "[1970-01-01T00:00:01.000Z, 1970-01-01T00:00:02.000Z) by created, saved in [1970-01-01T00:00:01.500Z, 1970-01-01T00:00:01.600Z)" {
		t.Errorf("String %q", got)
	}
}
