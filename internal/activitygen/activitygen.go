// Package activitygen makes realistic MCAS activity objects for benchmarks:
// the size, nesting and field mix of what the activities API returns (an
// Office 365 record with its rawDataJson, the resolved actor, location,
// user agent, entity data), about 2 KiB each, with the non-ASCII text, CEF
// special characters and IPv6 addresses a real tenant has. The tool reads a
// dozen of their fields and must skip the rest: benchmarking on the small
// objects of the unit tests would flatter the JSON decoding.
//
// Its output depends only on its arguments, so a benchmark is repeatable
// and scripts/bench.sh can write the same export on every machine.
package activitygen

import (
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"strconv"
)

type app struct {
	id             int
	name, uniqueID string
	workload       string
}

var apps = []app{
	{11161, "Microsoft 365", "APPID_O365", "AzureActiveDirectory"},
	{20893, "Microsoft Exchange Online", "APPID_EXCHANGE", "Exchange"},
	{15600, "Microsoft OneDrive for Business", "APPID_ONEDRIVE", "OneDrive"},
	{20892, "Microsoft SharePoint Online", "APPID_SHAREPOINT", "SharePoint"},
	{28375, "Microsoft Teams", "APPID_TEAMS", "MicrosoftTeams"},
	{11114, "Salesforce", "APPID_SALESFORCE", "Salesforce"},
	{14509, "ServiceNow", "APPID_SERVICENOW", "ServiceNow"},
}

type event struct {
	name, value, operation, description string
}

var events = []event{
	{"EVENT_CATEGORY_LOGIN", "EVENT_O365_LOGIN", "UserLoggedIn", "Log on"},
	{"EVENT_CATEGORY_LOGOUT", "EVENT_O365_LOGOUT", "UserLoggedOut", "Log out"},
	{"EVENT_CATEGORY_DOWNLOAD_FILE", "EVENT_O365_ONEDRIVE_FILE_DOWNLOADED", "FileDownloaded", "Download file: Q3 budget|draft=v2.xlsx"},
	{"EVENT_CATEGORY_ACCESS_FILE", "EVENT_O365_SHAREPOINT_FILE_ACCESSED", "FileAccessed", `Access file: \\fs01\legal\Données\contrat_été.docx`},
	{"EVENT_CATEGORY_UPDATE_PERMISSIONS", "EVENT_O365_SHARING_SET", "SharingSet", "Share folder Finance with external user"},
	{"EVENT_CATEGORY_SEND_MAIL", "EVENT_EXO_SEND", "Send", "Send mail: \"Réunion 会议\" to 3 recipients"},
	{"EVENT_CATEGORY_UNSPECIFIED", "EVENT_O365_MAILBOX_LOGIN", "MailboxLogin", "Mailbox login"},
	{"EVENT_CATEGORY_LOGIN", "EVENT_O365_LOGIN_FAILED", "UserLoginFailed", "Failed log on"},
	{"EVENT_CATEGORY_RUN_COMMAND", "EVENT_O365_EXO_CMDLET", "Set-Mailbox", "Run command: Set-Mailbox -Identity adele -ForwardingSmtpAddress x@example.com\nline two"},
	{"EVENT_CATEGORY_UPLOAD_FILE", "EVENT_O365_ONEDRIVE_FILE_UPLOADED", "FileUploaded", "Upload file: rapport annuel 2024.pdf"},
}

var agents = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
	"Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17531; Pro)",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
	"OneDriveMpc-Transform_Thumbnail/1.0",
	"",
}

var cities = []struct{ country, city, region, org string }{
	{"US", "Boydton", "Virginia", "Microsoft Corporation"},
	{"FR", "Paris", "Île-de-France", "Orange S.A."},
	{"DK", "København", "Capital Region", "TDC Holding A/S"},
	{"JP", "Tokyo", "Tokyo", "NTT Communications Corporation"},
	{"DE", "Frankfurt am Main", "Hesse", "Deutsche Telekom AG"},
}

var users = []string{
	"admin@contoso.com", "megan.bowen@contoso.com", "adele.vance@contoso.com", "françois.dupré@contoso.com",
	"søren.kierkegaard@contoso.com", "svc-backup@contoso.com", "lee.gu@contoso.com", "nestor.wilke@contoso.com",
}

// Append appends activity number i, stamped ts (Unix ms), to dst: one JSON
// object on one line, without a line end. Its "_id" is unique per i.
func Append(dst []byte, i int, ts int64) []byte {
	h := fnv.New128a()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(i))
	h.Write(n[:])
	sum := h.Sum(nil)
	uuid := make([]byte, 0, 36)
	uuid = hex.AppendEncode(uuid, sum[0:4])
	uuid = append(uuid, '-')
	uuid = hex.AppendEncode(uuid, sum[4:6])
	uuid = append(uuid, '-')
	uuid = hex.AppendEncode(uuid, sum[6:8])
	uuid = append(uuid, '-')
	uuid = hex.AppendEncode(uuid, sum[8:10])
	uuid = append(uuid, '-')
	uuid = hex.AppendEncode(uuid, sum[10:16])

	a := apps[i%len(apps)]
	ev := events[i%len(events)]
	user := users[(i/3)%len(users)]
	agent := agents[(i/7)%len(agents)]
	loc := cities[(i/11)%len(cities)]
	ip := "203.0.113." + strconv.Itoa(i%250+1)
	if i%13 == 0 {
		ip = "2001:db8:85a3::" + strconv.FormatInt(int64(i%65535+1), 16)
	}
	created := ts + 1500 + int64(i%4000)
	tenant := "6f1a3c2e-8b4d-4e5f-9a7b-1c2d3e4f5a6b"

	b := dst
	b = append(b, `{"_id":"`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, '_')
	b = append(b, uuid...)
	b = append(b, `","_tid":27418,"aadTenantId":"`...)
	b = append(b, tenant...)
	b = append(b, `","appId":`...)
	b = strconv.AppendInt(b, int64(a.id), 10)
	b = append(b, `,"saasId":`...)
	b = strconv.AppendInt(b, int64(a.id), 10)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"timestampRaw":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"createdRaw":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"eventType":`...)
	b = strconv.AppendInt(b, int64(233000+i%500), 10)
	b = append(b, `,"eventTypeValue":`...)
	b = strconv.AppendQuote(b, ev.value)
	b = append(b, `,"eventRouting":{"scubaUnpacker":false,"auditing":true,"adminEvent":false},"device":{"clientIP":"`...)
	b = append(b, ip...)
	b = append(b, `","userAgent":`...)
	b = appendString(b, agent)
	b = append(b, `,"countryCode":"`...)
	b = append(b, loc.country...)
	b = append(b, `"},"location":{"countryCode":"`...)
	b = append(b, loc.country...)
	b = append(b, `","city":`...)
	b = appendString(b, loc.city)
	b = append(b, `,"region":`...)
	b = appendString(b, loc.region)
	b = append(b, `,"longitude":-78.3875,"latitude":36.6676,"categoryValue":"NONE","isSatellite":false,"organizationSearchable":`...)
	b = appendString(b, loc.org)
	b = append(b, `,"anonymousProxy":false},"user":{"userName":`...)
	b = appendString(b, user)
	b = append(b, `,"userTags":["5f01dbbc68df27c17aa6ca81"]},"userAgent":{"family":"EDGE_CHROMIUM","name":"Edge Chromium","operatingSystem":{"name":"Windows","family":"Windows","version":"10"},"type":"Browser","typeName":"Browser","version":"124.0.2478.80","deviceType":"DESKTOP","nativeBrowser":false,"tags":["000000000000000000000000"],"os":"WINDOWS","browser":"EDGE_CHROMIUM"},"mainAsset":{"_id":"`...)
	b = append(b, uuid[:24]...)
	b = append(b, `","keys":[`...)
	b = appendString(b, user)
	b = append(b, `],"objType":21,"displayName":`...)
	b = appendString(b, user)
	b = append(b, `,"serviceAppId":`...)
	b = strconv.AppendInt(b, int64(a.id), 10)
	b = append(b, `},"confidenceLevel":30,"resolvedActor":{"id":"`...)
	b = append(b, uuid...)
	b = append(b, `","saasId":"`...)
	b = strconv.AppendInt(b, int64(a.id), 10)
	b = append(b, `","instanceId":"0","name":`...)
	b = appendString(b, user)
	b = append(b, `,"objType":"21","role":"4","tags":[]},"actions":[],"collected":{"o365":{"blobCreated":"2024-05-14T08:12:33.0000000Z","blobId":"20240514081233412000000`...)
	b = strconv.AppendInt(b, int64(i%1000), 10)
	b = append(b, `$20240514082233412000000$audit_general$Audit_General$emea0021"}},"rawDataJson":{"OrganizationId":"`...)
	b = append(b, tenant...)
	b = append(b, `","CreationTime":"2024-05-14T08:12:33","RecordType":6,"Operation":`...)
	b = appendString(b, ev.operation)
	b = append(b, `,"UserType":0,"UserKey":"i:0h.f|membership|10032001a7c3e4b5@live.com","Workload":`...)
	b = appendString(b, a.workload)
	b = append(b, `,"ClientIP":"`...)
	b = append(b, ip...)
	b = append(b, `","ObjectId":"https://contoso-my.sharepoint.com/personal/user_contoso_com/Documents/Shared Documents/Finance/Q3 budget.xlsx","UserId":`...)
	b = appendString(b, user)
	b = append(b, `,"Version":1,"Id":"`...)
	b = append(b, uuid...)
	b = append(b, `","SiteUrl":"https://contoso-my.sharepoint.com/personal/user_contoso_com/","SourceFileName":"Q3 budget.xlsx","SourceRelativeUrl":"Documents/Shared Documents/Finance","SourceFileExtension":"xlsx","ItemType":"File","EventSource":"SharePoint","UserAgent":`...)
	b = appendString(b, agent)
	b = append(b, `,"ListItemUniqueId":"`...)
	b = append(b, uuid...)
	b = append(b, `"},"uniqueServiceAppIds":[`...)
	b = strconv.AppendQuote(b, a.uniqueID)
	b = append(b, `],"appName":`...)
	b = appendString(b, a.name)
	b = append(b, `,"eventTypeName":`...)
	b = strconv.AppendQuote(b, ev.name)
	b = append(b, `,"classifications":[],"entityData":{"0":{"displayName":`...)
	b = appendString(b, user)
	b = append(b, `,"id":{"id":"`...)
	b = append(b, uuid...)
	b = append(b, `","saas":11161,"inst":0},"resolved":true},"1":{"displayName":`...)
	b = appendString(b, a.name)
	b = append(b, `,"id":{"id":`...)
	b = strconv.AppendInt(b, int64(a.id), 10)
	b = append(b, `},"resolved":true},"2":null},"description_id":"EVENT_DESCRIPTION_GENERIC","description_metadata":{"target_object":"","colon":"","dash":"","activity_result_prefix":"","activity_result_message":"","activity_result_suffix":""},"description":`...)
	b = appendString(b, ev.description)
	b = append(b, `,"genericEventType":"ENUM_ACTIVITY_GENERIC_TYPE_BASIC","severity":"INFO","srcAppId":`...)
	b = strconv.AppendInt(b, int64(a.id), 10)
	b = append(b, `,"internals":{"otherIPs":["`...)
	b = append(b, ip...)
	b = append(b, `","40.126.32.134"]},"targetObjects":[`...)
	switch i % 3 {
	case 0:
	case 1:
		b = append(b, `{"name":`...)
		b = appendString(b, user)
		b = append(b, `,"type":21,"id":"`...)
		b = append(b, uuid[:8]...)
		b = append(b, `"},{"name":"Q3 budget.xlsx","type":25,"id":"`...)
		b = append(b, uuid[9:13]...)
		b = append(b, `"}`...)
	default:
		b = appendString(b, user)
		b = append(b, `,"Finance"`...)
	}
	b = append(b, `],"policyIDs":[`...)
	if i%7 == 0 {
		b = append(b, `"6631f0ec8d8f1c2ab0e1c0a1"`...)
	}
	b = append(b, `]}`...)
	return b
}

// appendString appends s as a JSON string. The generator's strings hold no
// control character but \n, and no character JSON must escape but " and
// \, so this is all the encoding they need; non-ASCII text stays UTF-8, as
// the API sends it.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
