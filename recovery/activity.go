package recovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/valyala/fastjson"
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

// parsers are reused from activity to activity: decoding is the hot path
// of a recovery, and a fastjson Parser allocates only while it grows.
var parsers fastjson.ParserPool

// ParseActivity decodes one activity object. Raw of the result is raw
// itself: a caller that reuses its buffer must clone it. An activity
// without an _id or a numeric timestamp is an error: it could be neither
// placed in the window nor recognised again on a resume. The other fields
// are read when they have the expected type and left empty otherwise: one
// odd field must not stop a recovery.
func ParseActivity(raw []byte) (Activity, error) {
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(raw)
	if err != nil {
		return Activity{}, fmt.Errorf("not valid JSON: %w", err)
	}
	if v.Type() != fastjson.TypeObject {
		return Activity{}, fmt.Errorf("not an activity object but a JSON %s", v.Type())
	}
	id := v.Get("_id")
	if id == nil || id.Type() != fastjson.TypeString || len(id.GetStringBytes()) == 0 {
		return Activity{}, errors.New(`the activity has no "_id" string`)
	}
	ts := v.Get("timestamp")
	if ts == nil {
		return Activity{}, fmt.Errorf(`activity %s has no "timestamp"`, id.GetStringBytes())
	}
	timestamp, err := ts.Int64()
	if err != nil || ts.Type() != fastjson.TypeNumber {
		return Activity{}, fmt.Errorf(`activity %s: "timestamp" %s is not epoch milliseconds`, id.GetStringBytes(), ts)
	}
	// Every text field is written into one string and sliced out of it:
	// one allocation an activity instead of one a field.
	var b strings.Builder
	b.Grow(min(len(raw)/3, 384)) // the fields are a small part of the object
	var ends [11]int
	b.Write(id.GetStringBytes())
	ends[0] = b.Len()
	for i, keys := range [...][]string{
		{"eventTypeName"}, {"eventTypeValue"}, {"description"}, {"appName"},
		{"user", "userName"}, {"device", "clientIP"}, {"device", "userAgent"},
	} {
		writeText(&b, v, keys...)
		ends[1+i] = b.Len()
	}
	for i, key := range [...]string{"uniqueServiceAppIds", "targetObjects", "policyIDs"} {
		writeList(&b, v.Get(key))
		ends[8+i] = b.Len()
	}
	all := b.String()
	field := func(i int) string {
		if i == 0 {
			return all[:ends[0]]
		}
		return all[ends[i-1]:ends[i]]
	}
	return Activity{
		ID: field(0), Timestamp: timestamp,
		EventTypeName: field(1), EventTypeValue: field(2), Description: field(3), AppName: field(4),
		UserName: field(5), ClientIP: field(6), UserAgent: field(7),
		UniqueServiceAppIDs: field(8), TargetObjects: field(9), PolicyIDs: field(10),
		Raw: raw,
	}, nil
}

// writeText writes the string at keys; nothing when it is absent or no
// string.
func writeText(b *strings.Builder, v *fastjson.Value, keys ...string) {
	if f := v.Get(keys...); f != nil && f.Type() == fastjson.TypeString {
		b.Write(f.GetStringBytes())
	}
}

// writeList writes a JSON list the way the agent renders it in cs2–cs4:
// its items comma-joined. Items may be strings, numbers, or objects with a
// name.
func writeList(b *strings.Builder, v *fastjson.Value) {
	if v == nil || v.Type() == fastjson.TypeNull {
		return
	}
	if v.Type() != fastjson.TypeArray {
		writeItem(b, v)
		return
	}
	for i, it := range v.GetArray() {
		if i > 0 {
			b.WriteByte(',')
		}
		writeItem(b, it)
	}
}

func writeItem(b *strings.Builder, v *fastjson.Value) {
	switch v.Type() {
	case fastjson.TypeString:
		b.Write(v.GetStringBytes())
		return
	case fastjson.TypeObject:
		for _, k := range []string{"name", "displayName", "id"} {
			if f := v.Get(k); f != nil {
				if f.Type() == fastjson.TypeString {
					b.Write(f.GetStringBytes())
				} else {
					b.Write(f.MarshalTo(nil))
				}
				return
			}
		}
		return
	}
	b.Write(v.MarshalTo(nil)) // a number or boolean, as written
}
