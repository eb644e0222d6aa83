package recovery

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	got := Buckets(Window{Start: 0, End: 2*3600_000 + 5}, time.Hour)
	want := []Window{{0, 3600_000}, {3600_000, 7200_000}, {7200_000, 7200_005}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Buckets = %v, want %v", got, want)
	}
}

// The SIEM's export is read as the SIEM holds it: CEF lines behind a
// syslog header (placed by rt=, an alert's by start=), JSON lines (by
// timestamp, or created with --by created), bare ids (held, but placed
// nowhere); an id seen twice counts once.
func TestReadReceived(t *testing.T) {
	buckets := Buckets(Window{Start: 1000, End: 4000}, time.Second)
	export := strings.Join([]string{
		"<134>1 2024-05-14T08:00:01.500Z h siem-recovery - - - CEF:0|MCAS|SIEM_Agent|1|EVENT_CATEGORY_LOGIN|Log on|0|externalId=a1 rt=1500 start=1500 end=1500 msg=x",
		"2024-05-14T08:00:01.600Z CEF:0|MCAS|SIEM_Agent|1|ALERT_SYSTEM|t|3|externalId=al1 start=2600 end=2600 msg=y",
		`{"_id":"j1","timestamp":3100,"created":1200}`,
		`{"_id":"j1","timestamp":3100}`,
		"# a comment",
		"bare-id",
		`{"_id":"late","timestamp":9000}`,
		"",
	}, "\n")
	for _, tt := range []struct {
		by   TimeField
		want string
	}{{ByDate, "[1 1 1] outside 1 unplaced 1"}, {ByCreated, "[2 1 0] outside 1 unplaced 1"}} {
		rec, err := ReadReceived(strings.NewReader(export), buckets, tt.by)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%v outside %d unplaced %d", rec.Counts, rec.Outside, rec.Unplaced); got != tt.want {
			t.Errorf("by %s: %s, want %s", tt.by, got, tt.want)
		}
		for _, id := range []string{"a1", "al1", "j1", "bare-id", "late"} {
			if !rec.IDs.Contains(id) {
				t.Errorf("by %s: %s not held", tt.by, id)
			}
		}
		if rec.IDs.Len() != 5 {
			t.Errorf("by %s: %d ids, want 5", tt.by, rec.IDs.Len())
		}
	}
	if _, err := ReadReceived(strings.NewReader("ok\nnot an id | at all\n"), buckets, ByDate); err == nil || !strings.Contains(err.Error(), "line 2 ") {
		t.Errorf("a foreign line: %v", err)
	}
}

func TestGapsMergesAdjacentBuckets(t *testing.T) {
	b := func(start, end int64, src, siem, missing int64, atLeast bool) BucketCount {
		return BucketCount{Window: Window{start, end}, Source: src, SIEM: siem, Missing: missing, AtLeast: atLeast, Listed: missing > 0}
	}
	gaps := Gaps([]BucketCount{
		b(0, 10, 5, 5, 0, false), b(10, 20, 7, 3, 4, false), b(20, 30, 10, 0, 10, true),
		b(30, 40, 2, 2, 0, false), b(40, 50, 3, 1, 2, false),
	})
	want := []Gap{{Window{10, 30}, 17, true, 3, 14}, {Window{40, 50}, 3, false, 1, 2}}
	if !slices.Equal(gaps, want) {
		t.Errorf("Gaps = %+v, want %+v", gaps, want)
	}
}
