package mcastest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"siem-recovery/recovery"
)

// GenerateOptions say what activities Generate makes.
type GenerateOptions struct {
	// Window is where the timestamps go: spread evenly over it, so that
	// apart from the burst each activity has its own millisecond when the
	// window is wide enough.
	Window recovery.Window
	// Count is how many activities to make, burst included.
	Count int
	// Burst activities share one millisecond; they are the activities at
	// positions BurstIndex … BurstIndex+Burst-1 in ascending order, so a
	// test can make them straddle a page boundary.
	Burst      int
	BurstIndex int
}

// Service is one app the generated activities come from.
type Service struct {
	ID    int    // appId, what the "service" filter matches
	Name  string // appName
	AppID string // uniqueServiceAppIds item
}

// Services are the apps Generate cycles through, activity i coming from
// Services[i%len(Services)].
var Services = []Service{
	{11161, "Microsoft 365", "APPID_O365"},
	{20893, "Microsoft Exchange Online", "APPID_EXCHANGE"},
	{15600, "Microsoft OneDrive for Business", "APPID_ONEDRIVE"},
	{28375, "Microsoft Teams", "APPID_TEAMS"},
	{11114, "Salesforce", "APPID_SALESFORCE"},
}

// EventTypes are the event types Generate cycles through, activity i
// having EventTypes[i%len(EventTypes)] (eventTypeValue is what the
// "activity.eventType" filter matches).
var EventTypes = []struct{ Name, Value, Description string }{
	{"EVENT_CATEGORY_LOGIN", "EVENT_O365_LOGIN", "Log on"},
	{"EVENT_CATEGORY_LOGOUT", "EVENT_O365_LOGOUT", "Log out"},
	{"EVENT_CATEGORY_DOWNLOAD_FILE", "EVENT_O365_FILE_DOWNLOADED", "Download file: report|Q3 = final.xlsx"},
	{"EVENT_CATEGORY_UPDATE_PERMISSIONS", "EVENT_O365_SHARING_SET", `Share folder C:\shared\legal`},
	{"EVENT_CATEGORY_SEND_MAIL", "EVENT_EXO_SEND", "Send mail\nsubject: weekly"},
	{"EVENT_CATEGORY_UNSPECIFIED", "EVENT_O365_UNKNOWN", "Run command"},
	{"EVENT_CATEGORY_LOGIN", "EVENT_O365_LOGIN_FAILED", "Failed log on"},
}

// Generate makes opts.Count activities in opts.Window, in ascending
// timestamp order, each a complete MCAS activity object with a unique
// "_id" of the form "<timestamp>_<uuid>". The output depends only on opts.
func Generate(opts GenerateOptions) []json.RawMessage {
	w := opts.Window
	burst := min(max(opts.Burst, 0), opts.Count)
	slots := opts.Count - burst
	if burst > 0 {
		slots++
	}
	span := w.End - w.Start
	out := make([]json.RawMessage, 0, opts.Count)
	for i := range opts.Count {
		slot := i
		switch {
		case burst == 0 || i < opts.BurstIndex:
		case i < opts.BurstIndex+burst:
			slot = opts.BurstIndex
		default:
			slot = i - burst + 1
		}
		ts := w.Start + int64(slot)*span/int64(max(slots, 1))
		out = append(out, activity(i, ts))
	}
	return out
}

func activity(i int, ts int64) json.RawMessage {
	svc := Services[i%len(Services)]
	ev := EventTypes[i%len(EventTypes)]
	sum := sha256.Sum256(fmt.Appendf(nil, "activity-%d", i))
	ip := fmt.Sprintf("203.0.113.%d", i%250+1)
	if i%13 == 0 {
		ip = fmt.Sprintf("2001:db8::%x", i%65535+1)
	}
	user := fmt.Sprintf("user%d@contoso.com", i%50)
	// Written by hand rather than marshalled from a map: tests generate
	// tens of thousands, under the race detector.
	b := make([]byte, 0, 700)
	b = fmt.Appendf(b, `{"_id":"%d_%x-%x-%x-%x-%x","timestamp":%d,"created":%d,`, ts, sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16], ts, ts+1500)
	b = fmt.Appendf(b, `"appId":%d,"appName":%s,"eventTypeName":%s,"eventTypeValue":%s,"description":%s,`,
		svc.ID, jsonString(svc.Name), jsonString(ev.Name), jsonString(ev.Value), jsonString(ev.Description))
	b = fmt.Appendf(b, `"user":{"userName":%q,"userTags":[]},"device":{"clientIP":%q,"userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64)","type":"DESKTOP"},`, user, ip)
	b = fmt.Appendf(b, `"uniqueServiceAppIds":[%s],"targetObjects":[{"name":%q,"type":21}],"policyIDs":[],"severity":"INFO"}`, jsonString(svc.AppID), user)
	return b
}

// jsonString encodes s as a JSON string.
func jsonString(s string) []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a string always marshals
	}
	return b
}

// IDs returns the "_id" of each activity, in order; an activity without
// one gives "".
func IDs(acts []json.RawMessage) []string {
	ids := make([]string, len(acts))
	for i, raw := range acts {
		var a struct {
			ID string `json:"_id"`
		}
		_ = json.Unmarshal(raw, &a)
		ids[i] = a.ID
	}
	return ids
}

// IsJWT reports whether t has the shape of a JSON Web Token: three
// base64url parts whose first decodes to a JSON object. The emulator then
// wants it as "Bearer".
func IsJWT(t string) bool {
	parts := strings.Split(t, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	head, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[0], "="))
	if err != nil {
		return false
	}
	var obj map[string]any
	return json.Unmarshal(head, &obj) == nil
}

// MakeJWT returns a JWT-shaped token (unsigned: the emulator compares it
// byte for byte) with the given subject.
func MakeJWT(subject string) string {
	enc := base64.RawURLEncoding.EncodeToString
	head := enc([]byte(`{"alg":"RS256","typ":"JWT"}`))
	body := enc(fmt.Appendf(nil, `{"aud":"05a65629-4c1b-48c1-a78b-804c4abdd4af","sub":%q}`, subject))
	sig := sha256.Sum256([]byte(head + "." + body))
	return head + "." + body + "." + enc(sig[:])
}
