package recovery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"

	"siem-recovery/internal/activitygen"
)

func TestParseActivity(t *testing.T) {
	raw := `{"_id":"1511373015679_167ae3eb","timestamp":1511373004000,"eventTypeName":"EVENT_CATEGORY_LOGOUT","eventTypeValue":"EVENT_LOGOUT",
		"description":"Log out","appName":"ServiceNow","user":{"userName":"admin@contoso.com"},"device":{"clientIP":"13.82.149.151","userAgent":"curl/8"},
		"uniqueServiceAppIds":["APPID_SERVICENOW"],"targetObjects":[{"name":"admin@contoso.com"},"b",3],"policyIDs":[]}`
	a, err := ParseActivity([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	want := Activity{ID: "1511373015679_167ae3eb", Timestamp: 1511373004000, EventTypeName: "EVENT_CATEGORY_LOGOUT",
		EventTypeValue: "EVENT_LOGOUT", Description: "Log out", Name: "Log out", AppName: "ServiceNow", UserName: "admin@contoso.com",
		ClientIP: "13.82.149.151", UserAgent: "curl/8", UniqueServiceAppIDs: "APPID_SERVICENOW", TargetObjects: "admin@contoso.com,b,3"}
	a.Raw = nil
	if fmt.Sprint(a) != fmt.Sprint(want) {
		t.Fatalf("got  %+v\nwant %+v", a, want)
	}
}

func TestParseActivityErrors(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{`{"_id":"x","timestamp":1`, "not valid JSON"},
		{`[1]`, "not an activity object"},
		{`{"timestamp":1}`, `no "_id"`},
		{`{"_id":"x"}`, `activity x has no "timestamp"`},
		{`{"_id":"x","timestamp":"2024-01-01"}`, `"timestamp" "2024-01-01" is not epoch milliseconds`},
		{`{"_id":"x","timestamp":1.5}`, "is not epoch milliseconds"},
	}
	for _, tt := range tests {
		_, err := ParseActivity([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseActivity(%s) = %v, want error containing %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestTokenRedacted(t *testing.T) {
	secret := "s3cr3t-token-value-that-must-never-be-printed"
	tok := NewToken(secret)
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "token", tok)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "token", tok)
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s %q", tok, tok, tok, tok, tok), logged.String()} {
		if strings.Contains(s, secret) {
			t.Fatalf("token leaked: %s", s)
		}
	}
	if tok.Reveal() != secret {
		t.Fatal("Reveal lost the secret")
	}
}

// exampleActivities are the lines of the bundled example export.
func exampleActivities(tb testing.TB) [][]byte {
	tb.Helper()
	data, err := os.ReadFile("../docs/examples/activities.jsonl")
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) > 0 {
			out = append(out, line)
		}
	}
	return out
}

// activityCorpus is every activity shape the tests know: the bundled
// export, the benchmark generator's objects, and hand-written oddities
// (escaped names, duplicate keys, fields of unexpected types, spaces
// everywhere).
func activityCorpus(t *testing.T) [][]byte {
	t.Helper()
	out := exampleActivities(t)
	for i := range 200 {
		out = append(out, activitygen.Append(nil, i, 1715673600000+int64(i)))
	}
	for _, s := range []string{
		` { "_id" : "a" , "timestamp" : -5 , "description" : "x" , "user" : { "userName" : "u" } } `,
		"{\"_id\":\"a\",\"timestamp\":1,\n\t\"device\":{\"clientIP\":\"::1\",\"clientIP\":\"2\",\"userAgent\":7}}",
		`{"_id":"first","_id":"second","timestamp":1,"timestamp":"x","appName":"A","appName":"B"}`,
		`{"\u005fid":"escaped-key","timestamp":1,"description":"é \u00e9 \ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t"}`,
		`{"_id":"a","timestamp":1,"user":"not an object","user":{"userName":"second user ignored"}}`,
		`{"_id":"a","timestamp":1,"user":{"userName":["x"]},"device":null,"eventTypeName":5,"eventTypeValue":true}`,
		`{"_id":"a","timestamp":1,"uniqueServiceAppIds":"one","targetObjects":[1,2.5e3,true,false,null,"s",{"id":9,"displayName":"d"},{"other":1},{"id":{"k": [1, 2]}},[ 1 , "x" ]],"policyIDs":null}`,
		`{"_id":"a","timestamp":1,"targetObjects":[{"name":"n","name":"second"},{"displayName":7}],"policyIDs":7}`,
		`{"_id":"a","timestamp":1,"deep":[[[[{"a":[{"b":{}}]}]]]],"n":[0,-0,0.5,1E+2,1e-2,-12.75e10]}`,
		`{"_id":"a","timestamp":0}`,
		// The API's shape: cs2 from appId, cs3 from mainInfo.eventObjects.
		`{"_id":"97134000_15600_x","appId":15600,"timestamp":1,"created":"1595096586840","mainInfo":{"eventObjects":[{"objType":1,"role":3,"name":"https://s/p/"},{"role":4,"name":"A T","id":"a@t"},{"role":"3","name":null,"id":"by-id"},{"role":3,"id":7},{"role":3},{"role":3.0,"name":"not 3"},{"role":"03","displayName":"d"},null,[3],"s"],"type":"basic"}}`,
		`{"_id":"a","timestamp":1,"appId":"11161","createdRaw":5,"mainInfo":null,"mainInfo":{"eventObjects":[{"role":3,"name":"second mainInfo"}]}}`,
		`{"_id":"a","timestamp":1,"appId":null,"created":null,"createdRaw":"7","mainInfo":{"eventObjects":{"role":3,"name":"not a list"}}}`,
		`{"_id":"a","timestamp":1,"appId":-3,"created":1.5,"mainInfo":{"eventObjects":[{"role":3,"role":4,"name":"first role counts","name":"x"}],"eventObjects":[{"role":3,"name":"second list"}]}}`,
		`{"_id":"a","timestamp":1,"appId":1234567890123456789,"created":"-5","mainInfo":{"eventObjects":[]}}`,
		`{"_id":"a","timestamp":1,"appId":"0011114","uniqueServiceAppIds":null,"targetObjects":null,"mainInfo":{"eventObjects":[{"role":3,"name":"t"}]}}`,
		`{"_id":"a","timestamp":1,"appId":11114,"uniqueServiceAppIds":[],"targetObjects":[],"mainInfo":{"eventObjects":[{"role":3,"name":"t"}]}}`,
		`{"_id":"a","timestamp":1,"failedUserData":{"userName":"failed@x"},"user":{"userTags":[]}}`,
		`{"_id":"a","timestamp":1,"mainInfo":{"eventObjects":[{"role":3,"name":"t1"},{"role":3,"name":"t2"},{"role":4,"name":"actor"},{"role":3,"name":"t3"},{"role":3,"id":"t4"},{"role":3,"name":"t5"},{"role":"3","name":"t6"}]}}`,
		`{"_id":"a","timestamp":1,"user":{"userName":null},"failedUserData":null,"failedUserData":{"userName":"second ignored"}}`,
		`{"_id":"a","timestamp":1,"user":{"userName":"u"},"failedUserData":{"userName":"f"}}`,
		`{"_id":"a","timestamp":1,"appId":"1e3","appId":5,"created":"","mainInfo":{"eventObjects":[{"role":"\u0033","name":"\u00e9t\u00e9"},{"name":"x","role":" 3"}]}}`,
	} {
		out = append(out, []byte(s))
	}
	return out
}

// The scanner decodes every field as the fastjson decoder it replaced
// did.
func TestParseActivityMatchesReference(t *testing.T) {
	for _, raw := range activityCorpus(t) {
		got, err := ParseActivity(raw)
		want, wantErr := parseActivityReference(raw)
		if err != nil || wantErr != nil {
			t.Fatalf("ParseActivity(%s): %v; reference: %v", raw, err, wantErr)
		}
		if !bytes.Equal(got.Raw, raw) {
			t.Fatalf("Raw is not the input")
		}
		got.Raw, want.Raw = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseActivity(%s)\n got  %+v\n want %+v", raw, got, want)
		}
	}
}

func TestParseActivityFieldValues(t *testing.T) {
	a, err := ParseActivity([]byte(`{"_id":"a","timestamp":1,"description":"é \u00e9 \ud83d\ude00 \ud83d x \udc00 \"q\" \\ \/ \b\f\n\r\t","targetObjects":[1,2.5e3,true,null,"s",{"id":9,"displayName":"d"},{"other":1},{"id":{"k": [1, " 2"]}},[ 1 , "x" ]]}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "é é 😀 \uFFFD x \uFFFD \"q\" \\ / \b\f\n\r\t"; a.Description != want {
		t.Errorf("Description = %q, want %q", a.Description, want)
	}
	if want := `1,2.5e3,true,null,s,d,,{"k":[1," 2"]},[1,"x"]`; a.TargetObjects != want {
		t.Errorf("TargetObjects = %q, want %q", a.TargetObjects, want)
	}
}

// An activity as the API returns it has no list under the agent's labels:
// cs2 comes from appId, cs3 from the event objects with role 3, and
// numbers may be strings.
func TestParseActivityRealShape(t *testing.T) {
	tests := []struct {
		name, raw                string
		created                  int64
		user, appIDs, targets, p string
	}{
		{"file preview, tenant form of _id", `{"_id":"97134000_15600_2b1e","tenantId":97134000,"appId":15600,"saasId":15600,"timestamp":1595096313000,
			"created":1595096586840,"createdRaw":1595096586840,"mainInfo":{"eventObjects":[{"objType":1,"role":3,"tags":[],"name":"https://contoso-my.sharepoint.com/personal/megan/","id":"c1"},
			{"objType":21,"role":4,"name":"Megan Bowen","id":"megan@contoso.com"},{"objType":23,"role":4,"name":"Megan Bowen","id":"9a7f"}],"type":"basic"},
			"resolvedActor":{"id":"9a7f","saasId":"11161","objType":"23","role":"4"},"entityData":{"0":{"displayName":"Megan Bowen"},"1":null}}`,
			1595096586840, "", "APPID_15600", "https://contoso-my.sharepoint.com/personal/megan/", ""},
		{"log on, appId as a string, created in createdRaw only", `{"_id":"1595096586840_77c1","appId":"20893","timestamp":1,"createdRaw":"1595096586841",
			"mainInfo":{"eventObjects":[{"role":3,"name":"megan@contoso.com","objType":2},{"role":"4","name":"Megan Bowen"}]}}`,
			1595096586841, "", "APPID_OUTLOOK", "megan@contoso.com", ""},
		{"several targets, a nameless one left out", `{"_id":"x","appId":11161,"timestamp":1,"mainInfo":{"eventObjects":[{"role":3,"name":"Finance"},{"role":3},
			{"role":3,"name":null,"id":"guest@fabrikam.com"},{"role":1,"name":"the app"}]}}`,
			0, "", "APPID_O365", "Finance,guest@fabrikam.com", ""},
		{"no target, no app", `{"_id":"x","appId":null,"timestamp":1,"mainInfo":{"eventObjects":[{"role":4,"name":"Megan Bowen"}]}}`, 0, "", "", "", ""},
		{"failed log on", `{"_id":"x","appId":11161,"timestamp":1,"user":{"userTags":["0000"]},"failedUserData":{"userName":"guest@fabrikam.com"},
			"mainInfo":{"eventObjects":[{"role":1,"name":"Contoso Expenses"},{"role":3,"name":"Request ID"},{"role":2,"name":"guest@fabrikam.com"}]}}`,
			0, "guest@fabrikam.com", "APPID_O365", "Request ID", ""},
		{"explicit lists win", `{"_id":"x","appId":11161,"timestamp":1,"uniqueServiceAppIds":["APPID_X"],"targetObjects":[{"name":"t"}],"policyIDs":["p1","p2"],
			"mainInfo":{"eventObjects":[{"role":3,"name":"ignored"}]}}`, 0, "", "APPID_X", "t", "p1,p2"},
	}
	for _, tt := range tests {
		a, err := ParseActivity([]byte(tt.raw))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if a.Created != tt.created || a.UserName != tt.user || a.UniqueServiceAppIDs != tt.appIDs || a.TargetObjects != tt.targets || a.PolicyIDs != tt.p {
			t.Errorf("%s: created %d, suser %q, cs2 %q, cs3 %q, cs4 %q; want %d, %q, %q, %q, %q", tt.name, a.Created, a.UserName,
				a.UniqueServiceAppIDs, a.TargetObjects, a.PolicyIDs, tt.created, tt.user, tt.appIDs, tt.targets, tt.p)
		}
	}
}

// Every app id with a symbolic name comes out as it, any other as its
// number.
func TestAppIDNames(t *testing.T) {
	for id, want := range map[int64]string{11161: "APPID_O365", 20893: "APPID_OUTLOOK", 11114: "APPID_SALESFORCE",
		10489: "APPID_BOX", 14509: "APPID_SERVICENOW", 26069: "APPID_26069", 11394: "APPID_11394", 0: "APPID_0"} {
		if got := string(appendAppID(nil, id)); got != want {
			t.Errorf("app %d: %s, want %s", id, got, want)
		}
		if got := len(appendAppID(nil, id)); got > maxAppIDText {
			t.Errorf("app %d: %d bytes, more than maxAppIDText", id, got)
		}
	}
}

// Every text that is not JSON is refused, with where it goes wrong; these
// include texts the fastjson decoder let through.
func TestParseActivityRefusesInvalidJSON(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{`{"_id":"x","timestamp":1`, `not valid JSON: the line ends where "," or "}" should be at byte 25`},
		{`{"_id":"x","timestamp":1}}`, "not valid JSON: more text after the object at byte 26"},
		{`{"_id":"x","timestamp":1,}`, `not valid JSON: '}' where a member name should be at byte 26`},
		{`{"_id":"x" "timestamp":1}`, `not valid JSON: '"' where "," or "}" should be at byte 12`},
		{`{"_id":"x","timestamp":01}`, `not valid JSON: '1' where "," or "}" should be at byte 25`},
		{`{"_id":"x","timestamp":1.}`, `not valid JSON: '}' where a digit after the decimal point should be at byte 26`},
		{`{"_id":"x","timestamp":1e}`, `not valid JSON: '}' where a digit of the exponent should be at byte 26`},
		{`{"_id":"x","timestamp":-}`, `not valid JSON: '}' where a digit should be at byte 25`},
		{`{"_id":"x","timestamp":NaN}`, `not valid JSON: 'N' where a value should be at byte 24`},
		{`{"_id":"x","timestamp":tru}`, `not valid JSON: 't' where a value should be at byte 24`},
		{"{\"_id\":\"x\ty\",\"timestamp\":1}", `not valid JSON: control character 0x09 inside a string (JSON needs it escaped) at byte 10`},
		{`{"_id":"x\q","timestamp":1}`, `not valid JSON: invalid escape "\\q" at byte 10`},
		{`{"_id":"x\u12G4","timestamp":1}`, `not valid JSON: invalid \u escape "\\u12G4" at byte 10`},
		{`{"_id":"x`, `not valid JSON: the line ends inside a string at byte 10`},
		{`{"_id":"x\`, `not valid JSON: the line ends inside an escape at byte 10`},
		{`{"_id" "x"}`, `not valid JSON: '"' where ":" after a member name should be at byte 8`},
		{`{"a":[1 2]}`, `not valid JSON: '2' where "," or "]" should be at byte 9`},
		{`{"_id":"x","timestamp":1,"mainInfo":{"eventObjects":[{"role":3,"name":"a",}]}}`, `not valid JSON: '}' where a member name should be at byte 75`},
		{`{"_id":"x","timestamp":1,"mainInfo":{"eventObjects":[{"role":3} {}]}}`, `not valid JSON: '{' where "," or "]" should be at byte 65`},
		{`{"_id":"x","timestamp":1,"mainInfo":{"eventObjects":[1,{"role":03}]}}`, `not valid JSON: '3' where "," or "}" should be at byte 65`},
		{`{"_id":"x","timestamp":1,"mainInfo":{"eventObjects":[`, `not valid JSON: the line ends where a value should be at byte 54`},
		{`{"a":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`, "not valid JSON: nested deeper than 512 levels at byte 517"},
		{``, "not valid JSON: the line ends where a value should be at byte 1"},
		{`hello`, "not valid JSON: 'h' where a value should be at byte 1"},
		{`"an activity"`, "not an activity object but a JSON string"},
		{`[{"_id":"x","timestamp":1}]`, "not an activity object but a JSON array"},
	}
	for _, tt := range tests {
		_, err := ParseActivity([]byte(tt.in))
		if err == nil || err.Error() != tt.wantErr {
			t.Errorf("ParseActivity(%.40s) = %v, want %s", tt.in, err, tt.wantErr)
		}
		if json.Valid([]byte(tt.in)) && strings.HasPrefix(tt.wantErr, "not valid JSON") && !strings.Contains(tt.wantErr, "nested") {
			t.Errorf("the test is wrong: %s is valid JSON", tt.in)
		}
	}
}

// FuzzParseActivity holds the scanner to encoding/json's idea of valid
// JSON and, on text without escapes, to the fastjson decoder's fields.
func FuzzParseActivity(f *testing.F) {
	for _, s := range []string{
		`{"_id":"a","timestamp":1,"user":{"userName":"u"},"targetObjects":[{"name":"n"},1,"x"]}`,
		`{"_id":"a\u00e9","timestamp":-1.5e3}`, `[1,{"a":null}]`, `{"a":"\"}`,
		`{"_id":"a","timestamp":1,"appId":"11161","created":2,"mainInfo":{"eventObjects":[{"role":3,"name":"n"},{"role":"3","id":5}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := ParseActivity(raw)
		invalid := err != nil && strings.HasPrefix(err.Error(), "not valid JSON")
		if invalid == json.Valid(raw) && (err == nil || !strings.Contains(err.Error(), "nested deeper")) {
			t.Fatalf("ParseActivity(%q): %v, but json.Valid says %v", raw, err, json.Valid(raw))
		}
		if bytes.IndexByte(raw, '\\') >= 0 {
			return // fastjson re-escapes strings it marshals; the other tests cover escapes
		}
		want, wantErr := parseActivityReference(raw)
		if err != nil || wantErr != nil {
			return
		}
		got.Raw, want.Raw = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseActivity(%q)\n got  %+v\n want %+v", raw, got, want)
		}
	})
}

// A Decoder shares blocks between activities: each one decoded must keep
// its fields while the ones after it are written, across blocks.
func TestDecoderKeepsEarlierActivities(t *testing.T) {
	var corpus [][]byte
	for range 40 { // more text than a block
		corpus = append(corpus, activityCorpus(t)...)
	}
	var d Decoder
	got := make([]Activity, len(corpus))
	for i, raw := range corpus {
		a, err := d.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		got[i] = a
	}
	for i, raw := range corpus {
		want, _ := ParseActivity(raw)
		if !reflect.DeepEqual(got[i], want) {
			t.Fatalf("activity %d decoded by the Decoder\n got  %+v\n want %+v", i, got[i], want)
		}
	}
}
