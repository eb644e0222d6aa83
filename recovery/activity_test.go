package recovery

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
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
		EventTypeValue: "EVENT_LOGOUT", Description: "Log out", AppName: "ServiceNow", UserName: "admin@contoso.com",
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
