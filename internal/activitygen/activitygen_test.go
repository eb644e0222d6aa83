package activitygen_test

import (
	"encoding/json"
	"strings"
	"testing"

	"siem-recovery/internal/activitygen"
	"siem-recovery/recovery"
)

// Every generated activity is valid JSON in the API's shape: no list under
// the agent's labels, yet the decoder finds cs2 in appId, cs3 in the event
// objects acted on, the user (of a failed log-on too), and created after
// timestamp; both forms of _id occur, and ids do not repeat.
func TestActivitiesHaveTheAPIShape(t *testing.T) {
	seen := map[string]bool{}
	forms := map[bool]int{}
	late := 0
	for i := range 400 {
		for _, bulky := range []bool{false, true} {
			a := activitygen.New(i, 1715673600000+int64(i/3))
			a.Bulky = bulky
			raw := a.Append(nil)
			if !json.Valid(raw) {
				t.Fatalf("activity %d is not valid JSON: %s", i, raw)
			}
			var top map[string]any
			_ = json.Unmarshal(raw, &top)
			for _, label := range []string{"uniqueServiceAppIds", "targetObjects", "policyIDs"} {
				if _, ok := top[label]; ok {
					t.Fatalf("activity %d has a top-level %s: the API's answers have none", i, label)
				}
			}
			got, err := recovery.ParseActivity(raw)
			if err != nil {
				t.Fatalf("activity %d: %v", i, err)
			}
			want := map[activitygen.Target]string{
				activitygen.TargetNone: "", activitygen.TargetAccount: a.User, activitygen.TargetObject: a.Event.Object,
				activitygen.TargetShare:      a.Event.Object + ",guest_fabrikam.com#ext#@contoso.onmicrosoft.com",
				activitygen.TargetParameters: "Request ID,Pass-through authentication",
			}[a.Event.Target]
			if got.TargetObjects != want || !strings.HasPrefix(got.UniqueServiceAppIDs, "APPID_") || got.UserName != a.User ||
				got.Created <= got.Timestamp || got.Created != a.Created {
				t.Fatalf("activity %d decodes as %+v; want cs3 %q, an APPID_ cs2, user %q, created %d after timestamp", i, got, want, a.User, a.Created)
			}
			if !bulky {
				if seen[got.ID] {
					t.Fatalf("activity %d repeats the _id %s", i, got.ID)
				}
				seen[got.ID] = true
				forms[strings.Count(got.ID, "_") == 2]++
				if got.Created-got.Timestamp > 3600_000 {
					late++
				}
			}
			if size := len(raw); bulky && (size < 3300 || size > 4800) || !bulky && (size < 1800 || size > 3000) {
				t.Errorf("activity %d (bulky %v) is %d bytes", i, bulky, size)
			}
		}
	}
	if forms[true] == 0 || forms[false] == 0 || late == 0 {
		t.Fatalf("ids in the tenant form: %d, in the time form: %d; saved hours late: %d", forms[true], forms[false], late)
	}
}

// Generated alerts decode as alerts of each kind of policy, with unique
// ids and their own times.
func TestAppendAlert(t *testing.T) {
	seen := map[string]bool{}
	types := map[string]bool{}
	for i := range 60 {
		ts := int64(1715670000000 + i*1000)
		raw := activitygen.AppendAlert(nil, i, ts)
		if !json.Valid(raw) {
			t.Fatalf("alert %d is not JSON: %s", i, raw)
		}
		a, err := recovery.DecodeAlert(raw)
		if err != nil {
			t.Fatalf("alert %d: %v", i, err)
		}
		if a.Timestamp != ts || seen[a.ID] || a.Name == "" || a.UserName == "" || a.UniqueServiceAppIDs == "" {
			t.Errorf("alert %d: %+v", i, a)
		}
		seen[a.ID] = true
		types[a.EventTypeName] = true
	}
	if len(types) != len(activitygen.Policies) {
		t.Errorf("alert types %v: want one per policy", types)
	}
}
