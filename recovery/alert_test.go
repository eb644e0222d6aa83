package recovery

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Alerts in the shape of the alerts API's list answer (defender-docs
// api-alerts-list.md) and of a real alert object (ALERT_BY_ID_DATA in
// demisto/content's MCAS test data: policy, numbers as strings, nulls,
// audits) decode to the fields of the agent's alert lines.
func TestDecodeAlert(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "alerts", "list-answer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var answer struct{ Data []json.RawMessage }
	if err := json.Unmarshal(data, &answer); err != nil {
		t.Fatal(err)
	}
	want := []Activity{
		{Kind: KindAlert, ID: "6571c0ffee0ddba11ad5e001", Timestamp: 1715677000123, Created: 1715677000123,
			EventTypeName: "ALERT_SUSPICIOUS_ACTIVITY", Name: "Honeytoken activity",
			Description: "Megan Bowen performed 14 suspicious activities; MITRE technique Account Discovery (T1087)",
			UserName:    "megan.bowen@contoso.com", AppName: "Active Directory", UniqueServiceAppIDs: "APPID_20940",
			PolicyIDs: "6571c0ffee0ddba11ad5e0aa", RiskScore: "41", Severity: "MEDIUM",
			URL: "https://contoso.portal.cloudappsecurity.com/#/alerts/6571c0ffee0ddba11ad5e001"},
		{Kind: KindAlert, ID: "6571c0ffee0ddba11ad5e002", Timestamp: 1715677311456, Created: 1715677311456,
			EventTypeName: "ALERT_CABINET_EVENT_MATCH_FILE", Name: "Block PDF uploads",
			Description: "File policy 'Block PDF uploads' was matched by 'rapport annuel=2024|final.pdf'\nsecond line",
			UserName:    "adele.vance@contoso.com", AppName: "Microsoft OneDrive for Business", UniqueServiceAppIDs: "APPID_15600",
			TargetObjects: "1715677300001_9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a,1715677300002_0a1b2c3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d",
			PolicyIDs:     "6571c0ffee0ddba11ad5e0cc", RiskScore: "19", Severity: "LOW",
			URL: "https://contoso.portal.cloudappsecurity.com/#/alerts/6571c0ffee0ddba11ad5e002"},
		{Kind: KindAlert, ID: "6571c0ffee0ddba11ad5e003", Timestamp: 1715677999000, Created: 1715677999000,
			EventTypeName: "ALERT_SYSTEM", Name: "New admin location", Description: "New administrator location: Denmark",
			Severity: "HIGH"},
	}
	if len(answer.Data) != len(want) {
		t.Fatalf("%d alerts in the answer, want %d", len(answer.Data), len(want))
	}
	for i, raw := range answer.Data {
		a, err := DecodeAlert(raw)
		if err != nil {
			t.Fatalf("alert %d: %v", i, err)
		}
		if string(a.Raw) != string(raw) {
			t.Errorf("alert %d: Raw is not the object as given", i)
		}
		a.Raw = nil
		if fmt.Sprintf("%+v", a) != fmt.Sprintf("%+v", want[i]) {
			t.Errorf("alert %d:\ngot  %+v\nwant %+v", i, a, want[i])
		}
	}
}

func TestDecodeAlertErrors(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{`{"_id":"x","timestamp":1`, "not valid JSON"},
		{`[1]`, "not an alert object"},
		{`{"timestamp":1}`, `the alert has no "_id"`},
		{`{"_id":"x"}`, `alert x has no "timestamp"`},
		{`{"_id":"x","timestamp":"yesterday"}`, `alert x: "timestamp" "yesterday" is not epoch milliseconds`},
		{`{"_id":"x","timestamp":1.5}`, `"timestamp" 1.5 is not epoch milliseconds`},
	}
	for _, tt := range tests {
		_, err := DecodeAlert([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("DecodeAlert(%s) = %v, want an error with %q", tt.in, err, tt.wantErr)
		}
	}
	// The docs type _id as int: a number is read as its digits.
	a, err := DecodeAlert([]byte(`{"_id":15795464,"timestamp":1621941916475,"entities":"not a list","policy":7}`))
	if err != nil || a.ID != "15795464" || a.EventTypeName != "ALERT_SYSTEM" {
		t.Errorf("numeric _id: %+v, %v", a, err)
	}
}

func TestAlertType(t *testing.T) {
	for policyType, want := range map[string]string{
		"AUDIT":             "ALERT_CABINET_EVENT_MATCH_AUDIT",
		"FILE":              "ALERT_CABINET_EVENT_MATCH_FILE",
		"INLINE":            "ALERT_CABINET_INLINE_EVENT_MATCH",
		"SESSION":           "ALERT_CABINET_INLINE_EVENT_MATCH",
		"ANOMALY_DETECTION": "ALERT_SUSPICIOUS_ACTIVITY",
		"ANOMALY_DISCOVERY": "ALERT_DISCOVERY_ANOMALY_DETECTION",
		"NEW_SERVICE":       "ALERT_CABINET_DISCOVERY_NEW_SERVICE",
		"anomaly_detection": "ALERT_SUSPICIOUS_ACTIVITY",
		"APP_PERMISSION":    "ALERT_APP_PERMISSION",
		"odd type|x":        "ALERT_ODD_TYPE_X",
		"":                  "ALERT_SYSTEM",
	} {
		if got := AlertType(policyType); got != want {
			t.Errorf("AlertType(%q) = %q, want %q", policyType, got, want)
		}
	}
}

// The CEF Name of an activity is its operation: description_metadata's
// operation_name when the object has it, else the description up to its
// first ": " (Microsoft's samples: |View report| beside msg=View report:
// ServiceNow Report 23).
func TestActivityName(t *testing.T) {
	tests := []struct{ raw, want string }{
		{`{"_id":"a","timestamp":1,"description":"View report: ServiceNow Report 23","description_metadata":{"operation_name":"View report","colon":":","target_object":"ServiceNow Report 23"}}`, "View report"},
		{`{"_id":"a","timestamp":1,"description":"View report: ServiceNow Report 23"}`, "View report"},
		{`{"_id":"a","timestamp":1,"description":"Log out"}`, "Log out"},
		{`{"_id":"a","timestamp":1,"description":"Download file: Über_日本.docx","description_metadata":null}`, "Download file"},
		{`{"_id":"a","timestamp":1,"description":"Failed log on (Failure message: Invalid username or password.)"}`, "Failed log on (Failure message: Invalid username or password.)"},
		{`{"_id":"a","timestamp":1,"description":"Send mail: \"Réunion: 会议\" to 3"}`, "Send mail"},
		{`{"_id":"a","timestamp":1,"description":"FilePreviewed","description_metadata":{"operation_name":"FilePreviewed"},"description_metadata":{"operation_name":"second"}}`, "FilePreviewed"},
		{`{"_id":"a","timestamp":1,"description":"x: y","description_metadata":{"operation_name":""}}`, "x"},
		{`{"_id":"a","timestamp":1,"description":": leading colon"}`, ": leading colon"},
	}
	for _, tt := range tests {
		a, err := ParseActivity([]byte(tt.raw))
		if err != nil {
			t.Fatal(err)
		}
		if a.Name != tt.want {
			t.Errorf("%s: Name %q, want %q", tt.raw, a.Name, tt.want)
		}
	}
}
