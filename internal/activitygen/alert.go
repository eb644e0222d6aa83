package activitygen

import (
	"strconv"
)

// Policy is a kind of policy that raises alerts, as an alert names it.
type Policy struct {
	Type  string // policy.policyType
	Label string // the policy's name: the alert's title
	ID    string // the policy's id
}

// Policies are what AppendAlert draws alerts from: each kind of policy the
// agent's alert type ids tell apart, and one built-in alert (no policy).
var Policies = []Policy{
	{"AUDIT", "Mass download by a single user", "6571c0ffee0ddba11ad50001"},
	{"FILE", "Block PDF uploads|external=yes", "6571c0ffee0ddba11ad50002"},
	{"ANOMALY_DETECTION", "Impossible travel", "6571c0ffee0ddba11ad50003"},
	{"INLINE", "Block downloads on unmanaged devices", "6571c0ffee0ddba11ad50004"},
	{"ANOMALY_DISCOVERY", "Unusual increase in cloud app usage", "6571c0ffee0ddba11ad50005"},
	{"", "New admin location", ""},
}

// AppendAlert appends alert number i, raised at ts (Unix ms), to dst in
// the shape the alerts API lists it (defender-docs api-alerts-list.md;
// ALERT_BY_ID_DATA in demisto/content's MCAS test data): one JSON object
// on one line, without a line end. Its _id is unique per (i, ts).
func AppendAlert(dst []byte, i int, ts int64) []byte {
	a := New(i, ts)
	p := Policies[i%len(Policies)]
	id := strconv.FormatUint(Hash(i, ts)&0xffffffffffff, 16)
	for len(id) < 12 {
		id = "0" + id
	}
	id = "6571c0ffee0d" + id
	b := append(dst, `{"_id":"`...)
	b = append(b, id...)
	b = append(b, `","contextId":"`+aadTenantID+`","description":`...)
	desc := "Activity policy '" + p.Label + "' was triggered by '" + a.User + "'"
	switch p.Type {
	case "FILE":
		desc = "File policy '" + p.Label + "' was matched by '" + a.Event.Object + "'"
	case "":
		desc = "New administrator location: " + a.Country
	}
	b = appendString(b, desc)
	b = append(b, `,"entities":[`...)
	if p.Type != "" {
		b = append(b, `{"id":"`+p.ID+`","label":`...)
		b = appendString(b, p.Label)
		b = append(b, `,"policyType":"`+p.Type+`","type":"policyRule"},`...)
	}
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, int64(a.App.ID), 10)
	b = append(b, `,"label":`...)
	b = appendString(b, a.App.Name)
	b = append(b, `,"type":"service"},{"em":`...)
	b = appendString(b, a.User)
	b = append(b, `,"entityType":2,"id":"`...)
	b = append(b, a.uuid()...)
	b = append(b, `","inst":0,"label":`...)
	b = appendString(b, a.DisplayName)
	b = append(b, `,"pa":`...)
	b = appendString(b, a.User)
	b = append(b, `,"saas":11161,"type":"account"},{"id":`...)
	b = appendString(b, a.User)
	b = append(b, `,"label":`...)
	b = appendString(b, a.User)
	b = append(b, `,"type":"user"}],"idValue":`...)
	b = strconv.AppendInt(b, int64(15728642+i), 10)
	b = append(b, `,"isSystemAlert":`...)
	b = strconv.AppendBool(b, p.Type == "")
	b = append(b, `,"resolutionStatusValue":0,"severityValue":`...)
	b = strconv.AppendInt(b, int64(i%4), 10)
	b = append(b, `,"statusValue":1,"stories":[0],"threatScore":`...)
	b = strconv.AppendInt(b, int64(Hash(i, ts)%100), 10)
	b = appendMillis(b, "timestamp", ts)
	b = append(b, `,"title":`...)
	b = appendString(b, p.Label)
	if p.Type != "" {
		b = append(b, `,"policy":{"id":"`+p.ID+`","label":`...)
		b = appendString(b, p.Label)
		b = append(b, `,"policyType":"`+p.Type+`","type":"policyRule"}`...)
	}
	if p.Type == "AUDIT" {
		b = append(b, `,"audits":["`...)
		b = a.appendID(b, a.uuid(), strconv.Itoa(a.App.ID))
		b = append(b, `"]`...)
	}
	b = append(b, `,"comment":null,"handledByUser":null,"URL":"https://contoso.portal.cloudappsecurity.com/#/alerts/`...)
	b = append(b, id...)
	return append(b, `"}`...)
}
