// Package activitygen writes MCAS activity objects in the shape the
// activities API returns them: the members, nesting and types of the
// public samples of its answers (docs/delivery.md cites them), with every
// value made up here. The benchmarks, the API emulator
// (recovery/mcas/mcastest), scripts/benchtools/gen and the bundled example
// export (scripts/make-example) all write their activities with it, so
// every test and benchmark runs on that shape.
//
// The shape, as far as the tool reads it: "_id" as
// <tenantId>_<appId>_<uuid> or as <created>_<uuid>; appId (no
// uniqueServiceAppIds, targetObjects or policyIDs at the top: those are the
// agent's CEF labels, not API fields); created later than timestamp,
// mostly by seconds, sometimes by hours; mainInfo.eventObjects naming what
// the activity acted on (role 3) and who acted (role 4, or 5 on a failed
// log-on, whose account is in failedUserData); entityData with null
// members; resolvedActor with its numbers as strings.
//
// The output depends only on the arguments, so a benchmark is repeatable
// and the example export is the same on every machine.
package activitygen

import (
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"strconv"
)

// App is an app (a service, in the API's filters) activities come from.
type App struct {
	ID   int    // appId
	Name string // appName
}

// Target is what an activity acts on: the event objects with role 3.
type Target int

const (
	TargetNone       Target = iota // nothing but the actor
	TargetAccount                  // the user's account: log on, log out
	TargetObject                   // Event.Object: a file or site
	TargetShare                    // Event.Object shared with a guest: two objects
	TargetParameters               // a failed sign-in's request parameters
)

// Event is a kind of activity.
type Event struct {
	Name        string // eventTypeName
	Value       string // eventTypeValue
	Description string // description
	Operation   string // mainInfo.rawOperationName
	Target      Target
	Object      string // the name of the file, folder or site acted on
}

// Activity is what one generated activity says.
type Activity struct {
	Seq         int   // the activity's number: with Timestamp, it makes the _id unique
	Timestamp   int64 // when it happened, Unix ms
	Created     int64 // when MCAS saved it, Unix ms
	TenantForm  bool  // _id as <tenantId>_<appId>_<uuid>, else <created>_<uuid>
	App         App
	Event       Event
	User        string // the actor's user name (UPN)
	DisplayName string // the actor's display name
	IP          string // device.clientIP
	UserAgent   string
	Country     string // "" writes countryCode null
	// Bulky adds more of what the tool passes over in a real answer (the
	// raw record of the app, the parsed user agent, collection details):
	// about 4 KiB an activity instead of 2.3, for decoding benchmarks.
	Bulky bool
}

// Apps, Events, Users and Agents are what New draws activities from.
var Apps = []App{
	{11161, "Office 365"},
	{20893, "Microsoft Exchange Online"},
	{15600, "Microsoft OneDrive for Business"},
	{20892, "Microsoft SharePoint Online"},
	{28375, "Microsoft Teams"},
	{11114, "Salesforce"},
	{10489, "Box"},
}

var Events = []Event{
	{"EVENT_CATEGORY_LOGIN", "EVENT_AAD_LOGIN", "Log on", "OAuth2:Authorize", TargetAccount, ""},
	{"EVENT_CATEGORY_LOGOUT", "EVENT_O365_LOGOUT", "Log out", "UserLoggedOut", TargetAccount, ""},
	{"EVENT_CATEGORY_DOWNLOAD_FILE", "EVENT_O365_ONEDRIVE_FILE_DOWNLOADED", "Download file: Q3 budget|draft=v2.xlsx", "FileDownloaded", TargetObject, "Q3 budget|draft=v2.xlsx"},
	{"EVENT_CATEGORY_ACCESS_FILE", "EVENT_O365_SHAREPOINT_FILE_ACCESSED", `Access file: \\fs01\legal\Données\contrat_été.docx`, "FileAccessed", TargetObject, `\\fs01\legal\Données\contrat_été.docx`},
	{"EVENT_CATEGORY_UPDATE_PERMISSIONS", "EVENT_O365_SHARING_SET", "Share folder Finance with external user", "SharingSet", TargetShare, "Finance"},
	{"EVENT_CATEGORY_SEND_MAIL", "EVENT_EXO_SEND", "Send mail: \"Réunion 会议\" to 3 recipients", "Send", TargetNone, ""},
	{"EVENT_CATEGORY_UNSPECIFIED", "EVENT_O365_ONEDRIVE_GENERIC", "FilePreviewed", "FilePreviewed", TargetObject, "https://contoso-my.sharepoint.com/personal/user_contoso_com/"},
	{"EVENT_CATEGORY_FAILED_LOGIN", "EVENT_AAD_LOGIN_FAILED", "Failed log on (Failure message: Invalid username or password.)", "OAuth2:Token", TargetParameters, ""},
	{"EVENT_CATEGORY_RUN_COMMAND", "EVENT_O365_EXO_CMDLET", "Run command: Set-Mailbox -Identity adele -ForwardingSmtpAddress x@example.com\nline two", "Set-Mailbox", TargetNone, ""},
	{"EVENT_CATEGORY_UPLOAD_FILE", "EVENT_O365_ONEDRIVE_FILE_UPLOADED", "Upload file: rapport annuel 2024.pdf", "FileUploaded", TargetObject, "rapport annuel 2024.pdf"},
}

var Users = []struct{ Name, DisplayName string }{
	{"admin@contoso.com", "MOD Administrator"}, {"megan.bowen@contoso.com", "Megan Bowen"},
	{"adele.vance@contoso.com", "Adele Vance"}, {"françois.dupré@contoso.com", "François Dupré"},
	{"søren.kierkegaard@contoso.com", "Søren Kierkegaard"}, {"svc-backup@contoso.com", "Backup Service"},
	{"lee.gu@contoso.com", "Lee Gu"}, {"nestor.wilke@contoso.com", "Nestor Wilke"},
}

var Agents = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
	"Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17531; Pro)",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
	"OneDriveMpc-Transform_Thumbnail/1.0",
	"",
}

var countries = []string{"US", "FR", "DK", "JP", "DE", ""}

// New is activity number i, at ts, drawn from Apps, Events, Users and
// Agents; its _id is unique per (i, ts).
func New(i int, ts int64) Activity {
	user := Users[(i/3)%len(Users)]
	ip := "203.0.113." + strconv.Itoa(i%250+1)
	if i%13 == 0 {
		ip = "2001:db8:85a3::" + strconv.FormatInt(int64(i%65535+1), 16)
	}
	return Activity{
		Seq: i, Timestamp: ts, Created: CreatedAfter(i, ts), TenantForm: i%3 != 0,
		App: Apps[i%len(Apps)], Event: Events[i%len(Events)],
		User: user.Name, DisplayName: user.DisplayName, IP: ip,
		UserAgent: Agents[(i/7)%len(Agents)], Country: countries[(i/11)%len(countries)],
	}
}

// CreatedAfter is when MCAS saved activity i that happened at ts: seconds
// later, and for one activity in 17 hours later, as activities the API
// collects late are.
func CreatedAfter(i int, ts int64) int64 {
	r := Hash(i, ts)
	if i%17 == 16 {
		return ts + 2*3600_000 + int64(r%(3*3600_000))
	}
	return ts + 1000 + int64(r%59_000)
}

// Append appends activity number i, stamped ts (Unix ms), with the bulk of
// a real answer, to dst: one JSON object on one line, without a line end.
func Append(dst []byte, i int, ts int64) []byte {
	a := New(i, ts)
	a.Bulky = true
	return a.Append(dst)
}

// tenantID and aadTenantID are the tenant of every activity.
const (
	tenantID    = "61520033"
	aadTenantID = "5f3e2d1c-0b9a-4877-8665-544332211000"
)

// Append appends a as the API returns it: one JSON object on one line,
// without a line end.
func (a *Activity) Append(b []byte) []byte {
	uuid := a.uuid()
	app := strconv.Itoa(a.App.ID)
	failed := a.Event.Target == TargetParameters
	b = append(b, `{"_id":"`...)
	b = a.appendID(b, uuid, app)
	b = append(b, `","tenantId":`+tenantID+`,"aadTenantId":"`+aadTenantID+`","appId":`...)
	b = append(b, app...)
	b = append(b, `,"saasId":`...)
	b = append(b, app...)
	b = appendMillis(b, "timestamp", a.Timestamp)
	b = appendMillis(b, "timestampRaw", a.Timestamp)
	b = appendMillis(b, "instantiation", a.Created-2000)
	b = appendMillis(b, "instantiationRaw", a.Created-2000)
	b = appendMillis(b, "created", a.Created)
	b = appendMillis(b, "createdRaw", a.Created)
	b = append(b, `,"eventType":`...)
	b = strconv.AppendInt(b, int64(233000+a.Seq%500), 10)
	b = append(b, `,"eventTypeValue":`...)
	b = appendString(b, a.Event.Value)
	b = append(b, `,"eventRouting":{"scubaUnpacker":false,"lograbber":true,"auditing":true},"device":{"clientIP":`...)
	b = appendString(b, a.IP)
	b = append(b, `,"userAgent":`...)
	b = appendString(b, a.UserAgent)
	b = append(b, `,"countryCode":`...)
	b = appendNullable(b, a.Country)
	b = append(b, `},"location":{"countryCode":`...)
	b = appendNullable(b, a.Country)
	b = append(b, `,"city":"Boydton","region":"Virginia","organizationSearchable":"Microsoft Corporation","anonymousProxy":false,"isSatelliteProvider":false,"category":0,"categoryValue":"NONE"`...)
	if a.Bulky {
		b = append(b, `,"regionCode":"VA","longitude":-78.3875,"latitude":36.6676`...)
	}
	b = append(b, `},"user":{`...)
	if !failed { // a failed log-on has no user name: failedUserData has it
		b = append(b, `"userName":`...)
		b = appendString(b, a.User)
		b = append(b, ',')
	}
	b = append(b, `"userTags":["6a0f1e2d3c4b5a6978877665"]}`...)
	if failed {
		b = append(b, `,"failedUserData":{"userName":`...)
		b = appendString(b, a.User)
		b = append(b, '}')
	}
	if a.Bulky {
		b = append(b, `,"userAgent":{"family":"EDGE_CHROMIUM","name":"Edge Chromium","operatingSystem":{"name":"Windows","family":"Windows","version":"10"},"type":"Browser","typeName":"Browser","version":"124.0.2478.80","deviceType":"DESKTOP","nativeBrowser":false,"tags":["000000000000000000000000"],"os":"WINDOWS","browser":"EDGE_CHROMIUM"}`...)
	}
	b = append(b, `,"internals":{"otherIPs":[`...)
	b = appendString(b, a.IP)
	b = append(b, `]},"mainInfo":{`...)
	if failed {
		b = append(b, `"activityResult":{"isSuccess":false,"message":"Invalid username or password."},`...)
	}
	b = append(b, `"eventObjects":[`...)
	b = a.appendEventObjects(b, uuid)
	b = append(b, `],"rawOperationName":`...)
	b = appendString(b, a.Event.Operation)
	b = append(b, `,"prettyOperationName":`...)
	b = appendString(b, a.Event.Operation)
	if failed {
		b = append(b, `,"type":"failedLogin"`...)
	} else {
		b = append(b, `,"type":"basic"`...)
	}
	b = append(b, `},"confidenceLevel":20,"source":2,"srcAppId":11161`...)
	if a.Bulky {
		b = a.appendBulk(b, uuid)
	}
	b = append(b, `,"resolvedActor":{"id":"`...)
	b = append(b, uuid...)
	b = append(b, `","saasId":"11161","instanceId":"0","tags":[],"objType":"23","name":`...)
	b = appendString(b, a.DisplayName)
	b = append(b, `,"role":"`...)
	b = append(b, a.actorRole()...)
	b = append(b, `","resolved":true},"uid":"`...)
	b = a.appendID(b, uuid, app)
	b = append(b, `","appName":`...)
	b = appendString(b, a.App.Name)
	b = append(b, `,"eventTypeName":`...)
	b = appendString(b, a.Event.Name)
	b = append(b, `,"classifications":[],"entityData":{"0":{"displayName":`...)
	b = appendString(b, a.DisplayName)
	b = append(b, `,"id":{"id":`...)
	b = appendString(b, a.User)
	b = append(b, `,"saas":11161,"inst":0},"resolved":true},"1":null},"description_id":"EVENT_DESCRIPTION_BASIC_EVENT"`...)
	if a.Bulky {
		b = append(b, `,"description_metadata":{"target_object":"","operation_name":`...)
		b = appendString(b, a.Event.Operation)
		b = append(b, `,"colon":"","dash":""}`...)
	}
	b = append(b, `,"description":`...)
	b = appendString(b, a.Event.Description)
	return append(b, `,"genericEventType":"ENUM_ACTIVITY_GENERIC_TYPE_BASIC","severity":"INFO"}`...)
}

// appendID appends the activity's _id: <tenantId>_<appId>_<uuid> or
// <created>_<uuid>, the two forms the API's ids take.
func (a *Activity) appendID(b, uuid []byte, app string) []byte {
	if a.TenantForm {
		b = append(b, tenantID+"_"...)
		b = append(b, app...)
	} else {
		b = strconv.AppendInt(b, a.Created, 10)
	}
	b = append(b, '_')
	return append(b, uuid...)
}

// actorRole is the role of the event objects that stand for the actor: 4,
// or 5 for the user of a failed sign-in.
func (a *Activity) actorRole() string {
	if a.Event.Target == TargetParameters {
		return "5"
	}
	return "4"
}

// appendEventObjects appends the items of mainInfo.eventObjects: what the
// activity acted on (role 3), the app signed in to (role 1), and the actor
// as a user and as an account.
func (a *Activity) appendEventObjects(b, uuid []byte) []byte {
	object := func(b []byte, objType, role string, name string, id []byte) []byte {
		b = append(b, `{"objType":`...)
		b = append(b, objType...)
		b = append(b, `,"role":`...)
		b = append(b, role...)
		b = append(b, `,"tags":[],"name":`...)
		b = appendString(b, name)
		b = append(b, `,"id":`...)
		b = appendString(b, string(id))
		return append(b, "},"...)
	}
	switch a.Event.Target {
	case TargetAccount:
		b = object(b, "6", "1", a.App.Name, []byte("00000002-0000-0ff1-ce00-000000000000"))
		b = object(b, "2", "3", a.User, uuid[:18])
	case TargetObject:
		b = object(b, "1", "3", a.Event.Object, uuid[9:])
	case TargetShare:
		b = object(b, "1", "3", a.Event.Object, uuid[9:])
		b = object(b, "22", "3", "guest_fabrikam.com#ext#@contoso.onmicrosoft.com", []byte("guest_fabrikam.com#ext#@contoso.onmicrosoft.com"))
	case TargetParameters:
		b = object(b, "6", "1", a.App.Name, uuid[:18])
		b = object(b, "7", "3", "Request ID", uuid)
		b = append(b, `{"name":"Pass-through authentication","objType":7,"role":3,"tags":[],"value":"false"},`...)
		b = object(b, "2", "2", a.User, uuid)
	}
	role := a.actorRole()
	b = append(b, `{"objType":21,"role":`...)
	b = append(b, role...)
	b = append(b, `,"tags":[],"name":`...)
	b = appendString(b, a.DisplayName)
	b = append(b, `,"instanceId":0,"resolved":true,"saasId":11161,"id":`...)
	b = appendString(b, a.User)
	b = append(b, `,"link":-73519022},{"objType":23,"role":`...)
	b = append(b, role...)
	b = append(b, `,"tags":["6a0f1e2d3c4b5a6978877665"],"name":`...)
	b = appendString(b, a.DisplayName)
	b = append(b, `,"instanceId":0,"resolved":true,"saasId":11161,"id":"`...)
	b = append(b, uuid...)
	return append(b, `","link":-73519022}`...)
}

// appendBulk appends the members a real answer has and the tool passes
// over: how MCAS collected the record, and the app's raw record.
func (a *Activity) appendBulk(b, uuid []byte) []byte {
	b = append(b, `,"lograbberService":{"o365EventGrabber":true,"gediEvent":true},"collected":{"o365":{"blobCreated":"2024-05-14T08:12:33.0000000Z","blobId":"20240514081233412000000`...)
	b = strconv.AppendInt(b, int64(a.Seq%1000), 10)
	b = append(b, `$20240514082233412000000$audit_general$Audit_General$emea0021"}},"rawDataJson":{"OrganizationId":"`+aadTenantID+`","CreationTime":"2024-05-14T08:12:33","RecordType":6,"Operation":`...)
	b = appendString(b, a.Event.Operation)
	b = append(b, `,"UserType":0,"UserKey":"i:0h.f|membership|10032001a7c3e4b5@live.com","Workload":"OneDrive","ClientIP":`...)
	b = appendString(b, a.IP)
	b = append(b, `,"ObjectId":"https://contoso-my.sharepoint.com/personal/user_contoso_com/Documents/Shared Documents/Finance/Q3 budget.xlsx","UserId":`...)
	b = appendString(b, a.User)
	b = append(b, `,"Version":1,"Id":"`...)
	b = append(b, uuid...)
	b = append(b, `","SiteUrl":"https://contoso-my.sharepoint.com/personal/user_contoso_com/","SourceFileName":"Q3 budget.xlsx","SourceRelativeUrl":"Documents/Shared Documents/Finance","SourceFileExtension":"xlsx","ItemType":"File","EventSource":"SharePoint","UserAgent":`...)
	b = appendString(b, a.UserAgent)
	b = append(b, `,"ListItemUniqueId":"`...)
	b = append(b, uuid...)
	return append(b, `"}`...)
}

// uuid is the activity's uuid, from its number and time.
func (a *Activity) uuid() []byte {
	h := fnv.New128a()
	var n [16]byte
	binary.LittleEndian.PutUint64(n[:8], uint64(a.Seq))
	binary.LittleEndian.PutUint64(n[8:], uint64(a.Timestamp))
	h.Write(n[:])
	sum := h.Sum(nil)
	uuid := make([]byte, 0, 36)
	for i, part := range [][]byte{sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16]} {
		if i > 0 {
			uuid = append(uuid, '-')
		}
		uuid = hex.AppendEncode(uuid, part)
	}
	return uuid
}

// Hash is a number that looks random but depends only on i and salt
// (SplitMix64's finaliser): for choices that must stay the same from run
// to run and from machine to machine.
func Hash(i int, salt int64) uint64 {
	z := uint64(i)*0x9e3779b97f4a7c15 + uint64(salt)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// appendMillis appends ,"key":ms.
func appendMillis(b []byte, key string, ms int64) []byte {
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return strconv.AppendInt(b, ms, 10)
}

// appendNullable appends s as a JSON string, or null when it is empty.
func appendNullable(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendString(b, s)
}

// appendString appends s as a JSON string. The generator's strings hold no
// control character but \n and \r, and no character JSON must escape but
// " and \, so this is all the encoding they need; non-ASCII text stays
// UTF-8, as the API sends it.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
