package mcastest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"siem-recovery/recovery"
)

// scanAfterKey is the emulator's private continuation inside one
// millisecond, used only when a whole scan page shares it.
const scanAfterKey = "_scanAfter"

// emptyPageKey is the private key of Fault.EmptyNext's continuations,
// which the server ignores: they only differ.
const emptyPageKey = "_emptyPage"

// scanAfter resumes a scan after the record id at the millisecond
// Timestamp of the sort field (date or created).
type scanAfter struct {
	Timestamp int64  `json:"timestamp"`
	ID        string `json:"id"`
}

// field is one of the two times of an activity that filters and sorting
// use.
type field int

const (
	fieldDate    field = iota // "date": when the activity happened, its timestamp
	fieldCreated              // "created": when MCAS saved it
)

func (f field) String() string {
	if f == fieldCreated {
		return "created"
	}
	return "date"
}

// conditions is a parsed "filters" object.
type conditions struct {
	date, created timeCond
	after         *scanAfter
	rest          recovery.Filter // every field but the two times
}

// on returns the condition on field f.
func (c *conditions) on(f field) *timeCond {
	if f == fieldCreated {
		return &c.created
	}
	return &c.date
}

// timeCond is the operators on one time field, ANDed. lo and hi bound the
// matching times (both included) so the records can be searched.
type timeCond struct {
	lo, hi int64
	eq     []int64    // nil: no eq
	ranges [][2]int64 // nil: no range
}

// filterObject reads a request's "filters": an object, or nothing.
func filterObject(raw json.RawMessage) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("filters: not an object: %w", err)
	}
	return top, nil
}

func (c *conditions) parse(raw json.RawMessage) error {
	c.date = timeCond{lo: math.MinInt64, hi: math.MaxInt64}
	c.created = c.date
	top, err := filterObject(raw)
	if err != nil {
		return err
	}
	rest := map[string]json.RawMessage{}
	for field, v := range top {
		switch field {
		case "date", "created":
			f := fieldDate
			if field == "created" {
				f = fieldCreated
			}
			if err := c.on(f).parse(v, f); err != nil {
				return fmt.Errorf("filters.%s: %w", field, err)
			}
		case emptyPageKey:
		case scanAfterKey:
			c.after = new(scanAfter)
			if err := json.Unmarshal(v, c.after); err != nil {
				return fmt.Errorf("filters.%s: %w", scanAfterKey, err)
			}
		default:
			rest[field] = v
		}
	}
	if len(rest) > 0 {
		b, err := json.Marshal(rest)
		if err != nil {
			return err
		}
		if c.rest, err = recovery.ParseFilter(b); err != nil {
			return fmt.Errorf("filters: %w", err)
		}
	}
	return nil
}

func (d *timeCond) parse(raw json.RawMessage, f field) error {
	var ops map[string]json.RawMessage
	if err := json.Unmarshal(raw, &ops); err != nil || ops == nil {
		return fmt.Errorf(`want an object of operators such as {"gte": ms}, got %s`, raw)
	}
	for op, v := range ops {
		switch op {
		case "gte", "gt", "lte", "lt":
			ms, err := millis(v)
			if err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			switch op {
			case "gte":
				d.lo = max(d.lo, ms)
			case "gt":
				d.lo = max(d.lo, ms+1)
			case "lte":
				d.hi = min(d.hi, ms)
			case "lt":
				d.hi = min(d.hi, ms-1)
			}
		case "eq":
			var list []json.RawMessage
			if err := json.Unmarshal(v, &list); err != nil {
				list = []json.RawMessage{v}
			}
			eqLo, eqHi := int64(math.MaxInt64), int64(math.MinInt64)
			for _, item := range list {
				ms, err := millis(item)
				if err != nil {
					return fmt.Errorf("eq: %w", err)
				}
				d.eq = append(d.eq, ms)
				eqLo, eqHi = min(eqLo, ms), max(eqHi, ms)
			}
			d.lo, d.hi = max(d.lo, eqLo), min(d.hi, eqHi)
		case "range":
			var list []struct {
				Start json.RawMessage `json:"start"`
				End   json.RawMessage `json:"end"`
			}
			if err := json.Unmarshal(v, &list); err != nil || len(list) == 0 {
				return fmt.Errorf(`range: want [{"start": ms, "end": ms}], got %s`, v)
			}
			rLo, rHi := int64(math.MaxInt64), int64(math.MinInt64)
			for _, r := range list {
				start, err := millis(r.Start)
				if err != nil {
					return fmt.Errorf("range start: %w", err)
				}
				end, err := millis(r.End)
				if err != nil {
					return fmt.Errorf("range end: %w", err)
				}
				d.ranges = append(d.ranges, [2]int64{start, end})
				rLo, rHi = min(rLo, start), max(rHi, end)
			}
			d.lo, d.hi = max(d.lo, rLo), min(d.hi, rHi)
		default:
			return fmt.Errorf("operator %q is not supported on %s (use eq, gt, gte, lt, lte, range)", op, f)
		}
	}
	return nil
}

func millis(raw json.RawMessage) (int64, error) {
	s := strings.TrimSpace(string(raw))
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s is not epoch milliseconds", s)
	}
	return ms, nil
}

func (d timeCond) match(ts int64) bool {
	if ts < d.lo || ts > d.hi {
		return false
	}
	if d.eq != nil {
		found := false
		for _, e := range d.eq {
			found = found || e == ts
		}
		if !found {
			return false
		}
	}
	if d.ranges != nil {
		for _, r := range d.ranges {
			if r[0] <= ts && ts <= r[1] {
				return true
			}
		}
		return false
	}
	return true
}

// match tells whether r matches c, in a listing sorted on by (desc for
// newest first).
func (c conditions) match(r record, by field, desc bool) bool {
	if !c.date.match(r.ts) || !c.created.match(r.created) {
		return false
	}
	if a := c.after; a != nil {
		mark := record{ts: a.Timestamp, created: a.Timestamp, id: a.ID}
		if desc && !r.less(mark, by) || !desc && !mark.less(r, by) {
			return false
		}
	}
	if c.rest.IsEmpty() {
		return true
	}
	ok, err := c.rest.Match(r.json())
	return err == nil && ok
}

// nextFilters is the nextQueryFilters of a scan sorted on by whose page
// ends at the millisecond ts: the request's filters with the bound of that
// field moved to ts (gte for an ascending scan, lte for a descending one),
// and the private continuation inside ts when after is set.
func nextFilters(filters json.RawMessage, by field, ts int64, desc bool, after *scanAfter) (json.RawMessage, error) {
	top := map[string]json.RawMessage{}
	if f := bytes.TrimSpace(filters); len(f) > 0 && string(f) != "null" {
		if err := json.Unmarshal(f, &top); err != nil {
			return nil, err
		}
	}
	ops := map[string]json.RawMessage{}
	if raw, ok := top[by.String()]; ok {
		if err := json.Unmarshal(raw, &ops); err != nil {
			return nil, err
		}
	}
	bound := json.RawMessage(strconv.FormatInt(ts, 10))
	if desc {
		delete(ops, "lt")
		ops["lte"] = bound
	} else {
		delete(ops, "gt")
		ops["gte"] = bound
	}
	b, err := marshalSorted(ops)
	if err != nil {
		return nil, err
	}
	top[by.String()] = b
	delete(top, scanAfterKey)
	if after != nil {
		if top[scanAfterKey], err = json.Marshal(after); err != nil {
			return nil, err
		}
	}
	return marshalSorted(top)
}

func marshalSorted(m map[string]json.RawMessage) (json.RawMessage, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		if err := json.Compact(&b, m[k]); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
