package recovery

import (
	"strconv"
	"strings"
	"sync"
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

// Add makes r hide secret from now on. An empty secret is ignored.
func (r *Redactor) Add(secret string) {
	if secret == "" {
		return
	}
	folded := string(foldASCII(nil, secret))
	r.mu.Lock()
	defer r.mu.Unlock()
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

// Redact returns text with every occurrence of a secret, in any letter
// case, and every run of RedactedRun or more of its characters, replaced
// by [REDACTED].
func (r *Redactor) Redact(text string) string {
	if r == nil {
		return text
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.secrets) == 0 {
		return text
	}
	folded := foldASCII(make([]byte, 0, len(text)), text)
	var hide []bool // allocated at the first secret found
	mark := func(from, n int) {
		if hide == nil {
			hide = make([]bool, len(text))
		}
		for i := from; i < from+n; i++ {
			hide[i] = true
		}
	}
	// A run of the secret longer than RedactedRun is covered by the runs
	// of RedactedRun characters it is made of.
	for i := 0; i+RedactedRun <= len(folded); i++ {
		if r.runs[string(folded[i:i+RedactedRun])] {
			mark(i, RedactedRun)
		}
	}
	for n, secrets := range r.short {
		for i := 0; i+n <= len(folded); i++ {
			for _, s := range secrets {
				if string(folded[i:i+n]) == s {
					mark(i, n)
				}
			}
		}
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
