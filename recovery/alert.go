package recovery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The alert type ids the SIEM agent wrote as the CEF signature of an alert,
// by the type of the policy that raised it. The alert object the API
// returns names no type id (its "alertType" filter takes a number that no
// public source maps), but every custom alert carries its policy, whose
// policyType tells the kind of policy: Microsoft's alert list
// (CloudAppSecurityDocs monitor-alerts.md) gives the id of each kind, and
// the policy types are those of the API's policies (AUDIT, FILE, INLINE,
// SESSION, ACCESS, ANOMALY_DETECTION, ANOMALY_DISCOVERY, NEW_SERVICE, …).
// docs/delivery.md says which is which, and why.
var alertTypeByPolicy = map[string]string{
	"AUDIT":             "ALERT_CABINET_EVENT_MATCH_AUDIT",   // activity policy
	"FILE":              "ALERT_CABINET_EVENT_MATCH_FILE",    // file policy
	"MALWARE":           "ALERT_CABINET_EVENT_MATCH_FILE",    // malware detection: a file
	"INLINE":            "ALERT_CABINET_INLINE_EVENT_MATCH",  // session (proxy) policy
	"SESSION":           "ALERT_CABINET_INLINE_EVENT_MATCH",  // session policy
	"ACCESS":            "ALERT_CABINET_INLINE_EVENT_MATCH",  // access policy, through the proxy too
	"ANOMALY_DETECTION": "ALERT_SUSPICIOUS_ACTIVITY",         // anomaly detection policy
	"ANOMALY_DISCOVERY": "ALERT_DISCOVERY_ANOMALY_DETECTION", // Cloud Discovery anomaly detection
	"NEW_SERVICE":       "ALERT_CABINET_DISCOVERY_NEW_SERVICE",
	"OBJECT":            "ALERT_CABINET_EVENT_MATCH_OBJECT", // field policy
}

// AlertType is the CEF signature of an alert raised by a policy of type
// policyType ("" for none): the agent's alert type id. A policy type the
// table does not know is written ALERT_<POLICYTYPE>, so that SIEM content
// can still tell it apart; an alert with no policy (a built-in, or system,
// alert) is ALERT_SYSTEM.
func AlertType(policyType string) string {
	if t, ok := alertTypeByPolicy[strings.ToUpper(policyType)]; ok {
		return t
	}
	if policyType == "" {
		return "ALERT_SYSTEM"
	}
	var b strings.Builder
	b.WriteString("ALERT_")
	for _, r := range strings.ToUpper(policyType) {
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// alertSeverities are the names of an alert's severityValue (defender-docs
// api-alerts.md).
var alertSeverities = [...]string{"LOW", "MEDIUM", "HIGH", "INFORMATIONAL"}

// alertObject is what DecodeAlert reads of an alert (defender-docs
// api-alerts.md; the real shape is ALERT_BY_ID_DATA in demisto/content's
// MCAS test data).
type alertObject struct {
	ID            json.RawMessage `json:"_id"`
	Timestamp     json.RawMessage `json:"timestamp"`
	Title         json.RawMessage `json:"title"`
	Description   json.RawMessage `json:"description"`
	Entities      json.RawMessage `json:"entities"`
	Policy        json.RawMessage `json:"policy"`
	ThreatScore   json.RawMessage `json:"threatScore"`
	URL           json.RawMessage `json:"URL"`
	Audits        json.RawMessage `json:"audits"`
	SeverityValue json.RawMessage `json:"severityValue"`
}

// alertEntity is one of an alert's entities: a user, an account, a
// service, its policy rule, a file, an IP address, a device…
type alertEntity struct {
	Type       string          `json:"type"`
	ID         json.RawMessage `json:"id"`
	Label      string          `json:"label"`
	PA         string          `json:"pa"` // an account's principal name
	EM         string          `json:"em"` // an account's e-mail
	PolicyType string          `json:"policyType"`
}

// DecodeAlert decodes one alert object of the MCAS alerts API into the
// record the sinks send: the CEF fields of the agent's alert lines (SPEC
// §5) and Raw, the object as the API returned it. An alert without an _id
// or a timestamp in epoch milliseconds is an error, as an activity's:
// it could be neither placed in the window nor recognised again. The
// other members are read when they have the expected type and left empty
// otherwise. Created is the timestamp: an alert has one time.
//
// Where the object does not carry a field the agent's line shows, it is
// derived (docs/delivery.md): the signature from the policy's type
// (AlertType), suser from the first user entity (else an account's
// principal name), the service and cs2 from the service entities, cs3
// (relatedAudits) from the optional audits list, cs4 from the policy's id
// and the policy rule entities'.
func DecodeAlert(raw []byte) (Activity, error) {
	if !json.Valid(raw) {
		var syntax *json.SyntaxError
		err := json.Unmarshal(raw, new(any))
		if errors.As(err, &syntax) {
			return Activity{}, fmt.Errorf("not valid JSON: %s at byte %d", syntax.Error(), syntax.Offset)
		}
		return Activity{}, fmt.Errorf("not valid JSON: %w", err)
	}
	var o alertObject
	if err := json.Unmarshal(raw, &o); err != nil {
		return Activity{}, fmt.Errorf("not an alert object: %w", err)
	}
	id := jsonString(o.ID)
	if id == "" {
		if n, ok := jsonInteger(o.ID); ok { // the docs type it "int"
			id = strconv.FormatInt(n, 10)
		} else {
			return Activity{}, errors.New(`the alert has no "_id"`)
		}
	}
	ts, ok := jsonInteger(o.Timestamp)
	if !ok {
		if len(o.Timestamp) == 0 {
			return Activity{}, fmt.Errorf(`alert %s has no "timestamp"`, id)
		}
		return Activity{}, fmt.Errorf(`alert %s: "timestamp" %s is not epoch milliseconds`, id, o.Timestamp)
	}
	a := Activity{
		Kind: KindAlert, ID: id, Timestamp: ts, Created: ts,
		Name: jsonString(o.Title), Description: jsonString(o.Description),
		URL: jsonString(o.URL), Raw: raw,
	}
	if n, ok := jsonInteger(o.ThreatScore); ok {
		a.RiskScore = strconv.FormatInt(n, 10)
	}
	if n, ok := jsonInteger(o.SeverityValue); ok && n >= 0 && n < int64(len(alertSeverities)) {
		a.Severity = alertSeverities[n]
	}
	var entities []json.RawMessage
	if json.Unmarshal(o.Entities, &entities) != nil {
		entities = nil
	}
	var (
		users, accounts, services, appIDs, policies []string
		policyType                                  string
	)
	var policy alertEntity
	if json.Unmarshal(o.Policy, &policy) == nil {
		if pid := entityID(policy.ID); pid != "" {
			policies = appendOnce(policies, pid)
		}
		policyType = policy.PolicyType
	}
	for _, raw := range entities {
		var e alertEntity
		if json.Unmarshal(raw, &e) != nil {
			continue // one odd entity must not stop a recovery
		}
		switch e.Type {
		case "user":
			users = appendOnce(users, cmpOr(e.Label, entityID(e.ID)))
		case "account":
			accounts = appendOnce(accounts, cmpOr(e.PA, e.EM, e.Label))
		case "service":
			services = appendOnce(services, e.Label)
			if n, ok := jsonInteger(e.ID); ok && n >= 0 {
				appIDs = appendOnce(appIDs, AppIDText(n))
			}
		case "policyRule":
			policies = appendOnce(policies, entityID(e.ID))
			if policyType == "" {
				policyType = e.PolicyType
			}
		}
	}
	a.EventTypeName = AlertType(policyType)
	a.UserName = first(users)
	if a.UserName == "" {
		a.UserName = first(accounts)
	}
	a.AppName = strings.Join(services, ",")
	a.UniqueServiceAppIDs = strings.Join(appIDs, ",")
	a.PolicyIDs = strings.Join(policies, ",")
	a.TargetObjects = joinList(o.Audits)
	return a, nil
}

// jsonString is v's text when v is a JSON string, else "".
func jsonString(v json.RawMessage) string {
	var s string
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}

// jsonInteger is v's value when v is an integer, written as a number or as
// a string of digits (the API writes some numbers as strings).
func jsonInteger(v json.RawMessage) (int64, bool) {
	v = bytes.TrimSpace(v)
	if s := jsonString(v); s != "" {
		v = []byte(s)
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

// entityID is an entity's id as text: a string as it is, a number in
// digits, anything else as its JSON.
func entityID(v json.RawMessage) string {
	if s := jsonString(v); s != "" {
		return s
	}
	if n, ok := jsonInteger(v); ok {
		return strconv.FormatInt(n, 10)
	}
	if v = bytes.TrimSpace(v); len(v) == 0 || string(v) == "null" {
		return ""
	}
	return string(compactJSON(v))
}

// joinList renders a JSON list as the agent does in cs2–cs4: its items
// comma-joined (strings as their text, anything else as its JSON).
func joinList(v json.RawMessage) string {
	var items []json.RawMessage
	if json.Unmarshal(v, &items) != nil {
		return ""
	}
	parts := make([]string, 0, len(items))
	for _, it := range items {
		if s := entityID(it); s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, ",")
}

func compactJSON(v []byte) []byte {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return v
	}
	return b.Bytes()
}

func appendOnce(list []string, s string) []string {
	if s == "" {
		return list
	}
	for _, have := range list {
		if have == s {
			return list
		}
	}
	return append(list, s)
}

func first(list []string) string {
	if len(list) == 0 {
		return ""
	}
	return list[0]
}

func cmpOr(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
