package recovery

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func TestFilterMatch(t *testing.T) {
	act := `{"_id":"a1","timestamp":1714557600000,"appId":11161,"appName":"Office 365","eventTypeValue":"EVENT_CATEGORY_LOGIN",
		"user":{"userName":"Alice@Contoso.com"},"device":{"clientIP":"10.0.0.1"},"tags":["x","y"],"description":"Log on to Exchange"}`
	tests := []struct {
		filter string
		want   bool
	}{
		{`{}`, true},
		{``, true},
		{`{"service":{"eq":[11161]}}`, true},
		{`{"service":{"eq":11161}}`, true},
		{`{"service":{"eq":[20595, 11161]}}`, true},
		{`{"service":{"eq":[20595]}}`, false},
		{`{"service":{"neq":[11161]}}`, false},
		{`{"service":{"neq":[20595]}}`, true},
		{`{"appName":{"eq":"office 365"}}`, true},
		{`{"user.username":{"eq":["alice@contoso.com"]}}`, true},
		{`{"user.userName":{"eq":["bob@contoso.com"]}}`, false},
		{`{"activity.eventType":{"eq":["EVENT_CATEGORY_LOGIN"]}}`, true},
		{`{"ip.address":{"eq":["10.0.0.1"]}}`, true},
		{`{"tags":{"eq":["y"]}}`, true},
		{`{"missing.field":{"eq":["y"]}}`, false},
		{`{"missing.field":{"isnotset":true}}`, true},
		{`{"appId":{"gte":11161,"lt":11162}}`, true},
		{`{"appId":{"gt":11161}}`, false},
		{`{"appId":{"range":[{"start":1,"end":2},{"start":11000,"end":12000}]}}`, true},
		{`{"description":{"contains":"exchange"}}`, true},
		{`{"description":{"startswith":["Log off","Log on"]}}`, true},
		{`{"service":{"eq":[11161]},"user.username":{"eq":["bob@contoso.com"]}}`, false},
	}
	for _, tt := range tests {
		f, err := ParseFilter([]byte(tt.filter))
		if err != nil {
			t.Fatalf("ParseFilter(%s): %v", tt.filter, err)
		}
		got, err := f.Match([]byte(act))
		if err != nil || got != tt.want {
			t.Errorf("filter %s: Match = %v, %v; want %v", tt.filter, got, err, tt.want)
		}
	}
}

func TestParseFilterErrors(t *testing.T) {
	tests := []struct{ filter, wantErr string }{
		{`{"date":{"gte":1}}`, `"date" key`},
		{`{"Date":{"gte":1}}`, `"date" key`},
		{`{"created":{"lt":1}}`, `"created" key`},
		{`[1,2]`, "not a JSON object"},
		{`{"service":[11161]}`, `field "service": want an object of operators`},
		{`{"service":{"like":"x"}}`, `unknown operator "like"`},
	}
	for _, tt := range tests {
		_, err := ParseFilter([]byte(tt.filter))
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseFilter(%s) = %v, want error containing %q", tt.filter, err, tt.wantErr)
		}
	}
}

func TestFilterCanonicalJSON(t *testing.T) {
	a, _ := ParseFilter([]byte(`{ "user.username": {"eq": ["a"]}, "service": {"eq": [11161]} }`))
	b, _ := ParseFilter([]byte(`{"service":{"eq":[11161]},"user.username":{"eq":["a"]}}`))
	want := `{"service":{"eq":[11161]},"user.username":{"eq":["a"]}}`
	if a.JSON() != want || b.JSON() != want {
		t.Fatalf("canonical forms %s and %s, want %s", a.JSON(), b.JSON(), want)
	}
	if e, _ := ParseFilter([]byte(" {} ")); e.JSON() != "" || !e.IsEmpty() {
		t.Fatalf("empty filter: JSON %q", e.JSON())
	}
}

// Match reads the activity with fastjson; it must decide as decoding the
// whole object with encoding/json (UseNumber) and walking it would, which is
// how it was first written, except that of a key given twice the first
// counts, as in the decoder. The reference below is that walk.
func TestFilterMatchAgreesWithEncodingJSON(t *testing.T) {
	reference := func(f Filter, raw []byte) (bool, error) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		v, err := decodeFirstKeys(dec)
		if err != nil {
			return false, err
		}
		obj, _ := v.(map[string]any)
		for _, c := range f.conds {
			var v any = obj
			for _, key := range c.path {
				m, _ := v.(map[string]any)
				next, ok := m[key]
				for k, val := range m {
					if !ok && strings.EqualFold(k, key) {
						next, ok = val, true
					}
				}
				v = next
			}
			if ok, err := c.match(v); err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	}
	data, err := os.ReadFile("../docs/examples/activities.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	acts := strings.Split(strings.TrimSpace(string(data)), "\n")
	acts = append(acts,
		`{"_id":"n","timestamp":1,"appId":"11161","APPNAME":"Box","user":{"UserName":"A@b.c"},"n":1.0e3,"b":true,"x":null,"l":[1,"2",{"k":3}]}`,
		`{"_id":"d","timestamp":1,"appId":1,"appId":11161,"user":"not an object"}`)
	filters := []string{
		`{"service":{"eq":[11161]}}`, `{"service":{"neq":[11161, 20595]}}`, `{"appName":{"eq":"box"}}`,
		`{"user.username":{"startswith":["a@","megan"]}}`, `{"description":{"contains":["|","=","会议"]}}`,
		`{"n":{"gte":1000,"lte":"1000"}}`, `{"b":{"eq":true}}`, `{"x":{"isset":true}}`, `{"x":{"isnotset":true}}`,
		`{"l":{"eq":[2]}}`, `{"l":{"eq":["1"]}}`, `{"device.clientIP":{"range":[{"start":"10","end":"14"}]}}`,
		`{"activity.eventType":{"eq":["EVENT_CATEGORY_LOGIN","EVENT_CATEGORY_DOWNLOAD_FILE"]}}`,
		`{"timestamp":{"gt":1715675000000}}`, `{"user.userName":{"isset":true},"service":{"eq":[11161]}}`,
	}
	decided := 0
	for _, fs := range filters {
		f, err := ParseFilter([]byte(fs))
		if err != nil {
			t.Fatalf("ParseFilter(%s): %v", fs, err)
		}
		for _, a := range acts {
			got, gotErr := f.Match([]byte(a))
			want, wantErr := reference(f, []byte(a))
			if got != want || (gotErr == nil) != (wantErr == nil) {
				t.Errorf("filter %s on %.80s: Match = %v, %v; encoding/json says %v, %v", fs, a, got, gotErr, want, wantErr)
			}
			if got {
				decided++
			}
		}
	}
	if decided == 0 {
		t.Fatal("no activity matched any filter: the comparison proves nothing")
	}
}

// decodeFirstKeys decodes the next JSON value as encoding/json does into
// any, except that of a key given twice the first value is kept.
func decodeFirstKeys(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		obj := map[string]any{}
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := decodeFirstKeys(dec)
			if err != nil {
				return nil, err
			}
			if _, seen := obj[key.(string)]; !seen {
				obj[key.(string)] = v
			}
		}
		_, err = dec.Token() // '}'
		return obj, err
	case json.Delim('['):
		list := []any{}
		for dec.More() {
			v, err := decodeFirstKeys(dec)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		_, err = dec.Token() // ']'
		return list, err
	}
	return tok, nil
}

// The filter and the decoder read a field the decoder knows from the same
// member, the first of a key given twice: an activity the filter keeps for
// an app is the one whose CEF line shows that app.
func TestFilterAndDecoderReadTheSameMember(t *testing.T) {
	raw := []byte(`{"_id":"first","_id":"second","timestamp":1,"appId":11161,"appId":20893,"eventTypeValue":"EVENT_A","eventTypeValue":"EVENT_B",
		"description":"d1","description":"d2","user":{"userName":"u1","userName":"u2"},"device":{"clientIP":"10.0.0.1","clientIP":"10.0.0.2"}}`)
	a, err := ParseActivity(raw)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != "first" || a.UniqueServiceAppIDs != "APPID_O365" || a.EventTypeValue != "EVENT_A" || a.Description != "d1" ||
		a.UserName != "u1" || a.ClientIP != "10.0.0.1" {
		t.Fatalf("the decoder did not keep the first of each key: %+v", a)
	}
	for filter, want := range map[string]bool{
		`{"service":{"eq":[11161]}}`: true, `{"service":{"eq":[20893]}}`: false,
		`{"activity.id":{"eq":"first"}}`: true, `{"activity.id":{"eq":"second"}}`: false,
		`{"activity.eventType":{"eq":["EVENT_A"]}}`: true, `{"activity.eventType":{"eq":["EVENT_B"]}}`: false,
		`{"description":{"eq":"d1"}}`: true, `{"description":{"eq":"d2"}}`: false,
		`{"user.username":{"eq":"u1"}}`: true, `{"user.username":{"eq":"u2"}}`: false,
		`{"ip.address":{"eq":"10.0.0.1"}}`: true, `{"ip.address":{"eq":"10.0.0.2"}}`: false,
	} {
		f, err := ParseFilter([]byte(filter))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := f.Match(raw); err != nil || got != want {
			t.Errorf("filter %s: Match = %v, %v; want %v", filter, got, err, want)
		}
	}
}
