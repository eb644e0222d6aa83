package graph

import (
	"bytes"
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Rows and records are read as spans of their text, not decoded into
// maps: a row is mostly columns the tool passes through untouched
// (RawEventData, AdditionalFields, …), and a page holds thousands. The
// functions here expect valid JSON (the answer's decoder, or json.Valid,
// checked it) and only find where members and values lie.

// members calls fn with the key (its JSON text, quotes included) and the
// value (its JSON text) of each member of the object obj, in order, until
// fn returns false. It reports false when obj is not an object.
func members(obj []byte, fn func(key, value []byte) bool) bool {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return false
	}
	i = skipSpace(obj, i+1)
	for i < len(obj) && obj[i] != '}' {
		keyEnd := skipString(obj, i)
		key := obj[i:keyEnd]
		i = skipSpace(obj, keyEnd)
		i = skipSpace(obj, i+1) // the colon
		end := skipJSON(obj, i)
		if !fn(key, obj[i:end]) {
			return true
		}
		i = skipSpace(obj, end)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return true
}

// items calls fn with the JSON text of each item of the array arr, in
// order, until fn returns false.
func items(arr []byte, fn func(item []byte) bool) {
	i := skipSpace(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return
	}
	i = skipSpace(arr, i+1)
	for i < len(arr) && arr[i] != ']' {
		end := skipJSON(arr, i)
		if !fn(arr[i:end]) {
			return
		}
		i = skipSpace(arr, end)
		if i < len(arr) && arr[i] == ',' {
			i = skipSpace(arr, i+1)
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipString returns the end of the string whose opening quote is at i:
// after the first quote not escaped, that is not preceded by an odd run of
// backslashes. It jumps from quote to quote (bytes.IndexByte), which is
// what makes rows of long strings quick to pass over.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return len(b)
		}
		i += q
		escapes := 0
		for k := i - 1; k >= 0 && b[k] == '\\'; k-- {
			escapes++
		}
		if escapes%2 == 0 {
			return i + 1
		}
	}
	return len(b)
}

// skipJSON returns the end of the value that starts at i.
func skipJSON(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for i < len(b) && bytes.IndexByte([]byte(",}] \t\r\n"), b[i]) < 0 {
		i++
	}
	return i
}

// keyName is a member's name from its key's JSON text.
func keyName(key []byte) string {
	s, _ := stringValue(key)
	return s
}

var errNotString = errors.New("not a JSON string")

// stringValue is the text of a JSON string value; an error for any other
// value.
func stringValue(v []byte) (string, error) {
	b, err := unquote(v)
	return string(b), err
}

// unquote is the text of a JSON string value, unescaped; an error for any
// other value. Text without escapes is v's own bytes.
func unquote(v []byte) ([]byte, error) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return nil, errNotString
	}
	in := v[1 : len(v)-1]
	first := bytes.IndexByte(in, '\\')
	if first < 0 {
		return in, nil
	}
	out := make([]byte, 0, len(in))
	for {
		out = append(out, in[:first]...)
		in = in[first:]
		if len(in) < 2 {
			return nil, errNotString
		}
		n := 2 // the escape's length
		switch c := in[1]; c {
		case '"', '\\', '/':
			out = append(out, c)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			var r rune
			if r, n = unicodeEscape(in); n == 0 {
				return nil, errNotString
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, errNotString
		}
		in = in[n:]
		first = bytes.IndexByte(in, '\\')
		if first < 0 {
			return append(out, in...), nil
		}
	}
}

// unicodeEscape reads \uXXXX at the start of in, and the low surrogate
// \uXXXX after a high one: the rune and the bytes read (0: not an escape).
func unicodeEscape(in []byte) (rune, int) {
	hex := func(b []byte) (rune, bool) {
		if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(b[2:6]), 16, 16)
		return rune(n), err == nil
	}
	r, ok := hex(in)
	if !ok {
		return 0, 0
	}
	if utf16.IsSurrogate(r) {
		if low, ok := hex(in[6:]); ok {
			if pair := utf16.DecodeRune(r, low); pair != utf8.RuneError {
				return pair, 12
			}
		}
		return utf8.RuneError, 6
	}
	return r, 6
}
