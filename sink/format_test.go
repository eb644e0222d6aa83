package sink

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
)

var update = flag.Bool("update", false, "rewrite testdata/format/*.golden, testdata/real-shape/cef.golden and testdata/fit/*.golden (check every changed line by hand)")

// specReference is the reference line of SPEC §5, from the MCAS agent.
const specReference = `2017-11-22T17:50:04.000Z CEF:0|MCAS|SIEM_Agent|0.111.85|EVENT_CATEGORY_LOGOUT|Log out|0|externalId=1511373015679_167ae3eb-ed33-454a-b548-c2ed6cea6ef0 rt=1511373004000 start=1511373004000 end=1511373004000 msg=Log out suser=admin@contoso.com destinationServiceName=ServiceNow dvc=13.82.149.151 requestClientApplication= cs1Label=portalURL cs1=https://contoso.portal.cloudappsecurity.com/#/audits?activity.id\=eq(1511373015679_167ae3eb-ed33-454a-b548-c2ed6cea6ef0,) cs2Label=uniqueServiceAppIds cs2=APPID_SERVICENOW cs3Label=targetObjects cs3=admin@contoso.com,admin@contoso.com,admin@contoso.com cs4Label=policyIDs cs4= c6a1Label="Device IPv6 Address" c6a1=`

// Activities as the MCAS API returns them.
const (
	referenceJSON = `{"_id":"1511373015679_167ae3eb-ed33-454a-b548-c2ed6cea6ef0","timestamp":1511373004000,"eventTypeName":"EVENT_CATEGORY_LOGOUT","eventTypeValue":"EVENT_CATEGORY_LOGOUT","description":"Log out","appName":"ServiceNow","appId":11161,"user":{"userName":"admin@contoso.com"},"device":{"clientIP":"13.82.149.151","userAgent":""},"uniqueServiceAppIds":["APPID_SERVICENOW"],"targetObjects":[{"name":"admin@contoso.com","type":1},{"name":"admin@contoso.com"},{"name":"admin@contoso.com"}],"policyIDs":[]}`
	specialJSON   = `{"_id":"id-special","timestamp":1700000000123,"eventTypeName":"EVENT_A|B","description":"a|b=c\\d\r\nnext","appName":"Box=Cloud","user":{"userName":"dom\\user"},"device":{"clientIP":"10.0.0.1","userAgent":"Mozilla/5.0 (X11; a=b)"}}`
	ipv6JSON      = `{"_id":"id-v6","timestamp":1700000000000,"eventTypeName":"EVENT_CATEGORY_LOGIN","description":"Log on","appName":"Microsoft 365","user":{"userName":"bob@contoso.com"},"device":{"clientIP":"2001:db8::1","userAgent":"curl/8.0"},"policyIDs":["pol1","pol2"]}`
	minimalJSON   = `{"_id":"id-min","timestamp":86400000,"eventTypeValue":"EVENT_X"}`
	nonASCIIJSON  = `{"_id":"id-utf8","timestamp":1700000000000,"eventTypeName":"EVENT_CATEGORY_DOWNLOAD_FILE","description":"Téléchargement du fichier « Rapport_Q3.xlsx » — 東京","appName":"OneDrive for Business","user":{"userName":"jörg.müller@contoso.com"},"device":{"clientIP":"198.51.100.7","userAgent":"Mozilla/5.0"},"targetObjects":["Rapport_Q3.xlsx","jörg.müller@contoso.com"]}`
	jsonOneLine   = `{"_id":"id-j1","timestamp":1700000000000,"description":"a\nb | c=d"}`
	jsonMultiLine = "{\n  \"_id\": \"id-j2\",\r\n  \"timestamp\": 1700000000000\n}"
)

func parse(t testing.TB, raw string) recovery.Activity {
	t.Helper()
	a, err := recovery.ParseActivity([]byte(raw))
	if err != nil {
		t.Fatalf("ParseActivity(%s): %v", raw, err)
	}
	return a
}

func TestFormatGolden(t *testing.T) {
	contoso := Formatter{Version: "1.2.3", PortalURL: "https://contoso.portal.cloudappsecurity.com"}
	reference := Formatter{Version: "0.111.85", PortalURL: "contoso.portal.cloudappsecurity.com/"}
	tests := []struct {
		name     string
		activity string
		enc      encoder
	}{
		{"reference", referenceJSON, encoder{format: reference, syslog: SyslogNone, framing: FramingLF}},
		{"reference-rfc5424", referenceJSON, encoder{format: reference, syslog: SyslogRFC5424, framing: FramingLF, hostname: "siem-host", appName: "siem-recovery"}},
		{"reference-rfc3164", referenceJSON, encoder{format: reference, syslog: SyslogRFC3164, framing: FramingLF, hostname: "siem-host", appName: "siem-recovery"}},
		{"special", specialJSON, encoder{format: contoso, syslog: SyslogNone, framing: FramingLF}},
		{"ipv6", ipv6JSON, encoder{format: contoso, syslog: SyslogNone, framing: FramingLF}},
		{"minimal", minimalJSON, encoder{format: contoso, syslog: SyslogNone, framing: FramingLF}},
		{"minimal-rfc3164", minimalJSON, encoder{format: contoso, syslog: SyslogRFC3164, framing: FramingLF, hostname: "siem-host", appName: "siem-recovery"}},
		{"nonascii", nonASCIIJSON, encoder{format: contoso, syslog: SyslogNone, framing: FramingLF}},
		{"json-oneline", jsonOneLine, encoder{json: true, syslog: SyslogNone, framing: FramingLF}},
		{"json-multiline", jsonMultiLine, encoder{json: true, syslog: SyslogNone, framing: FramingLF}},
		{"json-oneline-rfc5424-octet", jsonOneLine, encoder{json: true, syslog: SyslogRFC5424, framing: FramingOctet, hostname: "siem-host", appName: "siem-recovery"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := parse(t, tt.activity)
			// Append after existing bytes: the appenders must not touch them.
			got := tt.enc.appendFrame([]byte("keep"), a)
			if !bytes.HasPrefix(got, []byte("keep")) {
				t.Fatalf("appendFrame overwrote dst: %q", got)
			}
			got = got[len("keep"):]
			checkGolden(t, filepath.Join("testdata", "format", tt.name+".golden"), got)
			if tt.enc.framing == FramingLF && bytes.Count(got, []byte("\n")) != 1 || bytes.IndexByte(got, '\r') >= 0 {
				t.Errorf("not exactly one line: %q", got)
			}
		})
	}
}

func TestCEFReferenceLine(t *testing.T) {
	enc := encoder{format: Formatter{Version: "0.111.85", PortalURL: "https://contoso.portal.cloudappsecurity.com"}, syslog: SyslogNone}
	got := string(enc.appendMessage(nil, parse(t, referenceJSON)))
	if got != specReference {
		t.Errorf("reference line differs from SPEC §5:\ngot  %s\nwant %s", got, specReference)
	}
}

// The SPEC's reference line, from an activity in the shape the API
// returns: no list under the agent's labels, cs2 from appId, cs3 from the
// event objects acted on.
func TestCEFReferenceLineFromTheAPIShape(t *testing.T) {
	const servicenowLogout = `{"_id":"1511373015679_167ae3eb-ed33-454a-b548-c2ed6cea6ef0","appId":14509,"saasId":"14509","timestamp":1511373004000,
		"created":1511373015679,"eventTypeName":"EVENT_CATEGORY_LOGOUT","eventTypeValue":"EVENT_SERVICENOW_LOGOUT","description":"Log out",
		"appName":"ServiceNow","user":{"userName":"admin@contoso.com","userTags":[]},"device":{"clientIP":"13.82.149.151","userAgent":""},
		"mainInfo":{"eventObjects":[{"objType":21,"role":3,"name":"admin@contoso.com","id":"admin@contoso.com"},
		{"objType":23,"role":3,"name":"admin@contoso.com"},{"objType":2,"role":"3","name":"admin@contoso.com"}],"type":"basic"},
		"entityData":{"0":null},"resolvedActor":{"objType":"21","role":"4","saasId":"14509"}}`
	enc := encoder{format: Formatter{Version: "0.111.85", PortalURL: "https://contoso.portal.cloudappsecurity.com"}, syslog: SyslogNone}
	if got := string(enc.appendMessage(nil, parse(t, servicenowLogout))); got != specReference {
		t.Errorf("reference line differs from SPEC §5:\ngot  %s\nwant %s", got, specReference)
	}
}

// Activities made by hand in the shape the MCAS activities API returns
// them (testdata/real-shape/activities.jsonl: both forms of _id, numbers
// as strings, null members, several objects acted on, none) give exactly
// the CEF lines of the golden file, one per activity.
func TestCEFFromTheAPIShapeGolden(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "real-shape", "activities.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	enc := encoder{format: Formatter{Version: "1.2.3", PortalURL: "https://contoso.portal.cloudappsecurity.com"}, syslog: SyslogNone, framing: FramingLF}
	var got []byte
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	for _, line := range lines {
		got = enc.appendFrame(got, parse(t, string(line)))
	}
	if n := bytes.Count(got, []byte("\n")); n != len(lines) || bytes.IndexByte(got, '\r') >= 0 {
		t.Errorf("%d activities made %d lines", len(lines), n)
	}
	checkGolden(t, filepath.Join("testdata", "real-shape", "cef.golden"), got)
}

// checkGolden compares got with the golden file at path, after writing it
// there with -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestCEFDefaultPortal(t *testing.T) {
	got := string(Formatter{}.AppendCEF(nil, parse(t, minimalJSON)))
	want := `cs1=https://portal.cloudappsecurity.com/#/audits?activity.id\=eq(id-min,) `
	if !bytes.Contains([]byte(got), []byte(want)) {
		t.Errorf("no default portal link %q in\n%s", want, got)
	}
}

func TestJSONKeepsBytes(t *testing.T) {
	// Insignificant spaces and key order stay as the source sent them.
	raw := `{ "b" : 1,  "_id":"x", "timestamp": 5 ,"description":"t\u00e9\r\n"}`
	got := Formatter{}.AppendJSON(nil, parse(t, raw))
	if string(got) != raw {
		t.Errorf("got %s, want %s", got, raw)
	}
}

func BenchmarkCEF(b *testing.B) {
	a := parse(b, referenceJSON)
	enc := encoder{format: Formatter{Version: "1.0.0", PortalURL: "https://contoso.portal.cloudappsecurity.com"}, syslog: SyslogRFC5424, framing: FramingOctet, hostname: "siem-host", appName: "siem-recovery"}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.appendFrame(buf[:0], a)
	}
	b.SetBytes(int64(len(buf)))
}

// The timestamps are written digit by digit; package time is the
// reference, on both sides of every boundary a calendar has.
func TestTimestampsMatchPackageTime(t *testing.T) {
	var ms []int64
	for _, d := range []string{"0000-01-01", "0000-03-01", "1600-02-29", "1899-12-31", "1969-12-31", "1970-01-01",
		"1972-02-29", "2000-02-29", "2024-02-29", "2024-12-31", "2100-03-01", "2400-02-29", "9999-12-31"} {
		day, err := time.Parse(time.DateOnly, d)
		if err != nil {
			t.Fatal(err)
		}
		for _, delta := range []int64{-86400001, -1, 0, 1, 999, 1000, 59999, 3599999, 86399999} {
			ms = append(ms, day.UnixMilli()+delta)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		ms = append(ms, rng.Int64N(253402300800000+62167219200000+2000)-62167219200000-1000)
	}
	for _, m := range ms {
		tm := time.UnixMilli(m).UTC()
		if got, want := string(AppendTime(nil, m)), tm.Format("2006-01-02T15:04:05.000Z"); got != want {
			t.Fatalf("AppendTime(%d) = %s, want %s", m, got, want)
		}
		if got, want := string(appendStamp(nil, m)), tm.Format("Jan _2 15:04:05"); got != want {
			t.Fatalf("appendStamp(%d) = %s, want %s", m, got, want)
		}
	}
}

// appendEscaped passes over eight bytes at a time; escaping byte by byte
// is the reference, with every special byte at every place of a word.
func TestEscapingMatchesByteByByte(t *testing.T) {
	reference := func(s string, special *[256]bool) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == '\r':
				b.WriteString(`\r`)
			case c == '\n':
				b.WriteString(`\n`)
			case special[c]:
				b.WriteByte('\\')
				b.WriteByte(c)
			default:
				b.WriteByte(c)
			}
		}
		return b.String()
	}
	alphabet := []byte("ab=|\\\r\né\x00\x7f\xff ")
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		s := make([]byte, rng.IntN(40))
		for i := range s {
			if rng.IntN(4) == 0 {
				s[i] = alphabet[rng.IntN(len(alphabet))]
			} else {
				s[i] = 'a' + byte(rng.IntN(26))
			}
		}
		if got, want := string(appendExtValue(nil, string(s))), reference(string(s), &extSpecial); got != want {
			t.Fatalf("appendExtValue(%q) = %q, want %q", s, got, want)
		}
		if got, want := string(appendHeaderValue(nil, string(s))), reference(string(s), &headerSpecial); got != want {
			t.Fatalf("appendHeaderValue(%q) = %q, want %q", s, got, want)
		}
	}
}

// Microsoft's sample alert line (defender-docs siem.md), from an alert
// object in the shape the alerts API returns it: the same bytes, and the
// alert's own severity after them (cs5, where the agent's lines show none).
func TestCEFAlertSampleLine(t *testing.T) {
	const sample = `2017-07-15T20:42:30.531Z CEF:0|MCAS|SIEM_Agent|0.102.17|ALERT_CABINET_EVENT_MATCH_AUDIT|myPolicy|3|` +
		`externalId=596a7e360c204203a335a3fb start=1500151350531 end=1500151350531 msg=Activity policy ''myPolicy'' was triggered by ''admin@box-contoso.com'' ` +
		`suser=admin@box-contoso.com destinationServiceName=Box cn1Label=riskScore cn1= cs1Label=portalURL cs1=https://cloud-app-security.com/#/alerts/596a7e360c204203a335a3fb ` +
		`cs2Label=uniqueServiceAppIds cs2=APPID_BOX cs3Label=relatedAudits cs3=1500151288183_acc891bf-33e1-424b-a021-0d4370789660 cs4Label=policyIDs cs4=59f0ab82f797fa0681e9b1c7`
	const alert = `{"_id":"596a7e360c204203a335a3fb","timestamp":1500151350531,"title":"myPolicy",
		"description":"Activity policy ''myPolicy'' was triggered by ''admin@box-contoso.com''",
		"entities":[{"id":"59f0ab82f797fa0681e9b1c7","label":"myPolicy","policyType":"AUDIT","type":"policyRule"},
		{"id":10489,"label":"Box","type":"service"},{"id":"admin@box-contoso.com","label":"admin@box-contoso.com","type":"user"}],
		"audits":["1500151288183_acc891bf-33e1-424b-a021-0d4370789660"],"severityValue":0,
		"URL":"https://cloud-app-security.com/#/alerts/596a7e360c204203a335a3fb"}`
	a, err := recovery.DecodeAlert([]byte(alert))
	if err != nil {
		t.Fatal(err)
	}
	enc := encoder{format: Formatter{Version: "0.102.17"}, syslog: SyslogNone}
	got := string(enc.appendMessage(nil, a))
	if want := sample + " cs5Label=alertSeverity cs5=LOW"; got != want {
		t.Errorf("alert line differs from Microsoft's sample:\ngot  %s\nwant %s", got, want)
	}
	// An alert without URL links to its page in the portal; its id is read
	// back from its line (a file sink's resume).
	a.URL, a.ID = "", "5915b7e5=0d5d|72da"
	enc = encoder{format: Formatter{Version: "1", PortalURL: "contoso.portal.cloudappsecurity.com/"}, syslog: SyslogRFC5424, hostname: "h", appName: "siem-recovery"}
	line := enc.appendMessage(nil, a)
	if !bytes.Contains(line, []byte(`cs1=https://contoso.portal.cloudappsecurity.com/#/alerts/5915b7e5\=0d5d|72da `)) {
		t.Errorf("no portal link in %s", line)
	}
	if id, ok := enc.activityID(line); !ok || id != a.ID {
		t.Errorf("activityID = %q, %v; want %q", id, ok, a.ID)
	}
}
