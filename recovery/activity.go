package recovery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Activity is one MCAS activity record. Raw is the object exactly as the
// source returned it (the json format sends it unchanged); the other fields
// are the ones the CEF mapping of the MCAS SIEM agent uses (SPEC §5).
type Activity struct {
	ID             string // _id
	Timestamp      int64  // timestamp, Unix ms
	EventTypeName  string // eventTypeName
	EventTypeValue string // eventTypeValue
	Description    string // description
	AppName        string // appName
	UserName       string // user.userName
	ClientIP       string // device.clientIP
	UserAgent      string // device.userAgent
	// Lists the agent fills cs2–cs4 with, comma-joined; empty when the
	// activity does not carry them.
	UniqueServiceAppIDs string // uniqueServiceAppIds
	TargetObjects       string // targetObjects
	PolicyIDs           string // policyIDs
	Raw                 json.RawMessage
}

// activityJSON is the decoding shape of an MCAS activity.
type activityJSON struct {
	ID             *string         `json:"_id"`
	Timestamp      json.RawMessage `json:"timestamp"`
	EventTypeName  string          `json:"eventTypeName"`
	EventTypeValue string          `json:"eventTypeValue"`
	Description    string          `json:"description"`
	AppName        string          `json:"appName"`
	User           struct {
		UserName string `json:"userName"`
	} `json:"user"`
	Device struct {
		ClientIP  string `json:"clientIP"`
		UserAgent string `json:"userAgent"`
	} `json:"device"`
	UniqueServiceAppIDs json.RawMessage `json:"uniqueServiceAppIds"`
	TargetObjects       json.RawMessage `json:"targetObjects"`
	PolicyIDs           json.RawMessage `json:"policyIDs"`
}

// ParseActivity decodes one activity object. Raw of the result is raw
// itself: a caller that reuses its buffer must clone it. An activity without an _id or a numeric
// timestamp is an error: it could be neither placed in the window nor
// recognised again on a resume.
func ParseActivity(raw []byte) (Activity, error) {
	var j activityJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return Activity{}, fmt.Errorf("not valid JSON (offset %d): %w", syn.Offset, err)
		}
		return Activity{}, fmt.Errorf("not an activity object: %w", err)
	}
	if j.ID == nil || *j.ID == "" {
		return Activity{}, errors.New(`the activity has no "_id"`)
	}
	ts, err := strconv.ParseInt(string(bytes.TrimSpace(j.Timestamp)), 10, 64)
	if err != nil {
		if len(j.Timestamp) == 0 {
			return Activity{}, fmt.Errorf(`activity %s has no "timestamp"`, *j.ID)
		}
		return Activity{}, fmt.Errorf(`activity %s: "timestamp" %s is not epoch milliseconds`, *j.ID, j.Timestamp)
	}
	return Activity{
		ID:                  *j.ID,
		Timestamp:           ts,
		EventTypeName:       j.EventTypeName,
		EventTypeValue:      j.EventTypeValue,
		Description:         j.Description,
		AppName:             j.AppName,
		UserName:            j.User.UserName,
		ClientIP:            j.Device.ClientIP,
		UserAgent:           j.Device.UserAgent,
		UniqueServiceAppIDs: listText(j.UniqueServiceAppIDs),
		TargetObjects:       listText(j.TargetObjects),
		PolicyIDs:           listText(j.PolicyIDs),
		Raw:                 raw,
	}, nil
}

// listText renders a JSON list the way the agent does in cs2–cs4: its items
// comma-joined. Items may be strings, numbers, or objects with a name.
func listText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return scalarText(raw)
	}
	parts := make([]string, 0, len(items))
	for _, it := range items {
		parts = append(parts, scalarText(it))
	}
	return strings.Join(parts, ",")
}

func scalarText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var named struct {
		Name        string `json:"name"`
		DisplayName string `json:"displayName"`
		ID          any    `json:"id"`
	}
	if json.Unmarshal(raw, &named) == nil {
		switch {
		case named.Name != "":
			return named.Name
		case named.DisplayName != "":
			return named.DisplayName
		case named.ID != nil:
			return fmt.Sprint(named.ID)
		}
		return ""
	}
	return string(bytes.TrimSpace(raw)) // a number or boolean, as written
}
