package recovery

import (
	"encoding/base64"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// Escape returns text that came from outside the tool (an API answer, a
// receiver's reply, a line of a file) fit for one line of a log or of a
// message: unchanged when every character of it prints, else quoted as a
// Go string ("…\n…\x1b…"), so that a newline cannot forge a log line and
// an escape sequence never reaches the terminal. Escaping escaped text
// changes nothing.
func Escape(text string) string {
	if utf8.ValidString(text) && strings.IndexFunc(text, notPrintable) < 0 {
		return text
	}
	return strconv.Quote(text)
}

func notPrintable(r rune) bool { return !strconv.IsPrint(r) }

// EscapeError returns err with its text escaped as Escape does; errors.Is
// and errors.As still find what err wraps.
func EscapeError(err error) error {
	var none *Redactor
	return none.ShowError(err)
}

// RedactedRun is the shortest run of a secret's characters that Redact
// hides: a message that shows a long piece of a token (a URL cut short, a
// token split over a line) shows too much of it.
const RedactedRun = 16

// A Redactor hides secrets in text before it is shown or stored: the API
// token, and whatever other secrets a way of authenticating adds (a client
// secret, the access tokens it obtains). It is safe for concurrent use; a
// nil *Redactor knows no secret.
type Redactor struct {
	mu      sync.RWMutex
	secrets map[string]bool  // each secret, ASCII letters in lower case
	runs    map[string]bool  // every run of RedactedRun characters of one
	short   map[int][]string // secrets shorter than RedactedRun, by length
}

// NewRedactor returns a Redactor that knows secrets (empty ones are
// ignored).
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	for _, s := range secrets {
		r.Add(s)
	}
	return r
}

// Add makes r hide secret from now on, and its encoded forms: a secret
// echoed back may come percent-encoded (in a URL: either letter case, +
// for a space), JSON-escaped (\u002b, \/) or in base64 (standard or URL
// alphabet, padded or not, at any offset of the encoded text). The first
// two are decoded in the text that Redact reads (encodedViews); base64
// cannot be, so its forms are secrets of their own (base64Forms). An empty
// secret is ignored.
func (r *Redactor) Add(secret string) {
	if secret == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	forms := append([]string{secret}, base64Forms(secret)...)
	if strings.Contains(secret, " ") {
		forms = append(forms, strings.ReplaceAll(secret, " ", "+")) // a form's space
	}
	for _, f := range forms {
		r.add(string(foldASCII(nil, f)))
	}
}

// add makes r hide folded, a secret or a form of one, with its letters in
// lower case. r.mu is held.
func (r *Redactor) add(folded string) {
	if r.secrets[folded] {
		return
	}
	if r.secrets == nil {
		r.secrets, r.runs, r.short = map[string]bool{}, map[string]bool{}, map[int][]string{}
	}
	r.secrets[folded] = true
	if len(folded) < RedactedRun {
		r.short[len(folded)] = append(r.short[len(folded)], folded)
		return
	}
	for i := 0; i+RedactedRun <= len(folded); i++ {
		r.runs[folded[i:i+RedactedRun]] = true
	}
}

// minBase64Form is the shortest base64 form of a secret that Add hides: a
// shorter one would hide text by chance.
const minBase64Form = 8

// base64Forms are the parts of secret's base64 encodings that are the same
// wherever the secret lies in the encoded text: for each of the three
// offsets it can start at within a group of three bytes, the characters
// that only its own bytes make, in the standard and the URL alphabet
// (padding is never among them, so padded and raw encodings share them).
func base64Forms(secret string) []string {
	var forms []string
	n := len(secret)
	for k := range 3 {
		data := append(make([]byte, k, k+n), secret...)
		first := (8*k + 5) / 6  // the first character of the secret's bits only
		last := 8 * (k + n) / 6 // and the end of the last one
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			s := enc.EncodeToString(data)
			if last-first >= minBase64Form {
				forms = append(forms, s[first:last])
			}
		}
	}
	return forms
}

// Redact returns text with every occurrence of a secret, in any letter
// case, and every run of RedactedRun or more of its characters, replaced
// by [REDACTED]; the same holds for the secret's encoded forms (Add), also
// where the text encodes them again (percent-encoding a JSON escape, say,
// up to maxDecodes times).
func (r *Redactor) Redact(text string) string {
	if r == nil {
		return text
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.secrets) == 0 {
		return text
	}
	var hide []bool // allocated at the first secret found
	for _, v := range encodedViews(text) {
		r.mark(v, func(from, to int) {
			if hide == nil {
				hide = make([]bool, len(text))
			}
			for i := from; i < to; i++ {
				hide[i] = true
			}
		})
	}
	if hide == nil {
		return text
	}
	var b strings.Builder
	for i := 0; i < len(text); {
		if !hide[i] {
			b.WriteByte(text[i])
			i++
			continue
		}
		b.WriteString(redacted)
		for i < len(text) && hide[i] {
			i++
		}
	}
	return b.String()
}

// mark calls hide with the bytes of the text behind v that show a secret
// (or a run of RedactedRun of its characters). r.mu is held.
func (r *Redactor) mark(v view, hide func(from, to int)) {
	folded := foldASCII(make([]byte, 0, len(v.text)), v.text)
	found := func(i, n int) { hide(v.from[i], v.to[i+n-1]) }
	// A run of the secret longer than RedactedRun is covered by the runs
	// of RedactedRun characters it is made of.
	for i := 0; i+RedactedRun <= len(folded); i++ {
		if r.runs[string(folded[i:i+RedactedRun])] {
			found(i, RedactedRun)
		}
	}
	for n, secrets := range r.short {
		for i := 0; i+n <= len(folded); i++ {
			for _, s := range secrets {
				if string(folded[i:i+n]) == s {
					found(i, n)
				}
			}
		}
	}
}

// view is a text as Redact reads it: the text itself, or the text with
// its escapes decoded. Byte i of text stands for bytes from[i] to to[i]
// (excluded) of the original.
type view struct {
	text     string
	from, to []int
}

// maxDecodes is how many layers of escapes Redact decodes: a secret
// percent-encoded twice (%252B), or JSON-escaped and then
// percent-encoded, is still found.
const maxDecodes = 3

// encodedViews are the views of text Redact looks for secrets in: text as
// it is, then with its percent-encoding and JSON escapes decoded, once and
// again while a decoding changes something.
func encodedViews(text string) []view {
	v := view{text: text, from: make([]int, len(text)), to: make([]int, len(text))}
	for i := range text {
		v.from[i], v.to[i] = i, i+1
	}
	views := []view{v}
	for range maxDecodes {
		d, changed := decodeEscapes(v)
		if !changed {
			break
		}
		views = append(views, d)
		v = d
	}
	return views
}

// decodeEscapes decodes one layer of %XX (either letter case) and of the
// JSON escapes (\uXXXX, surrogate pairs included, \/ and the others) in
// v; it reports whether there was any.
func decodeEscapes(v view) (view, bool) {
	s := v.text
	d := view{from: make([]int, 0, len(s)), to: make([]int, 0, len(s))}
	changed := false
	var b strings.Builder
	b.Grow(len(s))
	emit := func(bs []byte, from, to int) {
		for _, c := range bs {
			b.WriteByte(c)
			d.from, d.to = append(d.from, v.from[from]), append(d.to, v.to[to-1])
		}
	}
	for i := 0; i < len(s); {
		if dec, n := unescapeAt(s, i); n > 0 {
			emit(dec, i, i+n)
			i += n
			changed = true
			continue
		}
		emit([]byte{s[i]}, i, i+1)
		i++
	}
	d.text = b.String()
	return d, changed
}

// unescapeAt decodes the escape that begins at s[i], if one does: its
// bytes and its length in s (0: none).
func unescapeAt(s string, i int) ([]byte, int) {
	switch s[i] {
	case '%':
		if i+2 < len(s) {
			if hi, ok := unhex(s[i+1]); ok {
				if lo, ok := unhex(s[i+2]); ok {
					return []byte{hi<<4 | lo}, 3
				}
			}
		}
	case '\\':
		if i+1 >= len(s) {
			return nil, 0
		}
		switch c := s[i+1]; c {
		case '/', '\\', '"', '\'':
			return []byte{c}, 2
		case 'b':
			return []byte{'\b'}, 2
		case 'f':
			return []byte{'\f'}, 2
		case 'n':
			return []byte{'\n'}, 2
		case 'r':
			return []byte{'\r'}, 2
		case 't':
			return []byte{'\t'}, 2
		case 'u':
			if i+6 > len(s) {
				return nil, 0
			}
			r, ok := hex4([]byte(s[i+2 : i+6]))
			if !ok {
				return nil, 0
			}
			n := 6
			if utf16.IsSurrogate(r) {
				if i+12 <= len(s) && s[i+6] == '\\' && s[i+7] == 'u' {
					if lo, ok := hex4([]byte(s[i+8 : i+12])); ok {
						r, n = utf16.DecodeRune(r, lo), 12
					}
				}
			}
			return utf8.AppendRune(nil, r), n
		}
	}
	return nil, 0
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Show returns text from outside fit to show: redacted, then escaped
// (Escape).
func (r *Redactor) Show(text string) string { return Escape(r.Redact(text)) }

// ShowError returns err with its text as Show makes it; errors.Is and
// errors.As still find what err wraps.
func (r *Redactor) ShowError(err error) error {
	return &shownError{text: r.Show(err.Error()), err: err}
}

type shownError struct {
	text string
	err  error
}

func (e *shownError) Error() string { return e.text }
func (e *shownError) Unwrap() error { return e.err }

// Redacted returns text as Show makes it: the form the checkpoint stores.
func (r *Redactor) Redacted(text string) Redacted { return Redacted{text: r.Show(text)} }

// foldASCII appends s to dst with the ASCII letters in lower case and
// every other byte as it is: the result has the length of s, so a
// position in one is the same position in the other (unicode case
// mapping changes lengths).
func foldASCII(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// Redacted is text that passed a Redactor and Escape: the only kind of
// text the checkpoint stores as the last error, so that no writer of it
// can store a secret or a control character by forgetting to redact. The
// zero Redacted is no text.
type Redacted struct{ text string }

func (t Redacted) String() string { return t.text }

// IsZero reports whether t holds no text.
func (t Redacted) IsZero() bool { return t.text == "" }

// MarshalText stores the text as it is.
func (t Redacted) MarshalText() ([]byte, error) { return []byte(t.text), nil }

// UnmarshalText reads what a checkpoint stored; it escapes it again, which
// changes nothing in text that was stored redacted.
func (t *Redacted) UnmarshalText(b []byte) error {
	t.text = Escape(string(b))
	return nil
}
