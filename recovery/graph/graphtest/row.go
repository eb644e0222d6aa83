package graphtest

import (
	"encoding/json"
	"strconv"

	"siem-recovery/recovery/graph"
)

// ActivityObject is an item of a row's ActivityObjects: an object the
// activity involved, in the role it had.
type ActivityObject struct {
	Type                string `json:"Type"`
	Role                string `json:"Role"` // "Actor", "Target object", …
	Name                string `json:"Name"`
	ID                  string `json:"Id"`
	ApplicationID       int    `json:"ApplicationId,omitempty"`
	ApplicationInstance int    `json:"ApplicationInstance"`
}

// Row is one row of CloudAppEvents, with the table's columns
// (defender-docs advanced-hunting-cloudappevents-table.md). Dynamic
// columns hold their JSON.
type Row struct {
	Timestamp          graph.Ticks
	ActionType         string
	Application        string
	ApplicationID      int
	AppInstanceID      int
	AccountObjectID    string
	AccountID          string
	AccountDisplayName string
	IsAdminOperation   bool
	DeviceType         string
	OSPlatform         string
	IPAddress          string
	IsAnonymousProxy   bool
	CountryCode        string
	City               string
	ISP                string
	UserAgent          string
	ActivityType       string
	ActivityObjects    []ActivityObject
	ObjectName         string
	ObjectType         string
	ObjectID           string
	ReportID           string
	AccountType        string
	IsExternalUser     bool
	IsImpersonated     bool
	IPTags             []string
	IPCategory         string
	UserAgentTags      []string
	RawEventData       json.RawMessage
	AdditionalFields   json.RawMessage
	LastSeenForUser    json.RawMessage
	UncommonForUser    []string
	AuditSource        string
	SessionData        json.RawMessage
	OAuthAppID         string
}

// Column is a column of the table as the API's schema names it.
type Column struct {
	Name string
	Type string // "DateTime", "String", "Int32", "Boolean", "Object"
}

// Columns are the table's columns in the order answers list them. ISP is
// written as the streaming API and the table's own LastSeenForUser
// example write it (the reference's table says "Isp").
var Columns = []Column{
	{"Timestamp", "DateTime"}, {"ActionType", "String"}, {"Application", "String"},
	{"ApplicationId", "Int32"}, {"AppInstanceId", "Int32"}, {"AccountObjectId", "String"},
	{"AccountId", "String"}, {"AccountDisplayName", "String"}, {"IsAdminOperation", "Boolean"},
	{"DeviceType", "String"}, {"OSPlatform", "String"}, {"IPAddress", "String"},
	{"IsAnonymousProxy", "Boolean"}, {"CountryCode", "String"}, {"City", "String"},
	{"ISP", "String"}, {"UserAgent", "String"}, {"ActivityType", "String"},
	{"ActivityObjects", "Object"}, {"ObjectName", "String"}, {"ObjectType", "String"},
	{"ObjectId", "String"}, {"ReportId", "String"}, {"AccountType", "String"},
	{"IsExternalUser", "Boolean"}, {"IsImpersonated", "Boolean"}, {"IPTags", "Object"},
	{"IPCategory", "String"}, {"UserAgentTags", "Object"}, {"RawEventData", "Object"},
	{"AdditionalFields", "Object"}, {"LastSeenForUser", "Object"}, {"UncommonForUser", "Object"},
	{"AuditSource", "String"}, {"SessionData", "Object"}, {"OAuthAppId", "String"},
}

// value is the row's value in column name, as a where clause sees it:
// string, int64, bool, graph.Ticks, or a dynamic column's JSON text.
func (r *Row) value(name string) (any, bool) {
	switch name {
	case "Timestamp":
		return r.Timestamp, true
	case "ActionType":
		return r.ActionType, true
	case "Application":
		return r.Application, true
	case "ApplicationId":
		return int64(r.ApplicationID), true
	case "AppInstanceId":
		return int64(r.AppInstanceID), true
	case "AccountObjectId":
		return r.AccountObjectID, true
	case "AccountId":
		return r.AccountID, true
	case "AccountDisplayName":
		return r.AccountDisplayName, true
	case "IsAdminOperation":
		return r.IsAdminOperation, true
	case "DeviceType":
		return r.DeviceType, true
	case "OSPlatform":
		return r.OSPlatform, true
	case "IPAddress":
		return r.IPAddress, true
	case "IsAnonymousProxy":
		return r.IsAnonymousProxy, true
	case "CountryCode":
		return r.CountryCode, true
	case "City":
		return r.City, true
	case "ISP":
		return r.ISP, true
	case "UserAgent":
		return r.UserAgent, true
	case "ActivityType":
		return r.ActivityType, true
	case "ObjectName":
		return r.ObjectName, true
	case "ObjectType":
		return r.ObjectType, true
	case "ObjectId":
		return r.ObjectID, true
	case "ReportId":
		return r.ReportID, true
	case "AccountType":
		return r.AccountType, true
	case "IsExternalUser":
		return r.IsExternalUser, true
	case "IsImpersonated":
		return r.IsImpersonated, true
	case "IPCategory":
		return r.IPCategory, true
	case "AuditSource":
		return r.AuditSource, true
	case "OAuthAppId":
		return r.OAuthAppID, true
	case "ActivityObjects", "IPTags", "UserAgentTags", "RawEventData", "AdditionalFields",
		"LastSeenForUser", "UncommonForUser", "SessionData":
		return string(r.dynamic(name)), true
	}
	return nil, false
}

// dynamic is the JSON of a dynamic column; null when empty.
func (r *Row) dynamic(name string) []byte {
	var v any
	switch name {
	case "ActivityObjects":
		v = r.ActivityObjects
	case "IPTags":
		v = r.IPTags
	case "UserAgentTags":
		v = r.UserAgentTags
	case "UncommonForUser":
		v = r.UncommonForUser
	case "RawEventData":
		return orNull(r.RawEventData)
	case "AdditionalFields":
		return orNull(r.AdditionalFields)
	case "LastSeenForUser":
		return orNull(r.LastSeenForUser)
	case "SessionData":
		return orNull(r.SessionData)
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func orNull(raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return []byte("null")
	}
	return raw
}

// appendJSON appends the row as an answer holds it: its columns in order;
// a dynamic column as its JSON, or, when dynamicAsString, as a string
// holding that JSON (as the older advanced hunting API answers them).
func (r *Row) appendJSON(b []byte, dynamicAsString bool) []byte {
	b = append(b, '{')
	for i, c := range Columns {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, c.Name)
		b = append(b, ':')
		switch v, _ := r.value(c.Name); x := v.(type) {
		case graph.Ticks:
			b = appendString(b, x.String())
		case string:
			if c.Type == "Object" {
				if dynamicAsString && x != "null" {
					b = appendString(b, x)
				} else {
					b = append(b, x...)
				}
				continue
			}
			b = appendString(b, x)
		case int64:
			b = strconv.AppendInt(b, x, 10)
		case bool:
			b = strconv.AppendBool(b, x)
		}
	}
	return append(b, '}')
}

// appendString appends s as a JSON string, its non-ASCII text as UTF-8
// and < > & as they are, as the API writes them.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
