package recovery

import (
	"bytes"
	"fmt"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"siem-recovery/internal/swar"
)

// The activity decoder is a single-pass JSON scanner: it checks the whole
// object against RFC 8259 and notes where the dozen fields the CEF mapping
// needs are, without building a tree of the rest. Decoding is most of a
// recovery's CPU, and an activity is mostly fields the tool passes over.

// kind is the type of a JSON value, told by its first byte.
type kind uint8

const (
	kindAbsent kind = iota
	kindString
	kindNumber
	kindObject
	kindArray
	kindTrue
	kindFalse
	kindNull
)

func (k kind) String() string {
	return [...]string{"nothing", "string", "number", "object", "array", "true", "false", "null"}[k]
}

// span is where a value lies in the scanned text: text[from:to]. For a
// string it is the bytes between the quotes, still escaped when escaped is
// set.
type span struct {
	kind     kind
	escaped  bool
	from, to int
}

// maxDepth bounds the nesting the scanner follows; an activity nests a
// handful of levels, and a deeper line is refused rather than allowed to
// exhaust the stack.
const maxDepth = 512

// scanner reads JSON text from text[pos:].
type scanner struct {
	text  []byte
	pos   int
	depth int
	key   span  // the member name enter or nextMember read
	err   error // what enter, nextMember or nextItem found wrong
}

// syntaxError says what was wrong and where: byte is 1-based, as an
// operator counts in an editor.
type syntaxError struct {
	msg  string
	byte int
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at byte %d", e.msg, e.byte) }

func (s *scanner) fail(msg string) error { return &syntaxError{msg: msg, byte: s.pos + 1} }

// unexpected is the error for the byte at pos, or for the end of the text.
func (s *scanner) unexpected(want string) error {
	if s.pos >= len(s.text) {
		return s.fail("the line ends where " + want + " should be")
	}
	return s.fail(fmt.Sprintf("%s where %s should be", strconv.QuoteRune(rune(s.text[s.pos])), want))
}

func (s *scanner) skipSpace() { s.pos = spaceEnd(s.text, s.pos) }

// spaceEnd is where the white space at text[i:] ends.
func spaceEnd(text []byte, i int) int {
	for i < len(text) && text[i] <= ' ' && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r') {
		i++
	}
	return i
}

// value scans the value at pos (no space before it) and returns its span.
func (s *scanner) value() (span, error) {
	if s.pos >= len(s.text) {
		return span{}, s.unexpected("a value")
	}
	switch c := s.text[s.pos]; c {
	case '"':
		return s.string()
	case '{', '[':
		from := s.pos
		if err := s.container(); err != nil {
			return span{}, err
		}
		k := kindObject
		if c == '[' {
			k = kindArray
		}
		return span{kind: k, from: from, to: s.pos}, nil
	case 't':
		return s.literal("true", kindTrue)
	case 'f':
		return s.literal("false", kindFalse)
	case 'n':
		return s.literal("null", kindNull)
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return s.number()
		}
		return span{}, s.unexpected("a value")
	}
}

// container scans the object or array at pos, whatever it holds. It is
// the scanner's hot loop: most of an activity is values nobody reads, so
// they are checked here in one function, with the position in a local and
// the open brackets in a bit stack, instead of a call per token. When the
// text is not valid, the scanner's methods are run from the place the loop
// stopped at to say why.
func (s *scanner) container() error {
	var objects [maxDepth / 64]uint64 // bit d is set when level d is an object
	text, i := s.text, s.pos
	d := 0 // the levels open in this call
	for {
		// i is at a value.
		if i >= len(text) {
			s.pos = i
			return s.unexpected("a value")
		}
		switch c := text[i]; c {
		case '"':
			end, _, _ := stringEnd(text, i)
			if end < 0 {
				s.pos = i
				_, err := s.string()
				return err
			}
			i = end
		case '{', '[':
			if s.depth+d >= maxDepth {
				s.pos = i
				return s.fail(fmt.Sprintf("nested deeper than %d levels", maxDepth))
			}
			if i = spaceEnd(text, i+1); i < len(text) && text[i] == c+2 { // '}' or ']': empty
				i++
				break
			}
			objects[d/64] &^= 1 << (d % 64)
			d++
			if c == '[' {
				continue
			}
			objects[(d-1)/64] |= 1 << ((d - 1) % 64)
			from := i
			if i = keyEnd(text, i); i < 0 {
				return s.keyError(from)
			}
			continue
		default:
			s.pos = i
			if _, err := s.value(); err != nil {
				return err
			}
			i = s.pos
		}
		// A value ended: read what follows it, closing the levels that end
		// here.
		for {
			if d == 0 {
				s.pos = i
				return nil
			}
			object := objects[(d-1)/64]>>((d-1)%64)&1 != 0
			end := byte(']')
			if object {
				end = '}'
			}
			if i = spaceEnd(text, i); i < len(text) && text[i] == end {
				i++
				d--
				continue
			}
			if i >= len(text) || text[i] != ',' {
				s.pos = i
				return s.unexpected(`"," or "` + string(end) + `"`)
			}
			if i = spaceEnd(text, i+1); object {
				from := i
				if i = keyEnd(text, i); i < 0 {
					return s.keyError(from)
				}
			}
			break
		}
	}
}

// keyEnd is where the member name at text[i:], its ':' and the space
// after it end: where the member's value starts. It is -1 when they are
// not valid; readKey says why.
func keyEnd(text []byte, i int) int {
	if i >= len(text) || text[i] != '"' {
		return -1
	}
	if i, _, _ = stringEnd(text, i); i < 0 {
		return -1
	}
	if i = spaceEnd(text, i); i >= len(text) || text[i] != ':' {
		return -1
	}
	return spaceEnd(text, i+1)
}

// keyError is why keyEnd refused the member name at text[from:].
func (s *scanner) keyError(from int) error {
	if s.pos = from; s.readKey() {
		return s.fail("a member name that is not valid") // readKey should have said why
	}
	return s.err
}

// The members of an object, or the items of an array, are read in a loop
// that scans each value itself, without a callback (a closure per object
// would allocate):
//
//	for more := s.enter(); more; more = s.nextMember() {
//		// s.key is the member's name; pos is at its value
//	}
//	if s.err != nil { ... }
//
// enter reads the opening bracket; nextMember and nextItem read what
// follows a value. They return false at the closing bracket, or with
// s.err set.

// enter reads the '{' or '[' at pos and tells whether a member or item
// follows; for an object, it reads the first key.
func (s *scanner) enter() bool {
	open := s.text[s.pos]
	if s.depth++; s.depth > maxDepth {
		s.err = s.fail(fmt.Sprintf("nested deeper than %d levels", maxDepth))
		return false
	}
	s.pos++
	s.skipSpace()
	if s.pos < len(s.text) && s.text[s.pos] == open+2 { // '}' or ']'
		s.pos++
		s.depth--
		return false
	}
	if open == '{' {
		return s.readKey()
	}
	return true
}

// nextMember reads ',' and the next key, or the closing '}'.
func (s *scanner) nextMember() bool { return s.next('}') && s.readKey() }

// nextItem reads ',' or the closing ']'.
func (s *scanner) nextItem() bool { return s.next(']') }

func (s *scanner) next(end byte) bool {
	s.skipSpace()
	if s.pos < len(s.text) {
		switch s.text[s.pos] {
		case ',':
			s.pos++
			s.skipSpace()
			return true
		case end:
			s.pos++
			s.depth--
			return false
		}
	}
	s.err = s.unexpected(`"," or "` + string(end) + `"`)
	return false
}

// readKey reads a member name and its ':' into s.key, leaving pos at the
// value.
func (s *scanner) readKey() bool {
	if s.pos >= len(s.text) || s.text[s.pos] != '"' {
		s.err = s.unexpected("a member name")
		return false
	}
	if s.key, s.err = s.string(); s.err != nil {
		return false
	}
	s.skipSpace()
	if s.pos >= len(s.text) || s.text[s.pos] != ':' {
		s.err = s.unexpected(`":" after a member name`)
		return false
	}
	s.pos++
	s.skipSpace()
	return true
}

// stringStop marks the bytes that end a run of plain string content: the
// closing quote, an escape, and the control characters JSON forbids raw.
var stringStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// stringEnd is where the string whose quote is at text[i] ends, past its
// closing quote, and whether it holds an escape. When the string is not
// valid, end is -1 and stop is the byte at fault (or len(text)): string
// says what is wrong there.
func stringEnd(text []byte, i int) (end, stop int, escaped bool) {
	i++
	for {
		// Sixteen bytes at a time, as two words, while none of them ends
		// a run of plain content; then the first that does. Most strings
		// of an activity end within the first sixteen bytes, so the loop
		// is mostly left at once, and without a branch on which word.
		for ; i+16 <= len(text); i += 16 {
			s1 := stops(swar.Load(text, i))
			s2 := stops(swar.Load(text, i+8))
			if s1|s2 != 0 {
				n := bits.TrailingZeros64(s1) / 8 // 8 when s1 is 0
				if s1 == 0 {
					n += bits.TrailingZeros64(s2) / 8
				}
				i += n
				goto stop
			}
		}
		for i < len(text) && !stringStop[text[i]] {
			i++
		}
	stop:
		if i >= len(text) {
			return -1, i, escaped
		}
		switch text[i] {
		case '"':
			return i + 1, i, escaped
		case '\\':
			n, err := escapeLen(text[i:])
			if err != nil {
				return -1, i, true
			}
			escaped = true
			i += n
		default:
			return -1, i, escaped
		}
	}
}

// stops marks the bytes of w that end a run of plain string content: a
// control character, a quote or a backslash (see package swar: only the
// lowest mark is exact).
func stops(w uint64) uint64 {
	return swar.Below(w, 0x20) | swar.Equal(w, '"') | swar.Equal(w, '\\')
}

// string scans the string at pos.
func (s *scanner) string() (span, error) {
	end, stop, escaped := stringEnd(s.text, s.pos)
	if end >= 0 {
		v := span{kind: kindString, escaped: escaped, from: s.pos + 1, to: end - 1}
		s.pos = end
		return v, nil
	}
	s.pos = stop
	switch {
	case stop >= len(s.text):
		return span{}, s.fail("the line ends inside a string")
	case s.text[stop] == '\\':
		_, err := escapeLen(s.text[stop:])
		return span{}, s.fail(err.Error())
	}
	return span{}, s.fail(fmt.Sprintf("control character %#02x inside a string (JSON needs it escaped)", s.text[stop]))
}

// escapeLen is the length of the escape sequence esc starts with.
func escapeLen(esc []byte) (int, error) {
	if len(esc) < 2 {
		return 0, fmt.Errorf("the line ends inside an escape")
	}
	switch esc[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, nil
	case 'u':
		if len(esc) < 6 {
			return 0, fmt.Errorf("the line ends inside a \\u escape")
		}
		if _, ok := hex4(esc[2:6]); !ok {
			return 0, fmt.Errorf("invalid \\u escape %q", esc[:6])
		}
		return 6, nil
	}
	return 0, fmt.Errorf("invalid escape %q", esc[:2])
}

func hex4(h []byte) (rune, bool) {
	var r rune
	for _, c := range h[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func (s *scanner) number() (span, error) {
	text, i := s.text, s.pos
	v := span{kind: kindNumber, from: i}
	digits := func() bool {
		from := i
		for i < len(text) && text[i] >= '0' && text[i] <= '9' {
			i++
		}
		return i > from
	}
	if text[i] == '-' {
		i++
	}
	switch {
	case i < len(text) && text[i] == '0':
		i++
	case !digits():
		s.pos = i
		return span{}, s.unexpected("a digit")
	}
	if i < len(text) && text[i] == '.' {
		i++
		if !digits() {
			s.pos = i
			return span{}, s.unexpected("a digit after the decimal point")
		}
	}
	if i < len(text) && (text[i] == 'e' || text[i] == 'E') {
		i++
		if i < len(text) && (text[i] == '+' || text[i] == '-') {
			i++
		}
		if !digits() {
			s.pos = i
			return span{}, s.unexpected("a digit of the exponent")
		}
	}
	s.pos, v.to = i, i
	return v, nil
}

func (s *scanner) literal(word string, k kind) (span, error) {
	if len(s.text)-s.pos < len(word) || string(s.text[s.pos:s.pos+len(word)]) != word {
		return span{}, s.unexpected("a value")
	}
	v := span{kind: k, from: s.pos, to: s.pos + len(word)}
	s.pos = v.to
	return v, nil
}

// appendString appends the string at v, unescaped. A \u escape that is
// not a valid UTF-16 code point becomes U+FFFD, as encoding/json decodes
// it.
func appendString(dst, text []byte, v span) []byte {
	raw := text[v.from:v.to]
	if !v.escaped {
		return append(dst, raw...)
	}
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\\')
		if i < 0 {
			return append(dst, raw...)
		}
		dst = append(dst, raw[:i]...)
		raw = raw[i:]
		switch c := raw[1]; c {
		case 'u':
			r, _ := hex4(raw[2:6])
			raw = raw[6:]
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if len(raw) >= 6 && raw[0] == '\\' && raw[1] == 'u' {
					r2, _ = hex4(raw[2:6])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					raw = raw[6:]
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		default: // '"', '\\', '/'
			dst = append(dst, c)
		}
		raw = raw[2:]
	}
	return dst
}

// appendCompact appends the JSON text at v without the spaces between its
// tokens.
func appendCompact(dst, text []byte, v span) []byte {
	raw := text[v.from:v.to]
	if v.kind == kindString {
		raw = text[v.from-1 : v.to+1]
	}
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case inString && c == '\\':
			dst = append(dst, c)
			i++
			c = raw[i]
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			continue
		}
		dst = append(dst, c)
	}
	return dst
}
