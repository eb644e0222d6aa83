package graph

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"

	"siem-recovery/recovery"
)

// The members of a streaming API record (defender-docs
// streaming-api-event-hub.md, streaming-api-storage.md) that are the same
// for every CloudAppEvents row.
const (
	recordOperation = "Publish"
	recordCategory  = "AdvancedHunting-" + Table
)

// The columns of CloudAppEvents the CEF mapping reads (defender-docs
// advanced-hunting-cloudappevents-table.md; Microsoft's mapping from the
// agent's CEF fields in migrate-to-supported-api-solutions.md).
const (
	columnActionType         = "ActionType"
	columnActivityType       = "ActivityType"
	columnApplication        = "Application"
	columnApplicationID      = "ApplicationId"
	columnAccountID          = "AccountId"
	columnAccountDisplayName = "AccountDisplayName"
	columnIPAddress          = "IPAddress"
	columnUserAgent          = "UserAgent"
	columnObjectName         = "ObjectName"
	columnActivityObjects    = "ActivityObjects"
)

// targetRole is the Role of an item of ActivityObjects that the activity
// acted on: what the agent listed in cs3 (targetObjects).
const targetRole = "Target object"

// dynamicTypes are the names the API's schema may give a dynamic column
// (a JSON object or array: ActivityObjects, RawEventData, …).
var dynamicTypes = map[string]bool{"object": true, "dynamic": true, "array": true}

// buildRecord makes the streaming API's record of one row of an answer:
// {"time","tenantId","operationName":"Publish","category":
// "AdvancedHunting-CloudAppEvents","properties":{row}}. The row keeps its
// columns, their order and their values byte for byte as the API sent
// them, with one change: a dynamic column (by the answer's schema) whose
// value came as a string holding a JSON object or array becomes that
// object or array, as the streaming API writes it. "time" is the row's
// Timestamp (the record of a recovered row has no time of its own:
// docs/graph-source.md). row must be valid JSON (the answer's decoder
// checked it). It returns the record and the row's place in the order of
// the pages.
func buildRecord(row []byte, schema map[string]string, tenant string) (rec []byte, at Ticks, id string, err error) {
	// The Timestamp first: "time" leads the record. It is the first
	// column of a row, so this look costs little.
	var timestamp []byte
	members(row, func(key, value []byte) bool {
		if keyName(key) == columnTimestamp {
			timestamp = value
		}
		return timestamp == nil
	})
	ts, err := stringValue(timestamp)
	if timestamp == nil || err != nil {
		return nil, 0, "", fmt.Errorf("a row has no %s string", columnTimestamp)
	}
	rec = make([]byte, 0, len(row)+len(tenant)+len(timestamp)+160)
	rec = append(rec, `{"time":`...)
	rec = append(rec, timestamp...)
	rec = append(rec, `,"tenantId":`...)
	rec, _ = appendJSONString(rec, tenant)
	rec = append(rec, `,"operationName":"`+recordOperation+`","category":"`+recordCategory+`","properties":{`...)
	seenID := false
	n := 0
	ok := members(row, func(key, value []byte) bool {
		name := keyName(key)
		if dynamicTypes[strings.ToLower(schema[name])] {
			value = unwrapDynamic(value)
		}
		if name == columnReportID && !seenID {
			seenID = true
			id, err = stringValue(value)
		}
		if n++; n > 1 {
			rec = append(rec, ',')
		}
		rec = append(rec, key...)
		rec = append(rec, ':')
		rec = append(rec, value...)
		return err == nil
	})
	switch {
	case !ok:
		return nil, 0, "", errors.New("a row is not a JSON object")
	case err != nil:
		return nil, 0, "", fmt.Errorf("a row's %s is not a string", columnReportID)
	case !seenID:
		return nil, 0, "", fmt.Errorf("a row has no %s", columnReportID)
	}
	if err := checkReportID(id); err != nil {
		return nil, 0, "", fmt.Errorf("a row has %w", err)
	}
	if at, err = ParseTicks(ts); err != nil {
		return nil, 0, "", fmt.Errorf("row %s: %s %w", recovery.Escape(id), columnTimestamp, err)
	}
	return append(rec, "}}"...), at, id, nil
}

// unwrapDynamic is a dynamic column's value as the streaming API writes
// it: a string holding a JSON object or array becomes the object or array
// (compacted); any other value stays as it is.
func unwrapDynamic(v []byte) []byte {
	if len(v) == 0 || v[0] != '"' {
		return v
	}
	s, err := unquote(v)
	if err != nil {
		return v
	}
	t := bytes.TrimSpace(s)
	if len(t) == 0 || (t[0] != '{' && t[0] != '[') || fastjson.ValidateBytes(t) != nil {
		return v
	}
	if bytes.ContainsAny(t, "\r\n") {
		// A pretty-printed value: one record is one line.
		var b bytes.Buffer
		if json.Compact(&b, t) == nil {
			return b.Bytes()
		}
	}
	return t
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) ([]byte, error) {
	b, err := json.Marshal(s)
	return append(dst, b...), err
}

// ParseRecord decodes one streaming API record of CloudAppEvents, as
// Fetch makes them and as the streaming API writes them to Event Hubs or
// Storage (a SIEM's export of either), into an Activity: Raw is raw
// itself (a caller that reuses its buffer must clone it), ID is the row's
// ReportId, Timestamp its Timestamp in Unix ms (the millisecond it falls
// in), and the fields the CEF format reads are filled by Microsoft's
// mapping of the agent's CEF fields (docs/graph-source.md):
//
//	signature (EventTypeName)          ActionType; EventTypeValue ActivityType
//	name, msg (Description)            ActionType, and ": ObjectName" when the row has one
//	suser (UserName)                   AccountId, else AccountDisplayName
//	destinationServiceName (AppName)   Application
//	dvc / c6a1 (ClientIP)              IPAddress
//	requestClientApplication           UserAgent
//	cs2 (UniqueServiceAppIDs)          APPID_<name or number> of ApplicationId
//	cs3 (TargetObjects)                the Name (else Id) of each item of ActivityObjects whose Role is "Target object"
//
// A record that is not JSON, or without a ReportId or a Timestamp, is an
// error: it could be neither placed in the window nor recognised again.
// A column given twice counts the first time.
func ParseRecord(raw []byte) (recovery.Activity, error) {
	if fastjson.ValidateBytes(raw) != nil {
		return recovery.Activity{}, errors.New("not a streaming API record: not valid JSON")
	}
	return parseRecord(raw)
}

// parseRecord is ParseRecord for a record known to be valid JSON.
func parseRecord(raw []byte) (recovery.Activity, error) {
	var props []byte
	if !members(raw, func(key, value []byte) bool {
		if props == nil && keyName(key) == "properties" && len(value) > 0 && value[0] == '{' {
			props = value
		}
		return true
	}) || props == nil {
		return recovery.Activity{}, errors.New(`not a streaming API record: no "properties" object`)
	}
	var col [len(recordColumns)][]byte
	members(props, func(key, value []byte) bool {
		if i := slices.Index(recordColumns[:], keyName(key)); i >= 0 && col[i] == nil {
			col[i] = value
		}
		return true
	})
	get := func(name string) []byte { return col[slices.Index(recordColumns[:], name)] }
	id := text(get(columnReportID))
	if err := checkReportID(id); err != nil {
		return recovery.Activity{}, fmt.Errorf("the record has %w", err)
	}
	at, err := ParseTicks(text(get(columnTimestamp)))
	if err != nil {
		return recovery.Activity{}, fmt.Errorf("record %s: %s %w", recovery.Escape(id), columnTimestamp, err)
	}
	a := recovery.Activity{
		Kind:           recovery.KindCloudAppEvent,
		ID:             id,
		Timestamp:      at.Millis(),
		EventTypeName:  text(get(columnActionType)),
		EventTypeValue: text(get(columnActivityType)),
		AppName:        text(get(columnApplication)),
		UserName:       text(get(columnAccountID)),
		ClientIP:       text(get(columnIPAddress)),
		UserAgent:      text(get(columnUserAgent)),
		TargetObjects:  targets(get(columnActivityObjects)),
		Raw:            raw,
	}
	if a.UserName == "" {
		a.UserName = text(get(columnAccountDisplayName))
	}
	a.Name, a.Description = a.EventTypeName, a.EventTypeName
	if object := text(get(columnObjectName)); object != "" {
		if a.Description != "" {
			a.Description += ": "
		}
		a.Description += object
	}
	if app, ok := integer(get(columnApplicationID)); ok && app >= 0 {
		a.UniqueServiceAppIDs = recovery.AppIDText(app)
	}
	return a, nil
}

// recordColumns are the columns ParseRecord reads.
var recordColumns = [...]string{columnReportID, columnTimestamp, columnActionType, columnActivityType,
	columnApplication, columnAccountID, columnAccountDisplayName, columnIPAddress, columnUserAgent,
	columnObjectName, columnApplicationID, columnActivityObjects}

// text is a JSON string's text; "" for null, absent or another type.
func text(v []byte) string {
	s, err := stringValue(v)
	if err != nil {
		return ""
	}
	return s
}

// integer is a whole number written as a JSON number or a string of
// digits.
func integer(v []byte) (int64, bool) {
	s := string(v)
	if t := text(v); t != "" {
		s = t
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n, err == nil
}

// targets are the names of the objects an activity acted on: the items
// of ActivityObjects (an array, or a string holding one) whose Role is
// "Target object", by Name, else Id, comma-joined in their order. The
// items' keys match in any case (they are written Name and Role, as
// columns are).
func targets(v []byte) string {
	var names []string
	items(unwrapDynamic(v), func(item []byte) bool {
		var role, name, id []byte
		members(item, func(key, value []byte) bool {
			switch k := keyName(key); {
			case role == nil && strings.EqualFold(k, "Role"):
				role = value
			case name == nil && strings.EqualFold(k, "Name"):
				name = value
			case id == nil && strings.EqualFold(k, "Id"):
				id = value
			}
			return true
		})
		if !strings.EqualFold(text(role), targetRole) {
			return true
		}
		n := text(name)
		if n == "" {
			n = text(id)
		}
		if n != "" {
			names = append(names, n)
		}
		return true
	})
	return strings.Join(names, ",")
}
