package recovery

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"
)

// Filter is the original SIEM agent's activity filter, in MCAS filter syntax:
// {"field": {"op": value}, ...}, all fields ANDed. The MCAS API applies it
// server side; for an export, Match applies it here.
type Filter struct {
	conds []condition
	json  string // canonical form: keys sorted, no spaces
}

type condition struct {
	field string   // as written in the filter
	path  []string // where it lives in an activity object
	op    string
	arg   any // decoded with UseNumber
}

// filterFieldPaths maps MCAS filter field names to where the value sits in
// an activity object, for the fields whose names differ. Any other field is
// read as a dotted path into the activity (keys matched without case). The
// paths the decoder also reads come from its field table (fields.go).
var filterFieldPaths = map[string]string{
	"service":            fieldAppID,
	"app":                fieldAppID,
	"activity.id":        fieldID,
	"activity.eventtype": fieldEventTypeValue,
	"activity.type":      fieldEventTypeValue,
	"user.username":      fieldUser + "." + fieldUserName,
	"ip.address":         fieldDevice + "." + fieldClientIP,
	"device.type":        fieldDevice + ".type",
	"description":        fieldDescription,
	"created":            fieldCreated,
}

var filterOps = map[string]bool{
	"eq": true, "neq": true, "gt": true, "gte": true, "lt": true, "lte": true,
	"range": true, "isset": true, "isnotset": true, "contains": true, "startswith": true,
}

// ParseFilter reads a filter file's content. An empty or "{}" filter matches
// everything. A "date" or "created" key is refused: the window is the only
// date range of a recovery, and it sets the range of created of every
// request itself (the pass's horizon, the sweeps of late arrivals).
func ParseFilter(data []byte) (Filter, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return Filter{}, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return Filter{}, fmt.Errorf(`not a JSON object in MCAS filter syntax ({"service":{"eq":[11161]}}): %w`, err)
	}
	var f Filter
	for field, raw := range top {
		if strings.EqualFold(field, "date") {
			return Filter{}, fmt.Errorf(`it has a "date" key, but the window (--alert or --start/--end) is the only date range of a recovery`)
		}
		if strings.EqualFold(field, "created") {
			return Filter{}, fmt.Errorf(`it has a "created" key, but a recovery sets the range of created itself (the window with --by created, and the sweeps for activities saved late)`)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var ops map[string]any
		if err := dec.Decode(&ops); err != nil || ops == nil {
			return Filter{}, fmt.Errorf(`field %q: want an object of operators such as {"eq": [...]}, got %s`, field, raw)
		}
		path := field
		if p, ok := filterFieldPaths[strings.ToLower(field)]; ok {
			path = p
		}
		for op, arg := range ops {
			if !filterOps[op] {
				return Filter{}, fmt.Errorf("field %q: unknown operator %q (known: eq, neq, gt, gte, lt, lte, range, isset, isnotset, contains, startswith)", field, op)
			}
			f.conds = append(f.conds, condition{field: field, path: strings.Split(path, "."), op: op, arg: arg})
		}
	}
	sort.Slice(f.conds, func(i, j int) bool {
		if f.conds[i].field != f.conds[j].field {
			return f.conds[i].field < f.conds[j].field
		}
		return f.conds[i].op < f.conds[j].op
	})
	var canon map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&canon); err != nil {
		return Filter{}, err
	}
	if len(canon) > 0 {
		b, err := json.Marshal(canon) // map keys come out sorted
		if err != nil {
			return Filter{}, err
		}
		f.json = string(b)
	}
	return f, nil
}

// IsEmpty reports whether the filter matches every activity.
func (f Filter) IsEmpty() bool { return len(f.conds) == 0 }

// JSON returns the filter in canonical form ("" when empty), suitable both
// for an API request and for fingerprinting a checkpoint.
func (f Filter) JSON() string { return f.json }

// parsers are reused from activity to activity: a fastjson Parser
// allocates only while it grows.
var parsers fastjson.ParserPool

// Match applies the filter to an activity object. The object is parsed
// with fastjson, and only the values the conditions name are converted for
// them, in the forms encoding/json gives with UseNumber.
func (f Filter) Match(raw json.RawMessage) (bool, error) {
	if f.IsEmpty() {
		return true, nil
	}
	p := parsers.Get()
	defer parsers.Put(p)
	obj, err := p.ParseBytes(raw)
	if err != nil {
		return false, err
	}
	if obj.Type() != fastjson.TypeObject {
		return false, fmt.Errorf("not an activity object but a JSON %s", obj.Type())
	}
	for _, c := range f.conds {
		ok, err := c.match(plain(lookup(obj, c.path)))
		if err != nil {
			return false, fmt.Errorf("filter field %q: %w", c.field, err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// lookup walks a dotted path through objects. A key matches exactly (the
// first of duplicates, as the decoder takes it: the filter decides on the
// value the CEF line shows) or, failing that, without case. It returns nil
// when the path is absent.
func lookup(v *fastjson.Value, path []string) *fastjson.Value {
	for _, key := range path {
		if v.Type() != fastjson.TypeObject {
			return nil
		}
		var exact, folded *fastjson.Value
		v.GetObject().Visit(func(k []byte, val *fastjson.Value) {
			switch {
			case string(k) == key:
				if exact == nil {
					exact = val
				}
			case folded == nil && strings.EqualFold(string(k), key):
				folded = val
			}
		})
		if v = cmp.Or(exact, folded); v == nil {
			return nil
		}
	}
	return v
}

// plain converts a value the way encoding/json decodes into any with
// UseNumber: strings, json.Number, bools, []any, map[string]any, nil.
func plain(v *fastjson.Value) any {
	if v == nil {
		return nil
	}
	switch v.Type() {
	case fastjson.TypeString:
		return string(v.GetStringBytes())
	case fastjson.TypeNumber:
		return json.Number(v.MarshalTo(nil)) // the number as written
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeFalse:
		return false
	case fastjson.TypeArray:
		items := v.GetArray()
		out := make([]any, len(items))
		for i, it := range items {
			out[i] = plain(it)
		}
		return out
	case fastjson.TypeObject:
		out := map[string]any{}
		v.GetObject().Visit(func(k []byte, val *fastjson.Value) { out[string(k)] = plain(val) })
		return out
	}
	return nil // null
}

func (c condition) match(v any) (bool, error) {
	switch c.op {
	case "isset":
		return v != nil, nil
	case "isnotset":
		return v == nil, nil
	case "eq":
		return anyEqual(v, c.arg), nil
	case "neq":
		return !anyEqual(v, c.arg), nil
	case "contains", "startswith":
		s, ok := v.(string)
		if !ok {
			return false, nil
		}
		for _, want := range asList(c.arg) {
			w, ok := want.(string)
			if !ok {
				return false, fmt.Errorf("%s needs strings, got %v", c.op, want)
			}
			s, w := strings.ToLower(s), strings.ToLower(w)
			if c.op == "contains" && strings.Contains(s, w) || c.op == "startswith" && strings.HasPrefix(s, w) {
				return true, nil
			}
		}
		return false, nil
	case "range":
		for _, r := range asList(c.arg) {
			m, ok := r.(map[string]any)
			if !ok {
				return false, fmt.Errorf(`range needs [{"start":…,"end":…}], got %v`, r)
			}
			lo, hi := compare(v, m["start"]), compare(v, m["end"])
			if lo != nil && hi != nil && *lo >= 0 && *hi <= 0 {
				return true, nil
			}
		}
		return false, nil
	default: // gt, gte, lt, lte
		cmp := compare(v, c.arg)
		if cmp == nil {
			return false, nil
		}
		switch c.op {
		case "gt":
			return *cmp > 0, nil
		case "gte":
			return *cmp >= 0, nil
		case "lt":
			return *cmp < 0, nil
		}
		return *cmp <= 0, nil
	}
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}

// anyEqual reports whether the activity value v (or, if it is a list, any
// of its items) equals any of the wanted values.
func anyEqual(v, want any) bool {
	for _, item := range asList(v) {
		for _, w := range asList(want) {
			if c := compare(item, w); c != nil && *c == 0 {
				return true
			}
		}
	}
	return false
}

// compare orders two JSON scalars: numbers numerically, strings without
// case, booleans as equal or not; nil when they are not comparable.
func compare(a, b any) *int {
	r := func(n int) *int { return &n }
	switch a := a.(type) {
	case json.Number:
		bf, ok := number(b)
		af, err := a.Float64()
		if !ok || err != nil {
			return nil
		}
		switch {
		case af < bf:
			return r(-1)
		case af > bf:
			return r(1)
		}
		return r(0)
	case string:
		switch b := b.(type) {
		case string:
			return r(strings.Compare(strings.ToLower(a), strings.ToLower(b)))
		case json.Number:
			if af, err := strconv.ParseFloat(a, 64); err == nil {
				bf, _ := b.Float64()
				return compare(json.Number(strconv.FormatFloat(af, 'g', -1, 64)), json.Number(strconv.FormatFloat(bf, 'g', -1, 64)))
			}
		}
	case bool:
		if b, ok := b.(bool); ok && a == b {
			return r(0)
		} else if ok {
			return r(1)
		}
	}
	return nil
}

func number(v any) (float64, bool) {
	switch v := v.(type) {
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(v, 64)
		return f, err == nil
	}
	return 0, false
}
