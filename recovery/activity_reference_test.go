package recovery

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"
)

// parsers are reused from activity to activity: decoding is the hot path
// of a recovery, and a fastjson Parser allocates only while it grows.
var referenceParsers fastjson.ParserPool

// parseActivityReference is ParseActivity as it was written with fastjson
// (commit 106f290), extended to the fields read since (created, cs2 from
// appId, cs3 from mainInfo.eventObjects): the tests hold the scanner to
// the same fields.
// It decodes one activity object. Raw of the result is raw
// itself: a caller that reuses its buffer must clone it. An activity
// without an _id or a numeric timestamp is an error: it could be neither
// placed in the window nor recognised again on a resume. The other fields
// are read when they have the expected type and left empty otherwise: one
// odd field must not stop a recovery.
func parseActivityReference(raw []byte) (Activity, error) {
	p := referenceParsers.Get()
	defer referenceParsers.Put(p)
	v, err := p.ParseBytes(raw)
	if err != nil {
		return Activity{}, fmt.Errorf("not valid JSON: %w", err)
	}
	if v.Type() != fastjson.TypeObject {
		return Activity{}, fmt.Errorf("not an activity object but a JSON %s", v.Type())
	}
	// One pass over the object finds the fields the CEF mapping uses; a
	// key given twice counts the first time, as fastjson's Get does.
	var f struct {
		id, ts, typeName, typeValue, desc, app, user, device *fastjson.Value
		created, createdRaw, appID, mainInfo, failedUser     *fastjson.Value
		descMeta                                             *fastjson.Value
		lists                                                [3]*fastjson.Value
	}
	first := func(dst **fastjson.Value, v *fastjson.Value) {
		if *dst == nil {
			*dst = v
		}
	}
	v.GetObject().Visit(func(key []byte, v *fastjson.Value) {
		switch string(key) {
		case "_id":
			first(&f.id, v)
		case "timestamp":
			first(&f.ts, v)
		case "created":
			first(&f.created, v)
		case "createdRaw":
			first(&f.createdRaw, v)
		case "appId":
			first(&f.appID, v)
		case "mainInfo":
			first(&f.mainInfo, v)
		case "description_metadata":
			first(&f.descMeta, v)
		case "failedUserData":
			first(&f.failedUser, v)
		case "eventTypeName":
			first(&f.typeName, v)
		case "eventTypeValue":
			first(&f.typeValue, v)
		case "description":
			first(&f.desc, v)
		case "appName":
			first(&f.app, v)
		case "user":
			first(&f.user, v)
		case "device":
			first(&f.device, v)
		case "uniqueServiceAppIds":
			first(&f.lists[0], v)
		case "targetObjects":
			first(&f.lists[1], v)
		case "policyIDs":
			first(&f.lists[2], v)
		}
	})
	if f.id == nil || f.id.Type() != fastjson.TypeString || len(f.id.GetStringBytes()) == 0 {
		return Activity{}, errors.New(`the activity has no "_id" string`)
	}
	if f.ts == nil {
		return Activity{}, fmt.Errorf(`activity %s has no "timestamp"`, f.id.GetStringBytes())
	}
	timestamp, err := f.ts.Int64()
	if err != nil || f.ts.Type() != fastjson.TypeNumber {
		return Activity{}, fmt.Errorf(`activity %s: "timestamp" %s is not epoch milliseconds`, f.id.GetStringBytes(), f.ts)
	}
	// Every text field is written into one string and sliced out of it:
	// one allocation an activity instead of one a field.
	var b strings.Builder
	b.Grow(min(len(raw)/3, 384)) // the fields are a small part of the object
	var ends [12]int
	b.Write(f.id.GetStringBytes())
	ends[0] = b.Len()
	userName := refMember(f.user, "userName")
	if userName == nil || userName.Type() != fastjson.TypeString {
		userName = refMember(f.failedUser, "userName")
	}
	for i, t := range [...]*fastjson.Value{
		f.typeName, f.typeValue, f.desc, f.app,
		userName, refMember(f.device, "clientIP"), refMember(f.device, "userAgent"),
	} {
		refWriteText(&b, t)
		ends[1+i] = b.Len()
	}
	for i, l := range f.lists {
		if l != nil && l.Type() == fastjson.TypeNull {
			l = nil // null is no list: the derived value stands
		}
		switch {
		case l != nil:
			refWriteList(&b, l)
		case i == 0:
			if id, ok := refInteger(f.appID); ok && id >= 0 {
				if s := appIDSymbol(id); s != "" {
					b.WriteString(s)
				} else {
					fmt.Fprintf(&b, "APPID_%d", id)
				}
			}
		case i == 1:
			refWriteTargets(&b, refMember(f.mainInfo, "eventObjects"))
		}
		ends[8+i] = b.Len()
	}
	refWriteText(&b, refMember(f.descMeta, "operation_name"))
	ends[11] = b.Len()
	all := b.String()
	field := func(i int) string {
		if i == 0 {
			return all[:ends[0]]
		}
		return all[ends[i-1]:ends[i]]
	}
	created, ok := refInteger(f.created)
	if !ok {
		created, _ = refInteger(f.createdRaw)
	}
	return Activity{
		ID: field(0), Timestamp: timestamp, Created: created,
		EventTypeName: field(1), EventTypeValue: field(2), Description: field(3), AppName: field(4),
		Name:     ActivityName(field(11), field(3)),
		UserName: field(5), ClientIP: field(6), UserAgent: field(7),
		UniqueServiceAppIDs: field(8), TargetObjects: field(9), PolicyIDs: field(10),
		Raw: raw,
	}, nil
}

// member is the value at key of an object; nil when o is absent or no
// object.
func refMember(o *fastjson.Value, key string) *fastjson.Value {
	if o == nil {
		return nil
	}
	return o.Get(key) // nil unless o is an object
}

// writeText writes v when it is a string; nothing when it is absent or
// another type.
func refWriteText(b *strings.Builder, v *fastjson.Value) {
	if v != nil && v.Type() == fastjson.TypeString {
		b.Write(v.GetStringBytes())
	}
}

// writeList writes a JSON list the way the agent renders it in cs2–cs4:
// its items comma-joined. Items may be strings, numbers, or objects with a
// name.
func refWriteList(b *strings.Builder, v *fastjson.Value) {
	if v == nil || v.Type() == fastjson.TypeNull {
		return
	}
	if v.Type() != fastjson.TypeArray {
		refWriteItem(b, v)
		return
	}
	for i, it := range v.GetArray() {
		if i > 0 {
			b.WriteByte(',')
		}
		refWriteItem(b, it)
	}
}

func refWriteItem(b *strings.Builder, v *fastjson.Value) {
	switch v.Type() {
	case fastjson.TypeString:
		b.Write(v.GetStringBytes())
		return
	case fastjson.TypeObject:
		refWriteName(b, v)
		return
	}
	b.Write(v.MarshalTo(nil)) // a number or boolean, as written
}

// refWriteName writes an object's name: the first of name, displayName
// and id that is neither absent nor null.
func refWriteName(b *strings.Builder, v *fastjson.Value) bool {
	for _, k := range []string{"name", "displayName", "id"} {
		if f := v.Get(k); f != nil && f.Type() != fastjson.TypeNull {
			if f.Type() == fastjson.TypeString {
				b.Write(f.GetStringBytes())
			} else {
				b.Write(f.MarshalTo(nil))
			}
			return true
		}
	}
	return false
}

// refWriteTargets writes the names of the event objects with role 3,
// comma-joined; objects without a name are left out.
func refWriteTargets(b *strings.Builder, objects *fastjson.Value) {
	if objects == nil || objects.Type() != fastjson.TypeArray {
		return
	}
	n := 0
	for _, o := range objects.GetArray() {
		if o.Type() != fastjson.TypeObject {
			continue
		}
		if role, ok := refInteger(o.Get("role")); !ok || role != 3 {
			continue
		}
		var name strings.Builder
		if !refWriteName(&name, o) {
			continue
		}
		if n++; n > 1 {
			b.WriteByte(',')
		}
		b.WriteString(name.String())
	}
}

// refInteger reads an integer of at most 18 digits written as a JSON
// number or a string.
func refInteger(v *fastjson.Value) (int64, bool) {
	if v == nil {
		return 0, false
	}
	var text string
	switch v.Type() {
	case fastjson.TypeNumber:
		text = string(v.MarshalTo(nil))
	case fastjson.TypeString:
		text = string(v.GetStringBytes())
	default:
		return 0, false
	}
	digits := strings.TrimPrefix(text, "-")
	if digits == "" || len(digits) > 18 || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(text, 10, 64)
	return n, err == nil
}
