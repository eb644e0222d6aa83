package mcastest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"siem-recovery/internal/activitygen"
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
	// First numbers the activities from First on, so that activities made
	// for the same window by a later call (saved late, between two runs)
	// are new ones, with their own ids.
	First int
	// SavedAt, when not zero, is when MCAS saved every one of them
	// ("created", Unix ms): late arrivals that a connector delivered
	// together. Zero: each is saved seconds after it happened, one in 17
	// hours after (activitygen.CreatedAfter).
	SavedAt int64
}

// Services are the apps Generate cycles through, activity i coming from
// Services[i%len(Services)] (ID, appId, is what the "service" filter
// matches): apps with and without a symbolic name in the agent's cs2.
var Services = []activitygen.App{
	{ID: 11161, Name: "Office 365"},
	{ID: 20893, Name: "Microsoft Exchange Online"},
	{ID: 15600, Name: "Microsoft OneDrive for Business"},
	{ID: 28375, Name: "Microsoft Teams"},
	{ID: 11114, Name: "Salesforce"},
}

// EventTypes are the event types Generate cycles through, activity i
// having EventTypes[i%len(EventTypes)] (Value, eventTypeValue, is what
// the "activity.eventType" filter matches).
var EventTypes = []activitygen.Event{
	{Name: "EVENT_CATEGORY_LOGIN", Value: "EVENT_O365_LOGIN", Description: "Log on", Operation: "UserLoggedIn", Target: activitygen.TargetAccount},
	{Name: "EVENT_CATEGORY_LOGOUT", Value: "EVENT_O365_LOGOUT", Description: "Log out", Operation: "UserLoggedOut", Target: activitygen.TargetAccount},
	{Name: "EVENT_CATEGORY_DOWNLOAD_FILE", Value: "EVENT_O365_FILE_DOWNLOADED", Description: "Download file: report|Q3 = final.xlsx",
		Operation: "FileDownloaded", Target: activitygen.TargetObject, Object: "report|Q3 = final.xlsx"},
	{Name: "EVENT_CATEGORY_UPDATE_PERMISSIONS", Value: "EVENT_O365_SHARING_SET", Description: `Share folder C:\shared\legal`,
		Operation: "SharingSet", Target: activitygen.TargetShare, Object: `C:\shared\legal`},
	{Name: "EVENT_CATEGORY_SEND_MAIL", Value: "EVENT_EXO_SEND", Description: "Send mail\nsubject: weekly", Operation: "Send"},
	{Name: "EVENT_CATEGORY_UNSPECIFIED", Value: "EVENT_O365_UNKNOWN", Description: "Run command", Operation: "New-InboxRule"},
	{Name: "EVENT_CATEGORY_FAILED_LOGIN", Value: "EVENT_O365_LOGIN_FAILED", Description: "Failed log on",
		Operation: "UserLoginFailed", Target: activitygen.TargetParameters},
}

// Generate makes opts.Count activities in opts.Window, in ascending
// timestamp order, each a complete MCAS activity object in the shape the
// API returns (internal/activitygen) with a unique "_id". The output
// depends only on opts.
func Generate(opts GenerateOptions) []json.RawMessage {
	out := make([]json.RawMessage, 0, max(opts.Count, 0))
	generate(opts, func(i int, ts int64) { out = append(out, activity(i, ts, opts.SavedAt)) })
	return out
}

// generate calls fn with the number (from First on) and timestamp of each
// activity Generate makes for opts, in order.
func generate(opts GenerateOptions, fn func(i int, ts int64)) {
	w := opts.Window
	burst := min(max(opts.Burst, 0), opts.Count)
	slots := opts.Count - burst
	if burst > 0 {
		slots++
	}
	span := w.End - w.Start
	for i := range opts.Count {
		slot := i
		switch {
		case burst == 0 || i < opts.BurstIndex:
		case i < opts.BurstIndex+burst:
			slot = opts.BurstIndex
		default:
			slot = i - burst + 1
		}
		fn(opts.First+i, w.Start+int64(slot)*span/int64(max(slots, 1)))
	}
}

// activity is activity i at ts, from Services[i] and EventTypes[i], by
// user<i%50>@contoso.com (what the "user.username" filter matches; a
// failed log-on has it in failedUserData only, as the API does), saved
// at saved (0: activitygen's choice).
func activity(i int, ts, saved int64) json.RawMessage {
	a := activitygen.New(i, ts)
	if saved != 0 {
		a.Created = saved
	}
	a.App = Services[i%len(Services)]
	a.Event = EventTypes[i%len(EventTypes)]
	a.User, a.DisplayName = fmt.Sprintf("user%d@contoso.com", i%50), fmt.Sprintf("User %d", i%50)
	return a.Append(make([]byte, 0, 3072))
}

// IDs returns the "_id" of each activity, in order; an activity without
// one gives "".
func IDs(acts []json.RawMessage) []string {
	ids := make([]string, len(acts))
	for i, raw := range acts {
		if id, ok := leadingID(raw); ok {
			ids[i] = id
			continue
		}
		var a struct {
			ID string `json:"_id"`
		}
		_ = json.Unmarshal(raw, &a)
		ids[i] = a.ID
	}
	return ids
}

// leadingID is the "_id" an activity begins with, as Generate writes it,
// when it holds nothing to unescape and no other "_id" follows: found with
// a few byte searches instead of decoding the whole object, which under
// the race detector took a third of the time of the tests that generate
// tens of thousands of activities.
func leadingID(raw []byte) (string, bool) {
	rest, ok := bytes.CutPrefix(raw, []byte(`{"_id":"`))
	if !ok {
		return "", false
	}
	end := bytes.IndexAny(rest, `"\`)
	if end < 0 || rest[end] != '"' || bytes.Contains(rest[end:], []byte(`"_id"`)) {
		return "", false
	}
	return string(rest[:end]), true
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
