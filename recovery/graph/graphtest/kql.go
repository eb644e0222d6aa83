package graphtest

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"siem-recovery/recovery/graph"
)

// The emulator's KQL: a table, then pipes of where, order by / sort by,
// top N by, take / limit and count. Expressions: or, and, not(…),
// parentheses; ==, !=, =~, !~, <, <=, >, >= (numbers and datetimes only:
// Kusto refuses to order strings with them, which is why the source
// writes strcmp); in, !in, in~, !in~ over a list of literals; has,
// contains, startswith (and their negations, case-insensitive); the
// functions datetime(…), strcmp(a, b), tolower(s), toupper(s),
// isempty(s), isnotempty(s); string, number, true and false literals.

// queryError is a query the emulator cannot run: the API answers 400 with
// its text.
type queryError struct{ msg string }

func (e *queryError) Error() string { return e.msg }

func syntaxError(t token, format string, args ...any) error {
	return &queryError{msg: fmt.Sprintf("Syntax error: %s (line %d, position %d)", fmt.Sprintf(format, args...), t.line, t.col)}
}

func semanticError(format string, args ...any) error {
	return &queryError{msg: "Semantic error: " + fmt.Sprintf(format, args...)}
}

type tokenKind int

const (
	tkEOF tokenKind = iota
	tkIdent
	tkString
	tkNumber
	tkOp // punctuation and operators
	tkDatetime
)

type token struct {
	kind      tokenKind
	text      string // an identifier or operator, a string's value, a number's or datetime's text
	line, col int
}

// lex splits a query into tokens.
func lex(src string) ([]token, error) {
	var toks []token
	line, lineStart := 1, 0
	for i := 0; i < len(src); {
		c := src[i]
		at := token{line: line, col: i - lineStart + 1}
		switch {
		case c == '\n':
			line, lineStart = line+1, i+1
			i++
			continue
		case c == ' ' || c == '\t' || c == '\r':
			i++
			continue
		case strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
			continue
		case c == '"' || c == '\'' || ((c == '@' || c == 'h' || c == 'H') && stringAhead(src[i:])):
			s, n, err := lexString(src[i:])
			if err != nil {
				return nil, syntaxError(at, "%v", err)
			}
			at.kind, at.text = tkString, s
			i += n
		case isIdentStart(c):
			j := i
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			word := src[i:j]
			if word == "datetime" && j < len(src) && src[j] == '(' {
				end := strings.IndexByte(src[j:], ')')
				if end < 0 {
					return nil, syntaxError(at, "datetime( is not closed")
				}
				at.kind, at.text = tkDatetime, strings.TrimSpace(src[j+1:j+end])
				i = j + end + 1
				break
			}
			if word == "in" && j < len(src) && src[j] == '~' {
				j++
				word = "in~"
			}
			at.kind, at.text = tkIdent, word
			i = j
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.' || src[j] == 'e' || src[j] == 'E') {
				j++
			}
			at.kind, at.text = tkNumber, src[i:j]
			i = j
		case c == '!' && i+1 < len(src) && isIdentStart(src[i+1]):
			j := i + 1
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			if j < len(src) && src[j] == '~' {
				j++
			}
			at.kind, at.text = tkOp, src[i:j]
			i = j
		default:
			op := ""
			for _, o := range []string{"==", "!=", "=~", "!~", "<=", ">=", "<", ">", "(", ")", ",", "|", "-"} {
				if strings.HasPrefix(src[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				return nil, syntaxError(at, "unexpected %q", string(c))
			}
			at.kind, at.text = tkOp, op
			i += len(op)
		}
		toks = append(toks, at)
	}
	return append(toks, token{kind: tkEOF, line: line, col: len(src) - lineStart + 1}), nil
}

func stringAhead(s string) bool {
	n := 0
	if s[0] == 'h' || s[0] == 'H' {
		n++
	}
	if n < len(s) && s[n] == '@' {
		n++
	}
	return n > 0 && n < len(s) && (s[n] == '"' || s[n] == '\'')
}

// lexString reads a string literal: "…" or '…' with backslash escapes,
// @"…" verbatim ("" for a quote), with an optional h (obfuscated) prefix.
func lexString(s string) (string, int, error) {
	i := 0
	if s[i] == 'h' || s[i] == 'H' {
		i++
	}
	verbatim := s[i] == '@'
	if verbatim {
		i++
	}
	quote := s[i]
	var b strings.Builder
	for i++; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\n':
			return "", 0, fmt.Errorf("a string literal does not end on its line")
		case c == '\\' && !verbatim && i+1 < len(s):
			i++
			switch e := s[i]; e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			default:
				b.WriteByte(e)
			}
		case c == quote:
			if verbatim && i+1 < len(s) && s[i+1] == quote {
				b.WriteByte(quote)
				i++
				continue
			}
			return b.String(), i + 1, nil
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("a string literal does not end")
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdentPart(c byte) bool  { return isIdentStart(c) || c >= '0' && c <= '9' }

// program is a parsed query.
type program struct {
	table string
	steps []step
}

type stepKind int

const (
	stepWhere stepKind = iota
	stepSort
	stepTake
	stepCount
)

type step struct {
	kind  stepKind
	where expr
	keys  []sortKey
	n     int
}

type sortKey struct {
	column string
	desc   bool
}

// parse reads a query.
func parse(src string) (*program, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	t := p.next()
	if t.kind != tkIdent {
		return nil, syntaxError(t, "a query starts with a table")
	}
	prog := &program{table: t.text}
	for p.peek().kind != tkEOF {
		if t := p.next(); t.text != "|" || t.kind != tkOp {
			return nil, syntaxError(t, "expected | but found %q", t.text)
		}
		st, err := p.step()
		if err != nil {
			return nil, err
		}
		prog.steps = append(prog.steps, st...)
	}
	return prog, nil
}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tkEOF {
		p.pos++
	}
	return t
}

func (p *parser) isWord(w string) bool { t := p.peek(); return t.kind == tkIdent && t.text == w }
func (p *parser) isOp(o string) bool   { t := p.peek(); return t.kind == tkOp && t.text == o }

func (p *parser) expectOp(o string) error {
	if t := p.next(); t.kind != tkOp || t.text != o {
		return syntaxError(t, "expected %q but found %q", o, t.text)
	}
	return nil
}

func (p *parser) step() ([]step, error) {
	t := p.next()
	if t.kind != tkIdent {
		return nil, syntaxError(t, "expected an operator after |")
	}
	switch t.text {
	case "where":
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		return []step{{kind: stepWhere, where: e}}, nil
	case "order", "sort":
		if t := p.next(); t.text != "by" {
			return nil, syntaxError(t, "expected by after %s", t.text)
		}
		keys, err := p.sortKeys()
		return []step{{kind: stepSort, keys: keys}}, err
	case "take", "limit":
		n, err := p.count()
		return []step{{kind: stepTake, n: n}}, err
	case "top":
		n, err := p.count()
		if err != nil {
			return nil, err
		}
		if t := p.next(); t.text != "by" {
			return nil, syntaxError(t, "expected by after top %d", n)
		}
		keys, err := p.sortKeys()
		return []step{{kind: stepSort, keys: keys}, {kind: stepTake, n: n}}, err
	case "count":
		return []step{{kind: stepCount}}, nil
	}
	return nil, syntaxError(t, "the emulator does not know the operator %q", t.text)
}

func (p *parser) count() (int, error) {
	t := p.next()
	n, err := strconv.Atoi(t.text)
	if t.kind != tkNumber || err != nil || n < 0 {
		return 0, syntaxError(t, "expected a row count but found %q", t.text)
	}
	return n, nil
}

// sortKeys reads column [asc|desc], …; Kusto sorts descending by default.
func (p *parser) sortKeys() ([]sortKey, error) {
	var keys []sortKey
	for {
		t := p.next()
		if t.kind != tkIdent {
			return nil, syntaxError(t, "expected a column to sort by")
		}
		k := sortKey{column: t.text, desc: true}
		if p.isWord("asc") || p.isWord("desc") {
			k.desc = p.next().text == "desc"
		}
		keys = append(keys, k)
		if !p.isOp(",") {
			return keys, nil
		}
		p.next()
	}
}

// expr is a node of a where clause's expression.
type expr interface {
	eval(r *Row) (any, error)
}

func (p *parser) expr() (expr, error) { return p.or() }

func (p *parser) or() (expr, error) {
	left, err := p.and()
	for err == nil && p.isWord("or") {
		p.next()
		var right expr
		if right, err = p.and(); err == nil {
			left = &logical{op: "or", left: left, right: right}
		}
	}
	return left, err
}

func (p *parser) and() (expr, error) {
	left, err := p.comparison()
	for err == nil && p.isWord("and") {
		p.next()
		var right expr
		if right, err = p.comparison(); err == nil {
			left = &logical{op: "and", left: left, right: right}
		}
	}
	return left, err
}

var comparisons = []string{"==", "!=", "=~", "!~", "<", "<=", ">", ">="}

var stringOps = []string{"has", "!has", "contains", "!contains", "startswith", "!startswith", "endswith", "!endswith", "has_cs", "contains_cs"}

func (p *parser) comparison() (expr, error) {
	left, err := p.primary()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	switch {
	case t.kind == tkOp && slices.Contains(comparisons, t.text):
		p.next()
		right, err := p.primary()
		return &compare{op: t.text, left: left, right: right}, err
	case (t.kind == tkIdent && (t.text == "in" || t.text == "in~")) || (t.kind == tkOp && (t.text == "!in" || t.text == "!in~")):
		p.next()
		list, err := p.list()
		return &inList{op: t.text, left: left, list: list}, err
	case slices.Contains(stringOps, t.text) && (t.kind == tkIdent || t.kind == tkOp):
		p.next()
		right, err := p.primary()
		return &stringOp{op: t.text, left: left, right: right}, err
	}
	return left, nil
}

func (p *parser) list() ([]any, error) {
	if err := p.expectOp("("); err != nil {
		return nil, err
	}
	var list []any
	for {
		e, err := p.primary()
		if err != nil {
			return nil, err
		}
		lit, ok := e.(*literal)
		if !ok {
			return nil, syntaxError(p.peek(), "the emulator's in lists hold literals only")
		}
		list = append(list, lit.v)
		if p.isOp(")") {
			p.next()
			return list, nil
		}
		if err := p.expectOp(","); err != nil {
			return nil, err
		}
	}
}

func (p *parser) primary() (expr, error) {
	t := p.next()
	switch t.kind {
	case tkString:
		return &literal{v: t.text}, nil
	case tkNumber:
		if n, err := strconv.ParseInt(t.text, 10, 64); err == nil {
			return &literal{v: n}, nil
		}
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, syntaxError(t, "%q is not a number", t.text)
		}
		return &literal{v: f}, nil
	case tkDatetime:
		at, err := graph.ParseTicks(t.text)
		if err != nil {
			return nil, syntaxError(t, "datetime(%s): %v", t.text, err)
		}
		return &literal{v: at}, nil
	case tkOp:
		switch t.text {
		case "(":
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			return e, p.expectOp(")")
		case "-":
			e, err := p.primary()
			if lit, ok := e.(*literal); ok && err == nil {
				switch v := lit.v.(type) {
				case int64:
					return &literal{v: -v}, nil
				case float64:
					return &literal{v: -v}, nil
				}
			}
			return nil, syntaxError(t, "a minus the emulator cannot read")
		}
	case tkIdent:
		switch t.text {
		case "true":
			return &literal{v: true}, nil
		case "false":
			return &literal{v: false}, nil
		}
		if p.isOp("(") {
			return p.call(t)
		}
		return &column{name: t.text}, nil
	}
	return nil, syntaxError(t, "unexpected %q", t.text)
}

func (p *parser) call(name token) (expr, error) {
	p.next() // (
	var args []expr
	for !p.isOp(")") {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		args = append(args, e)
		if !p.isOp(")") {
			if err := p.expectOp(","); err != nil {
				return nil, err
			}
		}
	}
	p.next()
	want := map[string]int{"strcmp": 2, "not": 1, "tolower": 1, "toupper": 1, "isempty": 1, "isnotempty": 1}
	n, known := want[name.text]
	if !known {
		return nil, syntaxError(name, "the emulator does not know the function %s()", name.text)
	}
	if len(args) != n {
		return nil, semanticError("%s() takes %d arguments, not %d", name.text, n, len(args))
	}
	return &call{name: name.text, args: args}, nil
}

type literal struct{ v any }

func (l *literal) eval(*Row) (any, error) { return l.v, nil }

type column struct{ name string }

func (c *column) eval(r *Row) (any, error) {
	v, ok := r.value(c.name)
	if !ok {
		return nil, semanticError("'where' operator: Failed to resolve scalar expression named '%s'", c.name)
	}
	return v, nil
}

type logical struct {
	op          string
	left, right expr
}

func (l *logical) eval(r *Row) (any, error) {
	a, err := evalBool(l.left, r)
	if err != nil {
		return nil, err
	}
	if l.op == "and" && !a || l.op == "or" && a {
		return a, nil
	}
	return evalBool(l.right, r)
}

func evalBool(e expr, r *Row) (bool, error) {
	v, err := e.eval(r)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok && v != nil {
		return false, semanticError("a condition is %T, not bool", v)
	}
	return b, nil
}

type compare struct {
	op          string
	left, right expr
}

func (c *compare) eval(r *Row) (any, error) {
	a, err := c.left.eval(r)
	if err != nil {
		return nil, err
	}
	b, err := c.right.eval(r)
	if err != nil {
		return nil, err
	}
	if c.op == "=~" || c.op == "!~" {
		as, aok := a.(string)
		bs, bok := b.(string)
		if !aok || !bok {
			return nil, semanticError("%s compares strings only", c.op)
		}
		return strings.EqualFold(as, bs) == (c.op == "=~"), nil
	}
	order, err := compareValues(a, b, c.op)
	if err != nil {
		return nil, err
	}
	switch c.op {
	case "==":
		return order == 0, nil
	case "!=":
		return order != 0, nil
	case "<":
		return order < 0, nil
	case "<=":
		return order <= 0, nil
	case ">":
		return order > 0, nil
	}
	return order >= 0, nil
}

// compareValues orders a and b as Kusto does for the types the emulator
// holds. Strings compare for equality only: Kusto refuses < and > on them.
func compareValues(a, b any, op string) (int, error) {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, semanticError("Cannot compare values of types string and %T", b)
		}
		if op != "==" && op != "!=" {
			return 0, semanticError("Cannot compare values of types string and string. Try adding explicit casts")
		}
		return strings.Compare(x, y), nil
	case bool:
		y, ok := b.(bool)
		if !ok || (op != "==" && op != "!=") {
			return 0, semanticError("Cannot compare values of types bool and %T with %s", b, op)
		}
		if x == y {
			return 0, nil
		}
		return 1, nil
	case graph.Ticks:
		y, ok := b.(graph.Ticks)
		if !ok {
			return 0, semanticError("Cannot compare values of types datetime and %T", b)
		}
		return compareOrdered(x, y), nil
	case int64, float64:
		fx, fy, ok := numbers(a, b)
		if !ok {
			return 0, semanticError("Cannot compare values of types %T and %T", a, b)
		}
		return compareOrdered(fx, fy), nil
	}
	return 0, semanticError("Cannot compare values of types %T and %T", a, b)
}

func compareOrdered[T int64 | float64 | graph.Ticks](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func numbers(a, b any) (float64, float64, bool) {
	f := func(v any) (float64, bool) {
		switch n := v.(type) {
		case int64:
			return float64(n), true
		case float64:
			return n, true
		}
		return math.NaN(), false
	}
	x, ok1 := f(a)
	y, ok2 := f(b)
	return x, y, ok1 && ok2
}

type inList struct {
	op   string
	left expr
	list []any
}

func (in *inList) eval(r *Row) (any, error) {
	v, err := in.left.eval(r)
	if err != nil {
		return nil, err
	}
	fold := strings.HasSuffix(in.op, "~")
	found := false
	for _, item := range in.list {
		if vs, ok := v.(string); ok && fold {
			if is, ok := item.(string); ok && strings.EqualFold(vs, is) {
				found = true
			}
			continue
		}
		if order, err := compareValues(v, item, "=="); err == nil && order == 0 {
			found = true
		}
	}
	return found == !strings.HasPrefix(in.op, "!"), nil
}

type stringOp struct {
	op          string
	left, right expr
}

func (s *stringOp) eval(r *Row) (any, error) {
	a, err := s.left.eval(r)
	if err != nil {
		return nil, err
	}
	b, err := s.right.eval(r)
	if err != nil {
		return nil, err
	}
	as, aok := a.(string)
	bs, bok := b.(string)
	if !aok || !bok {
		return nil, semanticError("%s takes strings", s.op)
	}
	op := strings.TrimPrefix(s.op, "!")
	if !strings.HasSuffix(op, "_cs") {
		as, bs = strings.ToLower(as), strings.ToLower(bs)
	}
	var ok bool
	switch strings.TrimSuffix(op, "_cs") {
	case "has":
		ok = slices.Contains(strings.FieldsFunc(as, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }), bs)
	case "contains":
		ok = strings.Contains(as, bs)
	case "startswith":
		ok = strings.HasPrefix(as, bs)
	case "endswith":
		ok = strings.HasSuffix(as, bs)
	}
	return ok != strings.HasPrefix(s.op, "!"), nil
}

type call struct {
	name string
	args []expr
}

func (c *call) eval(r *Row) (any, error) {
	vals := make([]any, len(c.args))
	for i, a := range c.args {
		v, err := a.eval(r)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	str := func(i int) (string, error) {
		s, ok := vals[i].(string)
		if !ok {
			return "", semanticError("%s() takes strings, not %T", c.name, vals[i])
		}
		return s, nil
	}
	switch c.name {
	case "not":
		b, ok := vals[0].(bool)
		if !ok {
			return nil, semanticError("not() takes a bool")
		}
		return !b, nil
	case "strcmp":
		a, err := str(0)
		if err != nil {
			return nil, err
		}
		b, err := str(1)
		if err != nil {
			return nil, err
		}
		return int64(strings.Compare(a, b)), nil
	}
	s, err := str(0)
	if err != nil {
		return nil, err
	}
	switch c.name {
	case "tolower":
		return strings.ToLower(s), nil
	case "toupper":
		return strings.ToUpper(s), nil
	case "isempty":
		return s == "", nil
	}
	return s != "", nil // isnotempty
}

// timeRange narrows a where clause's expression to the range of Timestamp
// it requires at its top level (comparisons ANDed with the rest): the rows
// the query scans, which the emulator's timeout fault counts.
func timeRange(e expr, lo, hi graph.Ticks) (graph.Ticks, graph.Ticks) {
	switch n := e.(type) {
	case *logical:
		if n.op == "and" {
			lo, hi = timeRange(n.left, lo, hi)
			return timeRange(n.right, lo, hi)
		}
		// (Timestamp > t or …): the source's cursor; t bounds it from below.
		l1, h1 := timeRange(n.left, lo, hi)
		l2, h2 := timeRange(n.right, lo, hi)
		return min(l1, l2), max(h1, h2)
	case *compare:
		col, ok := n.left.(*column)
		lit, ok2 := n.right.(*literal)
		at, ok3 := lit.v.(graph.Ticks)
		if !ok || !ok2 || !ok3 || col.name != "Timestamp" {
			return lo, hi
		}
		switch n.op {
		case ">=", ">", "==":
			lo = max(lo, at)
		}
		switch n.op {
		case "<":
			hi = min(hi, at)
		case "<=", "==":
			hi = min(hi, at+1)
		}
	}
	return lo, hi
}
