package recovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unsafe"
)

// Activity is one MCAS activity record. Raw is the object exactly as the
// source returned it (the json format sends it unchanged); the other fields
// are the ones the CEF mapping of the MCAS SIEM agent uses (SPEC §5), and
// when MCAS saved the activity.
type Activity struct {
	// Kind is what the record is: an activity (the zero Kind) or an alert.
	// Both travel as an Activity, with the fields below read from each
	// kind's own object (DecodeAlert says how for alerts).
	Kind           Kind
	ID             string // _id
	Timestamp      int64  // timestamp, Unix ms
	Created        int64  // created (else createdRaw), Unix ms; 0 when the activity has neither
	EventTypeName  string // eventTypeName
	EventTypeValue string // eventTypeValue
	Description    string // description
	// Name is the CEF header's Name: the activity's operation, short, as
	// the agent's lines show it ("View report", where the description says
	// "View report: ServiceNow Report 23"); ActivityName says where it
	// comes from. An alert's is its title.
	Name      string
	AppName   string // appName
	UserName  string // user.userName, else failedUserData.userName (a failed log-on's)
	ClientIP  string // device.clientIP
	UserAgent string // device.userAgent
	// What the agent writes in cs2–cs4, comma-joined (docs/delivery.md
	// says where each comes from). A list the object carries under the
	// agent's label (uniqueServiceAppIds, targetObjects, policyIDs) wins;
	// else UniqueServiceAppIDs is APPID_<name or number> from appId,
	// TargetObjects the names of mainInfo.eventObjects with role 3, and
	// PolicyIDs empty: an API answer carries no policy matches.
	UniqueServiceAppIDs string
	TargetObjects       string
	PolicyIDs           string
	// An alert's riskScore (cn1, its threatScore), its page in the portal
	// (cs1, its URL) and its own severity (LOW, MEDIUM, HIGH,
	// INFORMATIONAL): empty for activities.
	RiskScore string
	URL       string
	Severity  string
	Raw       json.RawMessage
}

// Kind is the kind of record an Activity carries.
type Kind uint8

const (
	KindActivity      Kind = iota // an MCAS activity (the zero Kind)
	KindAlert                     // an MCAS alert
	KindCloudAppEvent             // a row of Defender XDR's CloudAppEvents table (the Graph source)
)

func (k Kind) String() string {
	switch k {
	case KindAlert:
		return "alert"
	case KindCloudAppEvent:
		return "CloudAppEvents row"
	}
	return "activity"
}

// activityFields is where the fields the CEF mapping uses lie in an
// activity's text.
type activityFields struct {
	id, timestamp, typeName, typeValue, description, appName span
	userName, clientIP, userAgent                            span
	appID, created, createdRaw, eventObjects, failedUserName span
	operationName                                            span    // description_metadata.operation_name
	lists                                                    [3]span // uniqueServiceAppIds, targetObjects, policyIDs
	user, device, mainInfo, failedUser, descriptionMetadata  bool    // seen: a key given twice counts the first time
	// The names of the event objects with role 3, the first of them; the
	// others are found again when cs3 is written. An activity names one or
	// two.
	targets  [4]span
	nTargets int
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
	if f.userName.kind != kindString {
		f.userName = f.failedUserName
	}
	cs := f.cefSources(raw)
	need := f.textSize() + cs.textSize()
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
	var ends [12]int
	buf = appendString(buf, raw, f.id)
	ends[0] = len(buf)
	for i, t := range [...]span{f.typeName, f.typeValue, f.description, f.appName, f.userName, f.clientIP, f.userAgent} {
		if t.kind == kindString {
			buf = appendString(buf, raw, t)
		}
		ends[1+i] = len(buf)
	}
	buf = appendList(buf, raw, cs.lists[0])
	if cs.hasAppID {
		buf = appendAppID(buf, cs.appID)
	}
	ends[8] = len(buf)
	buf = appendList(buf, raw, cs.lists[1])
	for i, t := range cs.targets {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendName(buf, raw, t)
	}
	buf = appendTargets(buf, raw, cs.eventObjects)
	ends[9] = len(buf)
	buf = appendList(buf, raw, cs.lists[2])
	ends[10] = len(buf)
	if f.operationName.kind == kindString {
		buf = appendString(buf, raw, f.operationName)
	}
	ends[11] = len(buf)
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
	created, ok := integer(raw, f.created)
	if !ok {
		created, _ = integer(raw, f.createdRaw)
	}
	description := field(3)
	return Activity{
		ID: field(0), Timestamp: timestamp, Created: created,
		EventTypeName: field(1), EventTypeValue: field(2), Description: description, AppName: field(4),
		Name:     ActivityName(field(11), description),
		UserName: field(5), ClientIP: field(6), UserAgent: field(7),
		UniqueServiceAppIDs: field(8), TargetObjects: field(9), PolicyIDs: field(10),
		Raw: raw,
	}, nil
}

// textSize bounds the length of the text ParseActivity makes of the
// fields before cs2: the length of their JSON.
func (f *activityFields) textSize() int {
	n := 0
	for _, v := range [...]span{f.id, f.typeName, f.typeValue, f.description, f.appName, f.userName, f.clientIP, f.userAgent, f.operationName} {
		n += v.to - v.from
	}
	return n
}

// ActivityName is the CEF Name of an activity (the header's sixth field):
// its operation, short, as the SIEM agent wrote it. Microsoft's sample
// lines show "|View report|" where msg= holds "View report: ServiceNow
// Report 23", and "|Log out|" beside msg=Log out. The API's activity says
// it in description_metadata.operation_name (operation): the description
// is that name, a colon and the object acted on. An object without it
// (an export from elsewhere) gets its description's text before the first
// ": ", when no bracket or quote opens before that colon (a "Failed log on
// (Failure message: …)" keeps its whole text), else the whole description.
// docs/delivery.md gives the evidence.
func ActivityName(operation, description string) string {
	if operation != "" {
		return operation
	}
	i := strings.Index(description, ": ")
	if i <= 0 || strings.ContainsAny(description[:i], "([{\"'") {
		return description
	}
	return description[:i]
}

// cefSources is what cs2, cs3 and cs4 are made of.
type cefSources struct {
	// The lists under the agent's labels (uniqueServiceAppIds,
	// targetObjects, policyIDs); absent when the object has none, or null.
	lists [3]span
	// cs2 when lists[0] is absent: APPID_… of appId.
	appID    int64
	hasAppID bool
	// cs3 when lists[1] is absent: the names of the objects acted on, or,
	// when there were more than targets holds, mainInfo.eventObjects to
	// read again.
	targets      []span
	eventObjects span
}

// cefSources says where cs2–cs4 come from: a list under the agent's label
// wins; else cs2 comes from appId and cs3 from mainInfo.eventObjects, as
// in the API's answers.
func (f *activityFields) cefSources(text []byte) cefSources {
	cs := cefSources{lists: f.lists}
	for i, l := range cs.lists {
		if l.kind == kindNull {
			cs.lists[i] = span{}
		}
	}
	if cs.lists[0].kind == kindAbsent {
		cs.appID, cs.hasAppID = integer(text, f.appID)
		cs.hasAppID = cs.hasAppID && cs.appID >= 0
	}
	if cs.lists[1].kind == kindAbsent && f.eventObjects.kind == kindArray {
		if f.nTargets <= len(f.targets) {
			cs.targets = f.targets[:f.nTargets]
		} else {
			cs.eventObjects = f.eventObjects
		}
	}
	return cs
}

// textSize bounds the length of cs2, cs3 and cs4: the length of their
// JSON (cs3 names some of the event objects, with fewer commas than
// theirs), and an app id's name.
func (cs *cefSources) textSize() int {
	n := cs.eventObjects.to - cs.eventObjects.from
	for _, t := range cs.targets {
		n += t.to - t.from + 1 // and a comma
	}
	for _, l := range cs.lists {
		n += l.to - l.from
	}
	if cs.hasAppID {
		n += maxAppIDText
	}
	return n
}

// integer is the value of v when it is an integer of at most 18 digits,
// written as a JSON number or as a string of digits (the API writes some
// numbers as strings: "saasId":"11161").
func integer(text []byte, v span) (int64, bool) {
	var digits []byte
	switch v.kind {
	case kindNumber:
		digits = text[v.from:v.to]
	case kindString:
		digits = text[v.from:v.to]
		if v.escaped {
			digits = appendString(nil, text, v) // rare: one allocation
		}
	default:
		return 0, false
	}
	neg := len(digits) > 0 && digits[0] == '-'
	if neg {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// scan reads the activity object at pos, noting where its fields are.
func (f *activityFields) scan(s *scanner) error {
	for more := s.enter(); more; more = s.nextMember() {
		var dst *span
		switch string(keyText(s.text, s.key)) {
		case fieldID:
			dst = &f.id
		case fieldTimestamp:
			dst = &f.timestamp
		case fieldCreated:
			dst = &f.created
		case fieldCreatedRaw:
			dst = &f.createdRaw
		case fieldAppID:
			dst = &f.appID
		case fieldEventTypeName:
			dst = &f.typeName
		case fieldEventTypeValue:
			dst = &f.typeValue
		case fieldDescription:
			dst = &f.description
		case fieldAppName:
			dst = &f.appName
		case fieldUniqueServiceAppIDs:
			dst = &f.lists[0]
		case fieldTargetObjects:
			dst = &f.lists[1]
		case fieldPolicyIDs:
			dst = &f.lists[2]
		case fieldUser:
			if err := scanNested(s, &f.user, fieldUserName, &f.userName, "", nil); err != nil {
				return err
			}
			continue
		case fieldDevice:
			if err := scanNested(s, &f.device, fieldClientIP, &f.clientIP, fieldUserAgent, &f.userAgent); err != nil {
				return err
			}
			continue
		case fieldFailedUserData:
			if err := scanNested(s, &f.failedUser, fieldUserName, &f.failedUserName, "", nil); err != nil {
				return err
			}
			continue
		case fieldMainInfo:
			if err := f.scanMainInfo(s); err != nil {
				return err
			}
			continue
		case fieldDescriptionMetadata:
			if err := scanNested(s, &f.descriptionMetadata, fieldOperationName, &f.operationName, "", nil); err != nil {
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

// scanMainInfo reads the value of "mainInfo": the first time the key
// appears, when its value is an object, it reads the first eventObjects in
// it, object by object.
func (f *activityFields) scanMainInfo(s *scanner) error {
	first := !f.mainInfo
	f.mainInfo = true
	if !first || s.pos >= len(s.text) || s.text[s.pos] != '{' {
		_, err := s.value()
		return err
	}
	for more := s.enter(); more; more = s.nextMember() {
		if string(keyText(s.text, s.key)) == fieldEventObjects && f.eventObjects.kind == kindAbsent {
			if err := f.scanEventObjects(s); err != nil {
				return err
			}
			continue
		}
		if _, err := s.value(); err != nil {
			return err
		}
	}
	return s.err
}

// scanEventObjects reads the value of mainInfo.eventObjects, noting where
// it is and, when it is an array, the names of its objects with role 3.
// Reading each object's members here, rather than passing over the array
// and reading it again for cs3, saves a third of the time its objects
// take.
func (f *activityFields) scanEventObjects(s *scanner) error {
	from := s.pos
	if s.pos >= len(s.text) || s.text[s.pos] != '[' {
		return s.valueInto(&f.eventObjects)
	}
	for more := s.enter(); more; more = s.nextItem() {
		if s.pos >= len(s.text) || s.text[s.pos] != '{' {
			if _, err := s.value(); err != nil {
				return err
			}
			continue
		}
		name, role, err := s.objectName()
		if err != nil {
			return err
		}
		if isTarget(s.text, name, role) {
			if f.nTargets < len(f.targets) {
				f.targets[f.nTargets] = name
			}
			f.nTargets++
		}
	}
	if s.err != nil {
		return s.err
	}
	f.eventObjects = span{kind: kindArray, from: from, to: s.pos}
	return nil
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

// scanNested reads the value of an object the fields lie in (user,
// device, failedUserData; mainInfo has scanMainInfo). The first time the
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
// as its name, anything else as its JSON text.
func appendItem(dst, text []byte, v span) []byte {
	switch v.kind {
	case kindString:
		return appendString(dst, text, v)
	case kindObject:
		s := scanner{text: text[:v.to], pos: v.from}
		name, _, _ := s.objectName() // checked already: it cannot fail
		return appendName(dst, text, name)
	}
	return appendCompact(dst, text, v)
}

// appendTargets appends the names of the objects an activity acted on:
// the items of mainInfo.eventObjects whose role is 3, comma-joined, in
// their order and duplicates kept, as the agent lists them. An object
// without a name is left out. docs/delivery.md gives the evidence. The
// first pass notes a few of them; this reads the array again when it holds
// more.
func appendTargets(dst, text []byte, eventObjects span) []byte {
	if eventObjects.kind != kindArray {
		return dst
	}
	// Checked with the activity: reading it again cannot fail.
	s := scanner{text: text[:eventObjects.to], pos: eventObjects.from}
	n := 0
	for more := s.enter(); more; more = s.nextItem() {
		if s.pos >= len(s.text) || s.text[s.pos] != '{' {
			s.value()
			continue
		}
		if name, role, _ := s.objectName(); isTarget(text, name, role) {
			if n++; n > 1 {
				dst = append(dst, ',')
			}
			dst = appendName(dst, text, name)
		}
	}
	return dst
}

// targetRole is the role of an event object the activity acted on: the
// file of a download, the account of a log on.
const targetRole = 3

// isTarget tells whether an event object with that name and role names
// what the activity acted on.
func isTarget(text []byte, name, role span) bool {
	r, ok := integer(text, role)
	return ok && r == targetRole && name.kind != kindAbsent
}

// objectName reads the object at pos: its name (the first of name,
// displayName and id that is neither absent nor null, each the first of
// its key) and its role. Both are absent when it has none.
func (s *scanner) objectName() (name, role span, err error) {
	var names [3]span // name, displayName, id: the first of each
	for more := s.enter(); more; more = s.nextMember() {
		var dst *span
		switch k := keyText(s.text, s.key); {
		case string(k) == fieldRole:
			dst = &role
		default:
			if i := nameRank(k); i >= 0 {
				dst = &names[i]
			}
		}
		if err := s.valueInto(dst); err != nil {
			return span{}, span{}, err
		}
	}
	if s.err != nil {
		return span{}, span{}, s.err
	}
	for _, n := range names {
		if n.kind != kindAbsent && n.kind != kindNull {
			return n, role, nil
		}
	}
	return span{}, role, nil
}

// appendName appends an object's name: a string as its text, anything
// else as its JSON text.
func appendName(dst, text []byte, name span) []byte {
	switch name.kind {
	case kindAbsent:
		return dst
	case kindString:
		return appendString(dst, text, name)
	}
	return appendCompact(dst, text, name)
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
