package graphtest

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"siem-recovery/internal/activitygen"
	"siem-recovery/recovery"
	"siem-recovery/recovery/graph"
)

// GenerateOptions say what rows Generate makes.
type GenerateOptions struct {
	// Window is where the Timestamps go: spread evenly over it, to the
	// tick (100 ns), so that most rows fall inside a millisecond rather
	// than at its start, as real ones do.
	Window recovery.Window
	// Count is how many rows to make, burst included.
	Count int
	// Burst rows share one millisecond, half of them one tick: the rows
	// made at positions BurstIndex … BurstIndex+Burst-1, so a test can
	// make them straddle a page boundary.
	Burst      int
	BurstIndex int
	// First numbers the rows from First on, so that rows made by a later
	// call (late rows, between two runs) are new ones, with their own ids.
	First int
}

// Apps are the apps Generate cycles through: their ApplicationId and name
// (Application). Office 365 and Salesforce have a symbolic name in the
// agent's cs2; the others are written as numbers.
var Apps = []activitygen.App{
	{ID: 11161, Name: "Microsoft 365"},
	{ID: 20893, Name: "Microsoft Exchange Online"},
	{ID: 15600, Name: "Microsoft OneDrive for Business"},
	{ID: 20892, Name: "Microsoft SharePoint Online"},
	{ID: 28375, Name: "Microsoft Teams"},
	{ID: 11114, Name: "Salesforce"},
	{ID: 11770, Name: "Google Workspace"},
}

// Actions are the activities Generate cycles through: ActionType (the
// app's operation), ActivityType, and what they act on.
var Actions = []struct {
	ActionType, ActivityType string
	Target                   activitygen.Target
	Object                   string
}{
	{"UserLoggedIn", "Login", activitygen.TargetAccount, ""},
	{"FileDownloaded", "Download", activitygen.TargetObject, "Q3 budget|draft=v2.xlsx"},
	{"FileAccessed", "Basic", activitygen.TargetObject, `\\fs01\legal\Données\contrat_été.docx`},
	{"SharingSet", "Share", activitygen.TargetShare, "Finance"},
	{"Send", "Basic", activitygen.TargetNone, ""},
	{"UserLoginFailed", "Login", activitygen.TargetParameters, ""},
	{"New-InboxRule", "Run", activitygen.TargetNone, ""},
	{"FileUploaded", "Upload", activitygen.TargetObject, "rapport annuel 2024.pdf"},
}

// Generate makes opts.Count rows in opts.Window, in ascending Timestamp
// order (a burst's rows share a millisecond, in no particular order
// within it), each with a unique ReportId. The output depends only on
// opts.
func Generate(opts GenerateOptions) []Row {
	rows := make([]Row, 0, max(opts.Count, 0))
	w := opts.Window
	burst := min(max(opts.Burst, 0), opts.Count)
	slots := opts.Count - burst
	if burst > 0 {
		slots++
	}
	start, span := graph.TicksOfMillis(w.Start), graph.TicksOfMillis(w.End)-graph.TicksOfMillis(w.Start)
	at := func(slot int) graph.Ticks { return start + graph.Ticks(int64(slot)*int64(span)/int64(max(slots, 1))) }
	for i := range opts.Count {
		var ts graph.Ticks
		switch {
		case burst == 0 || i < opts.BurstIndex:
			ts = at(i)
		case i < opts.BurstIndex+burst:
			// The millisecond of the burst's slot: half the rows at its
			// start, one tick; the others spread within it.
			ms := graph.TicksOfMillis(at(opts.BurstIndex).Millis())
			ts = ms
			if k := i - opts.BurstIndex; k%2 == 1 {
				ts += graph.Ticks((k * 37) % 10_000)
			}
		default:
			ts = at(i - burst + 1)
		}
		rows = append(rows, NewRow(opts.First+i, ts))
	}
	return rows
}

// NewRow is row number i at ts: from Apps and Actions, by one of
// activitygen's users, with the columns a real row fills.
func NewRow(i int, ts graph.Ticks) Row {
	a := activitygen.New(i, ts.Millis())
	app := Apps[i%len(Apps)]
	act := Actions[i%len(Actions)]
	user := activitygen.Users[(i/3)%len(activitygen.Users)]
	objectID := uuid(int64(i/3%len(activitygen.Users)), 1)
	accountID := objectID // what Entra ID apps name an account by
	if app.ID == 11114 || app.ID == 11770 {
		accountID = user.Name // other apps: their own identifier, a UPN here
	}
	r := Row{
		Timestamp:          ts,
		ActionType:         act.ActionType,
		Application:        app.Name,
		ApplicationID:      app.ID,
		AccountObjectID:    objectID,
		AccountID:          accountID,
		AccountDisplayName: user.DisplayName,
		IsAdminOperation:   i%11 == 0,
		IPAddress:          a.IP,
		CountryCode:        a.Country,
		City:               map[string]string{"US": "boydton", "FR": "paris", "DK": "copenhagen", "JP": "tokyo", "DE": "frankfurt"}[a.Country],
		ISP:                "Microsoft Azure",
		UserAgent:          a.UserAgent,
		ActivityType:       act.ActivityType,
		ReportID:           reportID(i, app.ID),
		AccountType:        []string{"Regular", "Admin", "Regular", "Application"}[i%4],
		IsExternalUser:     act.Target == activitygen.TargetShare && i%2 == 0,
		IPCategory:         "Cloud provider",
		IPTags:             []string{"Microsoft Azure"},
		AdditionalFields:   []byte(`{"IsSatelliteProvider":false}`),
		LastSeenForUser:    fmt.Appendf(nil, `{"ActionType":%d,"ISP":0,"IPAddress":%d,"Application":0}`, i%5, i%3-1),
		UncommonForUser:    []string{},
		AuditSource:        "Defender for Cloud Apps app connector",
	}
	if a.UserAgent != "" {
		r.DeviceType, r.OSPlatform = "Desktop", "Windows 10"
		r.UserAgentTags = []string{}
	}
	actor := ActivityObject{Type: "User", Role: "Actor", Name: user.DisplayName, ID: objectID, ApplicationID: 11161}
	switch act.Target {
	case activitygen.TargetAccount:
		r.ActivityObjects = []ActivityObject{actor, {Type: "Account", Role: "Target object", Name: user.Name, ID: objectID, ApplicationID: app.ID}}
	case activitygen.TargetObject:
		r.ObjectName, r.ObjectType, r.ObjectID = act.Object, "File", uuid(int64(i), 2)
		r.ActivityObjects = []ActivityObject{actor, {Type: "File", Role: "Target object", Name: act.Object, ID: r.ObjectID, ApplicationID: app.ID}}
	case activitygen.TargetShare:
		r.ObjectName, r.ObjectType, r.ObjectID = act.Object, "Folder", uuid(int64(i), 2)
		r.ActivityObjects = []ActivityObject{actor,
			{Type: "Folder", Role: "Target object", Name: act.Object, ID: r.ObjectID, ApplicationID: app.ID},
			{Type: "Account", Role: "Target object", Name: "guest_fabrikam.com#ext#@contoso.onmicrosoft.com", ID: uuid(int64(i), 3)}}
	case activitygen.TargetParameters:
		r.ActivityObjects = []ActivityObject{{Type: "Structured object", Role: "Target object", Name: "Request ID", ID: uuid(int64(i), 4)},
			{Type: "User", Role: "Actor", Name: user.Name, ID: user.Name}}
	default:
		r.ActivityObjects = []ActivityObject{actor}
	}
	r.RawEventData = rawEventData(i, ts, app, act.ActionType, user.Name, a.IP, a.UserAgent, r.ObjectName)
	return r
}

// rawEventData is the app's own record of the activity, shaped as an
// Office 365 audit record.
func rawEventData(i int, ts graph.Ticks, app activitygen.App, op, user, ip, agent, object string) []byte {
	b := []byte(`{"CreationTime":`)
	b = appendString(b, strings.TrimSuffix(ts.String()[:19], "Z"))
	b = append(b, `,"Id":`...)
	b = appendString(b, uuid(int64(i), 5))
	b = append(b, `,"Operation":`...)
	b = appendString(b, op)
	b = append(b, `,"OrganizationId":"5f3e2d1c-0b9a-4877-8665-544332211000","RecordType":6,"UserKey":"i:0h.f|membership|10032001a7c3e4b5@live.com","UserType":0,"Version":1,"Workload":`...)
	b = appendString(b, app.Name)
	b = append(b, `,"ClientIP":`...)
	b = appendString(b, ip)
	b = append(b, `,"UserId":`...)
	b = appendString(b, user)
	b = append(b, `,"UserAgent":`...)
	b = appendString(b, agent)
	b = append(b, `,"ObjectId":`...)
	b = appendString(b, object)
	return append(b, `,"EventSource":"SharePoint","ItemType":"File"}`...)
}

// reportID is row i's ReportId: 64 hex digits and the app id, as the
// table's ids look.
func reportID(i, app int) string {
	var sum [32]byte
	for k := range 4 {
		binary.BigEndian.PutUint64(sum[8*k:], activitygen.Hash(i, int64(k)+0x5eed))
	}
	return hex.EncodeToString(sum[:]) + "_" + fmt.Sprint(app)
}

// uuid is a GUID made of i and salt.
func uuid(i, salt int64) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], activitygen.Hash(int(i), salt))
	binary.BigEndian.PutUint64(b[8:], activitygen.Hash(int(i), salt+1))
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Sort sorts rows as the source pages them: by Timestamp, then ReportId.
func Sort(rows []Row) {
	slices.SortStableFunc(rows, compareRows)
}

func compareRows(a, b Row) int {
	return cmp.Or(cmp.Compare(a.Timestamp, b.Timestamp), strings.Compare(a.ReportID, b.ReportID))
}

// IDs returns the ReportId of each row, in order.
func IDs(rows []Row) []string {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ReportID
	}
	return ids
}
