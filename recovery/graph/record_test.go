package graph_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"siem-recovery/recovery"
	"siem-recovery/recovery/graph"
	"siem-recovery/recovery/graph/graphtest"
	"siem-recovery/sink"
)

// TestRecordIsTheStreamingRecord: each row comes as the streaming API's
// record: time, tenantId, operationName "Publish", category
// "AdvancedHunting-CloudAppEvents" and the row as properties, its columns
// in the answer's order, dynamic ones as JSON whether the API sent them as
// JSON or as strings holding JSON; the two give the same bytes.
func TestRecordIsTheStreamingRecord(t *testing.T) {
	rows := graphtest.Generate(graphtest.GenerateOptions{Window: testWindow, Count: 16})
	var raws [2][]json.RawMessage
	for i, asJSON := range []bool{false, true} {
		srv := graphtest.New(t, graphtest.Options{Rows: rows, DynamicAsJSON: asJSON})
		src, _ := newSource(t, srv, nil)
		d := drainAll(t, src, graphtest.IDs(rows))
		for _, a := range d.acts {
			raws[i] = append(raws[i], a.Raw)
		}
	}
	for i := range rows {
		if !bytes.Equal(raws[0][i], raws[1][i]) {
			t.Fatalf("row %d: dynamic columns as strings and as JSON give different records:\n%s\n%s", i, raws[0][i], raws[1][i])
		}
	}
	for i, raw := range raws[0] {
		r := rows[i]
		keys, values := topLevel(t, raw)
		if strings.Join(keys, ",") != "time,tenantId,operationName,category,properties" {
			t.Fatalf("record keys %v", keys)
		}
		want := []string{`"` + r.Timestamp.String() + `"`, `"` + testTenant + `"`, `"Publish"`, `"AdvancedHunting-CloudAppEvents"`}
		for k, w := range want {
			if string(values[k]) != w {
				t.Errorf("row %d: %s is %s, want %s", i, keys[k], values[k], w)
			}
		}
		columns, props := topLevel(t, values[4])
		var names []string
		for _, c := range graphtest.Columns {
			names = append(names, c.Name)
		}
		if strings.Join(columns, ",") != strings.Join(names, ",") {
			t.Fatalf("properties columns:\n%v\nwant\n%v", columns, names)
		}
		for k, c := range graphtest.Columns {
			if c.Type == "Object" && props[k][0] == '"' {
				t.Errorf("row %d: dynamic column %s is a string: %s", i, c.Name, props[k])
			}
		}
		if string(props[0]) != `"`+r.Timestamp.String()+`"` || string(props[22]) != `"`+r.ReportID+`"` {
			t.Errorf("row %d: Timestamp %s, ReportId %s", i, props[0], props[22])
		}
	}
}

// topLevel lists the members of a JSON object in order.
func topLevel(t *testing.T, raw []byte) (keys []string, values []json.RawMessage) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", raw)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		keys, values = append(keys, tok.(string)), append(values, v)
	}
	return keys, values
}

// TestCEFMapping: the fields of the agent's CEF line come from the columns
// Microsoft's migration table names (docs/graph-source.md).
func TestCEFMapping(t *testing.T) {
	rows := graphtest.Generate(graphtest.GenerateOptions{Window: testWindow, Count: 56})
	srv := graphtest.New(t, graphtest.Options{Rows: rows})
	src, _ := newSource(t, srv, nil)
	d := drainAll(t, src, graphtest.IDs(rows))
	appIDs := map[int]string{11161: "APPID_O365", 20893: "APPID_OUTLOOK", 15600: "APPID_15600", 20892: "APPID_20892",
		28375: "APPID_28375", 11114: "APPID_SALESFORCE", 11770: "APPID_11770"}
	targets := map[string]string{
		"UserLoggedIn": "", "FileDownloaded": "Q3 budget|draft=v2.xlsx", "FileAccessed": `\\fs01\legal\Données\contrat_été.docx`,
		"SharingSet": "Finance,guest_fabrikam.com#ext#@contoso.onmicrosoft.com", "Send": "", "UserLoginFailed": "Request ID",
		"New-InboxRule": "", "FileUploaded": "rapport annuel 2024.pdf",
	}
	for i, a := range d.acts {
		r := rows[i]
		if r.ActionType == "UserLoggedIn" {
			targets["UserLoggedIn"] = activitygenUser(r)
		}
		desc := r.ActionType
		if r.ObjectName != "" {
			desc += ": " + r.ObjectName
		}
		want := recovery.Activity{
			ID: r.ReportID, Timestamp: r.Timestamp.Millis(), EventTypeName: r.ActionType, EventTypeValue: r.ActivityType,
			Description: desc, AppName: r.Application, UserName: r.AccountID, ClientIP: r.IPAddress, UserAgent: r.UserAgent,
			UniqueServiceAppIDs: appIDs[r.ApplicationID], TargetObjects: targets[r.ActionType], Raw: a.Raw,
		}
		if !equalActivity(a, want) {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, strip(a), strip(want))
		}
	}
	// The CEF line carries them where the mapping says.
	share := d.acts[3]
	line := string(sink.Formatter{Version: "1.0"}.AppendCEF(nil, share))
	// (The header's Name is the formatter's choice: the description, or
	// the operation before its ": ".)
	for _, field := range []string{
		"CEF:0|MCAS|SIEM_Agent|1.0|SharingSet|", "|0|externalId=" + rows[3].ReportID + " ", " msg=SharingSet: Finance ",
		"suser=" + rows[3].AccountID + " ", "destinationServiceName=" + rows[3].Application + " ",
		"requestClientApplication=" + rows[3].UserAgent + " ", "cs2Label=uniqueServiceAppIds cs2=" + appIDs[rows[3].ApplicationID] + " ",
		"cs3Label=targetObjects cs3=Finance,guest_fabrikam.com#ext#@contoso.onmicrosoft.com ",
	} {
		if !strings.Contains(line, field) {
			t.Errorf("the CEF line lacks %q:\n%s", field, line)
		}
	}
	if ip := rows[3].IPAddress; !strings.Contains(line, " dvc="+ip+" ") && !strings.Contains(line, " c6a1="+ip) {
		t.Errorf("the CEF line lacks IPAddress %s:\n%s", ip, line)
	}
}

// activitygenUser is the UPN a log-on row's target account names.
func activitygenUser(r graphtest.Row) string {
	for _, o := range r.ActivityObjects {
		if o.Role == "Target object" {
			return o.Name
		}
	}
	return ""
}

func equalActivity(a, b recovery.Activity) bool {
	return a.ID == b.ID && a.Timestamp == b.Timestamp && a.Created == b.Created && a.EventTypeName == b.EventTypeName &&
		a.EventTypeValue == b.EventTypeValue && a.Description == b.Description && a.AppName == b.AppName &&
		a.UserName == b.UserName && a.ClientIP == b.ClientIP && a.UserAgent == b.UserAgent &&
		a.UniqueServiceAppIDs == b.UniqueServiceAppIDs && a.TargetObjects == b.TargetObjects && a.PolicyIDs == b.PolicyIDs
}

func strip(a recovery.Activity) recovery.Activity { a.Raw = nil; return a }

// streamed is a record as the streaming API writes one to a storage
// account (the shape of streaming-api-storage.md, with the members a
// captured record also has, _TimeReceivedBySvc and Tenant), its values
// made up here: nulls where a column is empty, ISP spelled as the stream
// spells it, ActivityObjects as an array.
const streamed = `{"time":"2026-07-18T17:00:07.0526253Z","tenantId":"0d2ab2c8-5d3a-4b1e-9f6c-7a8b9c0d1e2f","operationName":"Publish","category":"AdvancedHunting-CloudAppEvents","_TimeReceivedBySvc":"2026-07-18T16:57:49.2390000Z",
 "properties":{"ActionType":"MailItemsAccessed","ApplicationId":20893,"AccountDisplayName":"Adele Vance","AccountObjectId":"6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d","AccountId":null,
  "DeviceType":null,"OSPlatform":null,"IPAddress":"2001:db8::7","IsAnonymousProxy":false,"CountryCode":"DK","City":"copenhagen","ISP":"Example Telecom","UserAgent":null,
  "ActivityObjects":[{"Type":"User","Role":"Actor","Name":"Adele Vance","Id":"6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d"},{"Type":"Mailbox","Role":"Target object","Name":"adele.vance@contoso.com","Id":"adele.vance@contoso.com"},{"Type":"Folder","role":"target OBJECT","Id":"Inbox"}],
  "ActivityType":"Basic","ObjectName":null,"ReportId":"b1e2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9_20893","Timestamp":"2026-07-18T16:57:49.239Z","Application":"Microsoft Exchange Online"},
 "Tenant":"DefaultTenant"}`

// TestParseRecordOfAStreamedRecord reads a record as the streaming API
// writes it (a SIEM's export, or the sink's own file on a resume).
func TestParseRecordOfAStreamedRecord(t *testing.T) {
	a, err := graph.ParseRecord([]byte(streamed))
	if err != nil {
		t.Fatal(err)
	}
	want := recovery.Activity{
		ID: "b1e2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9_20893", Timestamp: 1784393869239,
		EventTypeName: "MailItemsAccessed", EventTypeValue: "Basic", Description: "MailItemsAccessed",
		AppName: "Microsoft Exchange Online", UserName: "Adele Vance", ClientIP: "2001:db8::7",
		UniqueServiceAppIDs: "APPID_OUTLOOK", TargetObjects: "adele.vance@contoso.com,Inbox",
	}
	if !equalActivity(a, want) || string(a.Raw) != streamed {
		t.Errorf("got  %+v\nwant %+v", strip(a), want)
	}
	// ActivityObjects as a string holding JSON, and a ReportId escaped.
	asString := strings.Replace(streamed, `"ActivityObjects":[{"Type":"User","Role":"Actor","Name":"Adele Vance","Id":"6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d"},`,
		`"ActivityObjects":"[{\"Type\":\"User\",\"Role\":\"Actor\"},`, 1)
	asString = strings.Replace(asString, `{"Type":"Mailbox","Role":"Target object","Name":"adele.vance@contoso.com","Id":"adele.vance@contoso.com"},{"Type":"Folder","role":"target OBJECT","Id":"Inbox"}]`,
		`{\"Type\":\"Mailbox\",\"Role\":\"Target object\",\"Name\":\"adele.vance@contoso.com\"}]"`, 1)
	asString = strings.Replace(asString, `"ReportId":"b1e2`, `"ReportId":"\u0062\u0031e2`, 1)
	a, err = graph.ParseRecord([]byte(asString))
	if err != nil || a.TargetObjects != "adele.vance@contoso.com" || a.ID != want.ID {
		t.Errorf("ActivityObjects as a string: %+v, %v", strip(a), err)
	}
}

// TestParseRecordRefuses what cannot be placed or recognised.
func TestParseRecordRefuses(t *testing.T) {
	for _, tc := range []struct{ record, err string }{
		{`{"time":`, "not a streaming API record: not valid JSON"},
		{`[1]`, `not a streaming API record: no "properties" object`},
		{`{"properties":"x"}`, `not a streaming API record: no "properties" object`},
		{`{"properties":{"Timestamp":"2026-07-18T16:57:49.239Z"}}`, "the record has an empty ReportId"},
		{`{"properties":{"ReportId":12,"Timestamp":"2026-07-18T16:57:49.239Z"}}`, "the record has an empty ReportId"},
		{`{"properties":{"ReportId":"a\nb","Timestamp":"2026-07-18T16:57:49.239Z"}}`, "the record has a ReportId with a control character"},
		{`{"properties":{"ReportId":"r1"}}`, `record r1: Timestamp "" is not an RFC 3339 time`},
		{`{"properties":{"ReportId":"r1","Timestamp":1784393869239}}`, `record r1: Timestamp "" is not an RFC 3339 time`},
		{`{"properties":{"ReportId":"r1","Timestamp":"yesterday"}}`, `record r1: Timestamp "yesterday" is not an RFC 3339 time`},
	} {
		_, err := graph.ParseRecord([]byte(tc.record))
		if err == nil || err.Error() != tc.err {
			t.Errorf("%s: %v, want %s", tc.record, err, tc.err)
		}
	}
}
