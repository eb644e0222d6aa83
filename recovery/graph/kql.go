package graph

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"siem-recovery/recovery"
)

// Table is the advanced hunting table the source reads.
const Table = "CloudAppEvents"

// The columns the queries name: the row's time, and its unique id (the
// table's reference: "ReportId: Unique identifier for the event").
const (
	columnTimestamp = "Timestamp"
	columnReportID  = "ReportId"
)

// Ticks is a time in the unit of KQL's datetime, 100 ns, counted from the
// Unix epoch. Timestamp values carry up to seven decimals of the second
// ("2024-03-26T09:39:50.7688641Z"), finer than the window's milliseconds:
// the cursor keeps them whole, so that rows a few hundred nanoseconds
// apart are neither skipped nor read twice.
type Ticks int64

// ticksPerMilli is how many ticks make a millisecond.
const ticksPerMilli = 10_000

// TicksOfMillis is the tick at the start of Unix millisecond ms.
func TicksOfMillis(ms int64) Ticks { return Ticks(ms * ticksPerMilli) }

// Millis is the millisecond t falls in: the window and recovery.Activity
// count whole milliseconds, and a row at 10:00:00.0004 belongs to the
// millisecond 10:00:00.000, inside a window that starts then.
func (t Ticks) Millis() int64 {
	ms := int64(t) / ticksPerMilli
	if t < 0 && int64(t)%ticksPerMilli != 0 {
		ms--
	}
	return ms
}

// kqlTime is the layout of a datetime the source writes: always seven
// decimals, as Kusto renders datetimes, so that a cursor's text is one
// canonical string per instant.
const kqlTime = "2006-01-02T15:04:05.0000000Z"

// String writes t as Kusto renders a datetime: 2024-03-26T09:39:50.7688641Z.
func (t Ticks) String() string {
	sec, rem := int64(t)/10_000_000, int64(t)%10_000_000
	if rem < 0 {
		sec, rem = sec-1, rem+10_000_000
	}
	return time.Unix(sec, rem*100).UTC().Format(kqlTime)
}

// ParseTicks reads a datetime as the API answers it: RFC 3339 with up to
// seven decimals (more are cut: KQL keeps 100 ns). It refuses what is not
// such a time.
func ParseTicks(s string) (Ticks, error) {
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("%q is not an RFC 3339 time", s)
	}
	if y := tm.Year(); y < 1970 || y > 9999 {
		return 0, fmt.Errorf("%q is outside the years 1970 to 9999", s)
	}
	return Ticks(tm.Unix()*10_000_000 + int64(tm.Nanosecond())/100), nil
}

// datetimeLiteral is t as a KQL datetime literal.
func datetimeLiteral(t Ticks) string { return "datetime(" + t.String() + ")" }

// stringLiteral is s as a KQL string literal: double quotes, with the two
// characters that need it escaped. The source writes only text that holds
// no control character (report ids are checked: see checkReportID).
func stringLiteral(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// maxReportID bounds the length of a report id the cursor keeps and a
// query repeats (real ones are 64 hex digits and the app id).
const maxReportID = 1024

// checkReportID tells whether id can be a row's report id: text a query
// can quote back, as it must to resume after it.
func checkReportID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("an empty %s", columnReportID)
	case len(id) > maxReportID:
		return fmt.Errorf("a %s of %d bytes (at most %d)", columnReportID, len(id), maxReportID)
	case !utf8.ValidString(id):
		return fmt.Errorf("a %s that is not UTF-8", columnReportID)
	case strings.IndexFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return fmt.Errorf("a %s with a control character", columnReportID)
	}
	return nil
}

// query is one page's query: the rows of [from, upper) that match the
// operator's predicate, after the cursor (the row at After's time with
// that id, when After is set), the first limit of them in the order of
// (Timestamp, ReportId).
type query struct {
	from, upper Ticks
	after       string // "": from is inclusive; else rows after (from, after)
	limit       int
}

// text writes the query in KQL. The operator's predicate sits alone in
// its own where clause, in parentheses on lines of their own, so that a
// comment ending it cannot hide what follows.
func (q query) text(where Predicate) string {
	var b strings.Builder
	b.WriteString(Table)
	b.WriteString("\n| where " + columnTimestamp + " >= " + datetimeLiteral(q.from) +
		" and " + columnTimestamp + " < " + datetimeLiteral(q.upper))
	where.appendClause(&b)
	if q.after != "" {
		at := datetimeLiteral(q.from)
		b.WriteString("\n| where " + columnTimestamp + " > " + at + " or (" + columnTimestamp + " == " + at +
			" and strcmp(" + columnReportID + ", " + stringLiteral(q.after) + ") > 0)")
	}
	b.WriteString("\n| top " + strconv.Itoa(q.limit) + " by " + columnTimestamp + " asc, " + columnReportID + " asc")
	return b.String()
}

// countText writes the query that counts the rows of [from, upper) that
// match the predicate: one row, one column (Count).
func countText(from, upper Ticks, where Predicate) string {
	var b strings.Builder
	b.WriteString(Table)
	b.WriteString("\n| where " + columnTimestamp + " >= " + datetimeLiteral(from) +
		" and " + columnTimestamp + " < " + datetimeLiteral(upper))
	where.appendClause(&b)
	b.WriteString("\n| count")
	return b.String()
}

// Predicate is the operator's KQL predicate: the condition of one where
// clause over CloudAppEvents (ActionType == "FileDownloaded" and
// Application in ("Microsoft OneDrive for Business")), checked by
// ParseWhere. The zero Predicate selects every row.
type Predicate struct{ text string }

// String is the predicate as given (without a leading "where"), for the
// checkpoint's fingerprint and for messages; "" for none.
func (p Predicate) String() string { return p.text }

// IsZero reports whether no predicate was given.
func (p Predicate) IsZero() bool { return p.text == "" }

func (p Predicate) appendClause(b *strings.Builder) {
	if p.text != "" {
		b.WriteString("\n| where (\n" + p.text + "\n)")
	}
}

// MaxWhere bounds the length of a predicate: a page of conditions.
const MaxWhere = 64 << 10

// remedyWhere follows every refusal of a predicate.
const remedyWhere = `give one KQL predicate, the condition of a where clause over ` + Table +
	`, e.g. ActionType == "FileDownloaded" and Application in ("Microsoft OneDrive for Business")`

// forbidden are the words that do not belong in one where clause's
// condition: they start another statement, read another table or source,
// or run code. KQL keywords are lower case; any case is refused here, a
// column named so being as unlikely as it is harmless to refuse.
var forbidden = map[string]bool{
	"let": true, "set": true, "alias": true, "declare": true, "pattern": true, "restrict": true,
	"union": true, "join": true, "lookup": true, "externaldata": true, "external_data": true,
	"external_table": true, "materialized_view": true, "evaluate": true, "invoke": true,
	"materialize": true, "toscalar": true, "totable": true, "database": true, "cluster": true,
	"table": true, "datatable": true, "print": true, "search": true, "find": true, "range": true,
	"fork": true, "facet": true, "view": true, "where": true, "macro-expand": true, "graph": true,
	"entity_group": true, "stored_query_result": true,
}

// ParseWhere checks the text of a --where file: one KQL predicate,
// optionally after the word "where". It must be one condition: a pipe
// (|) or a semicolon outside a string literal, a word that starts another
// statement or reads another table (let, union, join, lookup,
// externaldata, toscalar, database, cluster, …), braces or backticks, or
// unbalanced parentheses are refused, and so is an empty one. String
// literals ("…", '…', @"…", h"…") and // comments are understood, so a
// pipe inside them is text. The predicate is kept as written; its errors
// are *recovery.Error of kind ErrUsage, naming the line and column.
func ParseWhere(text string) (Predicate, error) {
	if len(text) > MaxWhere {
		return Predicate{}, recovery.Problemf(recovery.ErrUsage, remedyWhere,
			"the where clause has %d bytes, more than %d", len(text), MaxWhere)
	}
	if !utf8.ValidString(text) {
		return Predicate{}, recovery.Problemf(recovery.ErrUsage, remedyWhere, "the where clause is not UTF-8 text")
	}
	l := lexer{text: text}
	start, err := l.check()
	if err != nil {
		return Predicate{}, err
	}
	body := strings.TrimSpace(text[start:])
	if body == "" || !l.tokens {
		return Predicate{}, recovery.Problemf(recovery.ErrUsage, remedyWhere, "the where clause holds no condition")
	}
	return Predicate{text: body}, nil
}

// lexer reads a predicate just far enough to tell its string literals,
// comments, words and punctuation apart.
type lexer struct {
	text   string
	pos    int
	depth  []byte // the open ( and [
	tokens bool   // a token besides the leading "where" was read
}

// check reads the whole text and returns where the predicate starts
// (after a leading "where").
func (l *lexer) check() (start int, err error) {
	first := true
	for {
		if err := l.skipSpace(); err != nil {
			return 0, err
		}
		if l.pos >= len(l.text) {
			break
		}
		from := l.pos
		word, err := l.next()
		if err != nil {
			return 0, err
		}
		if first && word == "where" {
			start, first = l.pos, false
			continue
		}
		first = false
		l.tokens = true
		if word != "" && forbidden[strings.ToLower(word)] {
			return 0, l.refuse(from, "has %q, which does not belong in one condition (it starts another statement or reads another table)", word)
		}
	}
	if n := len(l.depth); n > 0 {
		return 0, l.refuse(len(l.text), "leaves %d %q unclosed", n, string(l.depth[n-1]))
	}
	return start, nil
}

// skipSpace passes over white space and // comments. A control character
// other than tab, CR and LF is refused wherever it is.
func (l *lexer) skipSpace() error {
	for l.pos < len(l.text) {
		switch c := l.text[l.pos]; {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			l.pos++
		case c == '/' && strings.HasPrefix(l.text[l.pos:], "//"):
			end := strings.IndexByte(l.text[l.pos:], '\n')
			if end < 0 {
				end = len(l.text) - l.pos
			}
			if err := l.plainText(l.pos, l.pos+end); err != nil {
				return err
			}
			l.pos += end
		default:
			return nil
		}
	}
	return nil
}

// plainText refuses a control character in text[from:to].
func (l *lexer) plainText(from, to int) error {
	for i := from; i < to; i++ {
		if c := l.text[i]; (c < 0x20 && c != '\t' && c != '\r') || c == 0x7f {
			return l.refuse(i, "has the control character %q", c)
		}
	}
	return nil
}

// next reads one token at pos: a word (returned), a number, a string
// literal or punctuation.
func (l *lexer) next() (word string, err error) {
	c := l.text[l.pos]
	if c == '@' || c == 'h' || c == 'H' {
		if q, verbatim, ok := l.stringPrefix(); ok {
			return "", l.str(q, verbatim)
		}
	}
	switch {
	case c == '"' || c == '\'':
		return "", l.str(l.pos, false)
	case isWordStart(c):
		from := l.pos
		for l.pos < len(l.text) && isWordPart(l.text[l.pos]) {
			l.pos++
		}
		// A hyphenated keyword (macro-expand) is one word to refuse.
		if l.pos < len(l.text) && l.text[l.pos] == '-' && strings.HasPrefix(l.text[from:], "macro-expand") {
			l.pos = from + len("macro-expand")
		}
		return l.text[from:l.pos], nil
	case c >= '0' && c <= '9':
		for l.pos < len(l.text) && (isWordPart(l.text[l.pos]) || l.text[l.pos] == '.') {
			l.pos++
		}
		return "", nil
	case c == '(' || c == '[':
		l.depth = append(l.depth, c)
	case c == ')' || c == ']':
		open := byte('(')
		if c == ']' {
			open = '['
		}
		if n := len(l.depth); n == 0 || l.depth[n-1] != open {
			return "", l.refuse(l.pos, "has a %q that closes nothing", string(c))
		}
		l.depth = l.depth[:len(l.depth)-1]
	case c == '|':
		return "", l.refuse(l.pos, "has a pipe (|): it would run an operator after the condition")
	case c == ';':
		return "", l.refuse(l.pos, "has a semicolon (;): it would start another statement")
	case strings.IndexByte(",.:+-*/%=!<>~", c) >= 0:
	case c >= 0x80:
		// Letters of other scripts in a word: KQL names are ASCII, but a
		// Unicode word is harmless to pass on; the API judges it.
		_, size := utf8.DecodeRuneInString(l.text[l.pos:])
		l.pos += size
		return "", nil
	default:
		return "", l.refuse(l.pos, "has %q, which has no place in a condition", string(c))
	}
	l.pos++
	return "", nil
}

// stringPrefix tells whether a string literal with a prefix starts at
// pos (@"…" verbatim, h"…" or h@"…" obfuscated), and where its opening
// quote is. A word that starts with h ("has") has no quote right after
// the h, so it is no prefix.
func (l *lexer) stringPrefix() (quote int, verbatim, ok bool) {
	rest := l.text[l.pos:]
	n := 0
	if rest[0] == 'h' || rest[0] == 'H' {
		n = 1
	}
	verbatim = n < len(rest) && rest[n] == '@'
	if verbatim {
		n++
	}
	if n == 0 || n >= len(rest) || (rest[n] != '"' && rest[n] != '\'') {
		return 0, false, false
	}
	return l.pos + n, verbatim, true
}

// str reads the string literal whose opening quote is at q: with backslash
// escapes, or verbatim (a doubled quote stands for one). A literal does not
// span lines.
func (l *lexer) str(q int, verbatim bool) error {
	quote := l.text[q]
	for i := q + 1; i < len(l.text); i++ {
		switch c := l.text[i]; {
		case c == '\n' || c == '\r':
			return l.refuse(q, "has a string literal that does not end on its line")
		case (c < 0x20 && c != '\t') || c == 0x7f:
			return l.refuse(i, "has the control character %q in a string literal", c)
		case c == '\\' && !verbatim:
			i++
		case c == quote:
			if verbatim && i+1 < len(l.text) && l.text[i+1] == quote {
				i++
				continue
			}
			l.pos = i + 1
			return nil
		}
	}
	return l.refuse(q, "has a string literal that does not end")
}

func isWordStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isWordPart(c byte) bool  { return isWordStart(c) || c >= '0' && c <= '9' }

// refuse is the usage error for what lies at offset at, with its line and
// column.
func (l *lexer) refuse(at int, format string, args ...any) error {
	line := 1 + strings.Count(l.text[:at], "\n")
	col := 1 + utf8.RuneCountInString(l.text[strings.LastIndexByte(l.text[:at], '\n')+1:at])
	return recovery.Problemf(recovery.ErrUsage, remedyWhere, "the where clause %s (line %d, column %d)",
		fmt.Sprintf(format, args...), line, col)
}
