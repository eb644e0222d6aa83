package mcastest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"siem-recovery/internal/activitygen"
	"siem-recovery/recovery"
)

// The alerts API, as the emulator serves it (POST /api/v1/alerts/;
// defender-docs api-alerts.md and api-alerts-list.md):
//
//   - Filters: "date" with gte, lte, range, eq (as for activities; gt and
//     lt too), and the alert filters a test needs, with eq and neq:
//     "severity" (severityValue), "resolutionStatus"
//     (resolutionStatusValue), "entity.service" (the id of an entity of
//     type service), "entity.policy" (the policy's id, or a policyRule
//     entity's). Any other key, "created" among them, is a 400: the
//     alerts API documents no such filter, and a client that sends one
//     is wrong.
//   - Sorting by "date" (the default; "severity", which the API also
//     documents, is not emulated: 400), "asc" or "desc" (the default),
//     ties broken by _id.
//   - Plain paging only: "skip" and "limit", limit ≤ 100 (the API
//     documents 100 for answers that are not scans) and skip+limit ≤ 5000
//     as for activities, else 400; "isScan": true is a 400.
//   - The answer: "data", "hasNext", "total", "max" and "moreThanTotal",
//     as the documented list answer has them. The total is exact, unless
//     Options.AlertsTotalLimit bounds it: then "total" is the bound and
//     "moreThanTotal" true. "max" is the bound when there is one, else
//     the total (the documented answer has max 1 with total 1).
//   - Everything else as for activities: the token, the budget (alerts
//     requests spend the tenant's one budget), AnswerTime, and the faults
//     (FailNext, FailEvery and FailFrom count and answer every request,
//     to either endpoint; of the hostile answers, those of plain paging
//     apply: IgnoreStart, Repeat, Overfill, Pad, Gzip, Total, NoTotal,
//     LongerBy, Stall, a 200 with any Body). Stats.AlertRequests and
//     Stats.Alerts count the alerts endpoint's share.

// GenerateAlerts makes opts.Count alerts in opts.Window, in ascending
// timestamp order, with opts.Burst of them sharing one millisecond from
// opts.BurstIndex on (as Generate places activities; SavedAt is unused:
// an alert has one time). Each is activitygen.AppendAlert's alert number
// i (from opts.First on), with a unique "_id".
func GenerateAlerts(opts GenerateOptions) []json.RawMessage {
	out := make([]json.RawMessage, 0, max(opts.Count, 0))
	generate(opts, func(i int, ts int64) { out = append(out, alert(i, ts)) })
	return out
}

// alert is alert i at ts.
func alert(i int, ts int64) json.RawMessage {
	return activitygen.AppendAlert(make([]byte, 0, 1536), i, ts)
}

// generatedAlerts are the records of GenerateAlerts(opts), made again
// whenever an answer needs their JSON.
func generatedAlerts(tb testing.TB, opts GenerateOptions) []record {
	var made []record
	generate(opts, func(i int, ts int64) {
		a, err := recovery.DecodeAlert(alert(i, ts))
		if err != nil {
			tb.Fatalf("mcastest: generated alert %d: %v", i, err)
		}
		made = append(made, record{ts: ts, created: ts, id: a.ID, seq: i, alert: true})
	})
	return made
}

// AddAlerts saves more alerts, listed from then on at their place in the
// order of their date. An alert without "_id" or a numeric "timestamp"
// fails the test.
func (s *Server) AddAlerts(tb testing.TB, alerts ...json.RawMessage) {
	tb.Helper()
	added := make([]record, 0, len(alerts))
	for i, raw := range alerts {
		a, err := recovery.DecodeAlert(raw)
		if err != nil {
			tb.Fatalf("mcastest: alert %d: %v: %.200s", i, err, raw)
		}
		added = append(added, record{ts: a.Timestamp, created: a.Timestamp, id: a.ID, raw: bytes.Clone(raw)})
	}
	s.insertAlerts(added)
}

func (s *Server) insertAlerts(added []record) {
	if len(added) == 0 {
		return
	}
	s.data.Lock()
	defer s.data.Unlock()
	all := slices.Concat(s.alerts, added) // a listing in progress keeps the old slice
	sort.SliceStable(all, func(i, j int) bool { return all[i].less(all[j], fieldDate) })
	s.alerts = all
}

// AlertsEndpoint is the alerts endpoint, with its trailing slash.
func (s *Server) AlertsEndpoint() string { return s.URL + "/api/v1/alerts/" }

// answerAlerts lists the alerts q asks for, as the hostile faults of f
// change it.
func (s *Server) answerAlerts(q query, f Fault) (answer, int, string) {
	var c alertConditions
	if err := c.parse(q.Filters); err != nil {
		return answer{}, http.StatusBadRequest, err.Error()
	}
	if f.IgnoreStart {
		c.date.lo = math.MinInt64
	}
	switch q.SortField {
	case "", "date":
	default:
		return answer{}, http.StatusBadRequest, fmt.Sprintf("sortField %q: the emulator sorts alerts by date only", q.SortField)
	}
	if q.IsScan {
		return answer{}, http.StatusBadRequest, "isScan is not supported for alerts"
	}
	if f.Repeat {
		q.fewer = 1 // room for the repeat
	}
	desc, sortMsg := q.descending()
	skip, limit, pageMsg := q.plainPage()
	if msg := cmp.Or(sortMsg, pageMsg); msg != "" {
		return answer{}, http.StatusBadRequest, msg
	}

	s.data.RLock()
	all := s.alerts
	s.data.RUnlock()
	lo := sort.Search(len(all), func(i int) bool { return all[i].ts >= c.date.lo })
	hi := sort.Search(len(all), func(i int) bool { return all[i].ts > c.date.hi })
	var listed []record
	for _, r := range all[lo:hi] {
		if c.match(r) {
			listed = append(listed, r)
		}
	}
	if desc {
		slices.Reverse(listed)
	}
	a := answer{alerts: true, total: len(listed), max: len(listed)}
	if s.alertsLimit > 0 {
		a.max = s.alertsLimit
		if a.total > s.alertsLimit {
			a.total, a.more = s.alertsLimit, true
		}
	}
	if skip < len(listed) {
		a.data = listed[skip:min(skip+limit, len(listed))]
	}
	a.hasNext = skip+len(a.data) < len(listed)
	if f.Repeat && len(a.data) > 0 {
		a.data = append([]record{a.data[0]}, a.data...)
	}
	a.extra = f.Overfill
	return a, http.StatusOK, ""
}

// alertConditions is a parsed "filters" object of the alerts API.
type alertConditions struct {
	date  timeCond
	rules []alertRule
}

// alertRule is one condition on an alert's values: eq (one of them is in
// values) or neq (none is).
type alertRule struct {
	field  string
	neq    bool
	values []string
}

// alertFields are where the alert filters find their values.
var alertFields = map[string]func(alertValues) []string{
	"severity":         func(v alertValues) []string { return []string{text(v.Severity)} },
	"resolutionStatus": func(v alertValues) []string { return []string{text(v.Resolution)} },
	"entity.service":   func(v alertValues) []string { return v.entities("service") },
	"entity.policy": func(v alertValues) []string {
		ids := v.entities("policyRule")
		if v.Policy != nil {
			ids = append(ids, text(v.Policy.ID))
		}
		return ids
	},
}

func (c *alertConditions) parse(raw json.RawMessage) error {
	c.date = timeCond{lo: math.MinInt64, hi: math.MaxInt64}
	top, err := filterObject(raw)
	if err != nil {
		return err
	}
	for field, v := range top {
		if field == "date" {
			if err := c.date.parse(v, fieldDate); err != nil {
				return fmt.Errorf("filters.date: %w", err)
			}
			continue
		}
		if alertFields[field] == nil {
			return fmt.Errorf("filters.%s: not an alert filter (the emulator knows date, severity, resolutionStatus, entity.service, entity.policy)", field)
		}
		var ops map[string]json.RawMessage
		if err := json.Unmarshal(v, &ops); err != nil || ops == nil {
			return fmt.Errorf(`filters.%s: want an object of operators such as {"eq": [...]}, got %s`, field, v)
		}
		for op, arg := range ops {
			if op != "eq" && op != "neq" {
				return fmt.Errorf("filters.%s: operator %q is not supported (use eq, neq)", field, op)
			}
			var list []json.RawMessage
			if err := json.Unmarshal(arg, &list); err != nil {
				list = []json.RawMessage{arg}
			}
			rule := alertRule{field: field, neq: op == "neq"}
			for _, item := range list {
				rule.values = append(rule.values, text(item))
			}
			c.rules = append(c.rules, rule)
		}
	}
	return nil
}

// match tells whether alert r matches every condition.
func (c alertConditions) match(r record) bool {
	if !c.date.match(r.ts) {
		return false
	}
	if len(c.rules) == 0 {
		return true
	}
	var v alertValues
	if json.Unmarshal(r.json(), &v) != nil {
		return false
	}
	for _, rule := range c.rules {
		found := false
		for _, have := range alertFields[rule.field](v) {
			found = found || slices.Contains(rule.values, have)
		}
		if found == rule.neq {
			return false
		}
	}
	return true
}

// alertValues are the members of an alert the filters read.
type alertValues struct {
	Severity   json.RawMessage `json:"severityValue"`
	Resolution json.RawMessage `json:"resolutionStatusValue"`
	Entities   []struct {
		Type string          `json:"type"`
		ID   json.RawMessage `json:"id"`
	} `json:"entities"`
	Policy *struct {
		ID json.RawMessage `json:"id"`
	} `json:"policy"`
}

// entities are the ids of the alert's entities of type typ.
func (v alertValues) entities(typ string) []string {
	var ids []string
	for _, e := range v.Entities {
		if e.Type == typ {
			ids = append(ids, text(e.ID))
		}
	}
	return ids
}

// text is a JSON value as filters compare it: a string's text, anything
// else (a number) as written.
func text(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return strings.TrimSpace(string(v))
}

// AlertIDs returns the "_id" of each alert, in order.
func AlertIDs(alerts []json.RawMessage) []string {
	ids := make([]string, len(alerts))
	for i, raw := range alerts {
		a, err := recovery.DecodeAlert(raw)
		if err != nil {
			ids[i] = ""
			continue
		}
		ids[i] = a.ID
	}
	return ids
}
