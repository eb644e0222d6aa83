package recovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unsafe"
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

// activityFields is where the fields the CEF mapping uses lie in an
// activity's text.
type activityFields struct {
	id, timestamp, typeName, typeValue, description, appName span
	userName, clientIP, userAgent                            span
	lists                                                    [3]span // uniqueServiceAppIds, targetObjects, policyIDs
	user, device                                             bool    // seen: a key given twice counts the first time
}

// ParseActivity decodes one activity object. Raw of the result is raw
// itself: a caller that reuses its buffer must clone it. An activity
// without an _id or a numeric timestamp is an error: it could be neither
// placed in the window nor recognised again on a resume. The other fields
// are read when they have the expected type and left empty otherwise: one
// odd field must not stop a recovery. A key given twice counts the first
// time.
func ParseActivity(raw []byte) (Activity, error) { return decode(raw, nil) }

// A Decoder decodes activities one after another, as ParseActivity does,
// and writes the text of their fields into blocks they share: a page of
// activities costs a few allocations instead of one an activity. A block
// stays in memory while any activity decoded into it does. The zero
// Decoder is ready to use; a Decoder is not for concurrent use, and must
// not be copied once used (two copies would write over each other's
// text; go vet reports a copy).
type Decoder struct {
	_     noCopy
	block []byte // the current block; the bytes up to len are taken
}

// noCopy makes go vet's copylocks check report a copied Decoder.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// blockSize is the size of a Decoder's blocks: the text of a few dozen
// activities. Blocks this small come from the allocator's size classes
// and are reused as pages are freed; 32 KiB ones measured no faster.
const blockSize = 8 << 10

// Decode decodes one activity object, as ParseActivity does.
func (d *Decoder) Decode(raw []byte) (Activity, error) { return decode(raw, d) }

// decode is ParseActivity, with the text of the fields in d's block, or in
// a string of its own when d is nil.
func decode(raw []byte, d *Decoder) (Activity, error) {
	s := scanner{text: raw}
	s.skipSpace()
	var (
		f   activityFields
		top = span{kind: kindObject}
		err error
	)
	if s.pos < len(raw) && raw[s.pos] == '{' {
		err = f.scan(&s)
	} else {
		top, err = s.value()
	}
	if s.skipSpace(); err == nil && s.pos < len(raw) {
		err = s.fail("more text after the " + top.kind.String())
	}
	if err != nil {
		return Activity{}, fmt.Errorf("not valid JSON: %w", err)
	}
	if top.kind != kindObject {
		return Activity{}, fmt.Errorf("not an activity object but a JSON %s", top.kind)
	}
	if f.id.kind != kindString || f.id.from == f.id.to {
		return Activity{}, errors.New(`the activity has no "_id" string`)
	}
	ts := raw[f.timestamp.from:f.timestamp.to]
	timestamp, err := strconv.ParseInt(string(ts), 10, 64)
	if err != nil || f.timestamp.kind != kindNumber {
		id := appendString(nil, raw, f.id)
		if f.timestamp.kind == kindAbsent {
			return Activity{}, fmt.Errorf(`activity %s has no "timestamp"`, id)
		}
		if f.timestamp.kind == kindString {
			ts = raw[f.timestamp.from-1 : f.timestamp.to+1]
		}
		return Activity{}, fmt.Errorf(`activity %s: "timestamp" %s is not epoch milliseconds`, id, ts)
	}

	// Every text field is written into one string and sliced out of it. A
	// field's text is never longer than its JSON, so the room taken for
	// it is enough.
	need := f.textSize()
	var buf []byte
	switch {
	case d == nil:
		buf = make([]byte, 0, need)
	case cap(d.block)-len(d.block) < need:
		d.block = make([]byte, 0, max(blockSize, need))
		fallthrough
	default:
		buf = d.block[len(d.block):]
	}
	var ends [11]int
	buf = appendString(buf, raw, f.id)
	ends[0] = len(buf)
	for i, t := range [...]span{f.typeName, f.typeValue, f.description, f.appName, f.userName, f.clientIP, f.userAgent} {
		if t.kind == kindString {
			buf = appendString(buf, raw, t)
		}
		ends[1+i] = len(buf)
	}
	for i, l := range f.lists {
		buf = appendList(buf, raw, l)
		ends[8+i] = len(buf)
	}
	if d != nil && len(buf) <= cap(d.block)-len(d.block) { // always, as need bounds it
		d.block = d.block[:len(d.block)+len(buf)]
	}
	// The bytes of buf are never written again: the string may share them.
	all := unsafe.String(unsafe.SliceData(buf), len(buf))
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

// textSize bounds the length of the text ParseActivity makes of the
// fields: the length of their JSON.
func (f *activityFields) textSize() int {
	n := 0
	for _, v := range [...]span{f.id, f.typeName, f.typeValue, f.description, f.appName, f.userName, f.clientIP, f.userAgent, f.lists[0], f.lists[1], f.lists[2]} {
		n += v.to - v.from
	}
	return n
}

// scan reads the activity object at pos, noting where its fields are.
func (f *activityFields) scan(s *scanner) error {
	for more := s.enter(); more; more = s.nextMember() {
		var dst *span
		switch string(keyText(s.text, s.key)) {
		case "_id":
			dst = &f.id
		case "timestamp":
			dst = &f.timestamp
		case "eventTypeName":
			dst = &f.typeName
		case "eventTypeValue":
			dst = &f.typeValue
		case "description":
			dst = &f.description
		case "appName":
			dst = &f.appName
		case "uniqueServiceAppIds":
			dst = &f.lists[0]
		case "targetObjects":
			dst = &f.lists[1]
		case "policyIDs":
			dst = &f.lists[2]
		case "user":
			if err := scanNested(s, &f.user, "userName", &f.userName, "", nil); err != nil {
				return err
			}
			continue
		case "device":
			if err := scanNested(s, &f.device, "clientIP", &f.clientIP, "userAgent", &f.userAgent); err != nil {
				return err
			}
			continue
		}
		if err := s.valueInto(dst); err != nil {
			return err
		}
	}
	return s.err
}

// valueInto scans the value at pos and, when dst is given and still
// absent, notes it there: a key given twice counts the first time.
func (s *scanner) valueInto(dst *span) error {
	v, err := s.value()
	if err == nil && dst != nil && dst.kind == kindAbsent {
		*dst = v
	}
	return err
}

// scanNested reads the value of "user" or "device". The first time the
// key appears, when its value is an object, it notes where the first k1
// and k2 (when v2 is given) in that object are.
func scanNested(s *scanner, seen *bool, k1 string, v1 *span, k2 string, v2 *span) error {
	first := !*seen
	*seen = true
	if !first || s.pos >= len(s.text) || s.text[s.pos] != '{' {
		_, err := s.value()
		return err
	}
	for more := s.enter(); more; more = s.nextMember() {
		var dst *span
		switch k := keyText(s.text, s.key); {
		case string(k) == k1:
			dst = v1
		case v2 != nil && string(k) == k2:
			dst = v2
		}
		if err := s.valueInto(dst); err != nil {
			return err
		}
	}
	return s.err
}

// keyText is a member name, to compare as string(keyText(...)), which
// does not allocate. An escaped name is decoded first, a rare allocation:
// "\u005fid" is "_id".
func keyText(text []byte, key span) []byte {
	if !key.escaped {
		return text[key.from:key.to]
	}
	return appendString(nil, text, key)
}

// appendList appends a JSON list the way the agent renders it in cs2–cs4:
// its items comma-joined. Items may be strings, numbers, or objects with a
// name.
func appendList(dst, text []byte, v span) []byte {
	switch v.kind {
	case kindAbsent, kindNull:
		return dst
	case kindArray:
		// The list was checked with the activity: reading it again cannot
		// fail.
		s := scanner{text: text[:v.to], pos: v.from}
		for more, n := s.enter(), 0; more; more, n = s.nextItem(), n+1 {
			it, _ := s.value()
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = appendItem(dst, text, it)
		}
		return dst
	}
	return appendItem(dst, text, v)
}

// appendItem appends one item of a list: a string as its text, an object
// as its name (or displayName, or id), anything else as its JSON text.
func appendItem(dst, text []byte, v span) []byte {
	switch v.kind {
	case kindString:
		return appendString(dst, text, v)
	case kindObject:
		var names [3]span // name, displayName, id: the first of each
		s := scanner{text: text[:v.to], pos: v.from}
		for more := s.enter(); more; more = s.nextMember() {
			var dst *span
			if i := nameRank(keyText(text, s.key)); i >= 0 {
				dst = &names[i]
			}
			s.valueInto(dst) // checked already: it cannot fail
		}
		for _, n := range names {
			if n.kind == kindString {
				return appendString(dst, text, n)
			}
			if n.kind != kindAbsent {
				return appendCompact(dst, text, n)
			}
		}
		return dst
	}
	return appendCompact(dst, text, v)
}

// nameRank is the preference of a key that names a list item: name first.
func nameRank(key []byte) int {
	switch string(key) {
	case "name":
		return 0
	case "displayName":
		return 1
	case "id":
		return 2
	}
	return -1
}
