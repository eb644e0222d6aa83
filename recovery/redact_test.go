package recovery

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":                                      "",
		`the API answered 418 (I'm a "teapot")`: `the API answered 418 (I'm a "teapot")`,
		"Größe: 5 €, 東京":                        "Größe: 5 €, 東京",
		"teapot\nlevel=INFO msg=completed":      `"teapot\nlevel=INFO msg=completed"`,
		"red \x1b[31mtext\x1b[0m":               `"red \x1b[31mtext\x1b[0m"`,
		"tab\there, bell\a, cr\r":               `"tab\there, bell\a, cr\r"`,
		"bidi \u202egnp.exe":                    `"bidi \u202egnp.exe"`,
		"line\u2028separator":                   `"line\u2028separator"`,
		"bad \xff byte":                         `"bad \xff byte"`,
		"c1 \u009b2J":                           `"c1 \u009b2J"`,
	} {
		got := Escape(in)
		if got != want {
			t.Errorf("Escape(%q) = %s, want %s", in, got, want)
		}
		if again := Escape(got); again != got {
			t.Errorf("Escape(Escape(%q)) = %s, want it unchanged", in, again)
		}
	}
}

func TestRedact(t *testing.T) {
	const token = "Abc123-legacy-token-0123456789-XYZ.more_chars=+end"
	r := NewRedactor(token, "", "pw-short")
	for _, tc := range []struct{ in, want string }{
		{"no secret here", "no secret here"},
		{"Token " + token, "Token [REDACTED]"},
		{"upper " + strings.ToUpper(token) + "!", "upper [REDACTED]!"},
		{"lower " + strings.ToLower(token), "lower [REDACTED]"},
		// Any 16 characters of it; 15 are shown.
		{"piece " + token[10:26] + " end", "piece [REDACTED] end"},
		{"short " + token[10:25] + " end", "short " + token[10:25] + " end"},
		// Pieces side by side, and one cut by a newline.
		{token[:20] + token[30:], "[REDACTED]"},
		{token[:25] + "\n" + token[25:], "[REDACTED]\n[REDACTED]"},
		{"loc=https://x/?t=" + token + "&p=pw-short", "loc=https://x/?t=[REDACTED]&p=[REDACTED]"},
		{"PW-SHORT", "[REDACTED]"},
		{"Größe " + token + " 東京", "Größe [REDACTED] 東京"},
	} {
		if got := r.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	var none *Redactor
	if got := none.Redact("Token " + token); got != "Token "+token {
		t.Errorf("a nil Redactor changed the text: %q", got)
	}
	if got := NewRedactor().Redacted("x\ny").String(); got != `"x\ny"` {
		t.Errorf("Redacted without secrets = %s, want the text escaped", got)
	}
}

// jsonEscapeAll writes every character of s but letters and digits as a
// JSON \u escape, in upper-case hexadecimal: what an encoder that escapes
// more than it must (.NET's escapes +) sends.
func jsonEscapeAll(s string) string {
	var b strings.Builder
	for _, r := range s {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, "\\u%04X", r)
	}
	return b.String()
}

// lowerHex is s with the hexadecimal digits of its %XX escapes in lower
// case, as some encoders write them.
func lowerHex(s string) string {
	return regexp.MustCompile(`%[0-9A-F]{2}`).ReplaceAllStringFunc(s, strings.ToLower)
}

func TestRedactEncodedForms(t *testing.T) {
	// A legacy token may hold + = . and a client secret ~ and /; a
	// secret echoed by a server comes back in whatever encoding it uses.
	const secret = "Ab+cd=ef.gh/ij~kl_mn-op+qr=st.uv/wx~yz+0123456789=="
	const spaced = "a client secret with spaces and+plus/slash 0123"
	r := NewRedactor(secret, spaced)
	var everyByte strings.Builder
	for _, c := range []byte(secret) {
		fmt.Fprintf(&everyByte, "%%%02x", c)
	}
	for name, encoded := range map[string]string{
		"query escape":                  url.QueryEscape(secret),
		"query escape, lower-case hex":  lowerHex(url.QueryEscape(secret)),
		"path escape":                   url.PathEscape(secret),
		"path escape, lower-case hex":   lowerHex(url.PathEscape(secret)),
		"every byte escaped":            everyByte.String(),
		"escaped twice":                 url.QueryEscape(url.QueryEscape(secret)),
		"space as +":                    url.QueryEscape(spaced),
		"space as %20":                  url.PathEscape(spaced),
		`JSON \u escapes`:               jsonEscapeAll(secret),
		`JSON \/`:                       strings.ReplaceAll(secret, "/", `\/`),
		"JSON escapes, percent-encoded": url.QueryEscape(jsonEscapeAll(secret)),
	} {
		text := "Location: https://login.example/?t=" + encoded + "&next=1"
		if got, want := r.Redact(text), "Location: https://login.example/?t=[REDACTED]&next=1"; got != want {
			t.Errorf("%s: Redact(%q)\n= %q\nwant %q", name, text, got, want)
		}
	}
	// A piece of 16 characters, encoded, is hidden too.
	for _, piece := range []string{url.QueryEscape(secret[2:18]), jsonEscapeAll(secret[2:18]), lowerHex(url.PathEscape(secret[8:24]))} {
		if got := r.Redact("x " + piece + " y"); got != "x [REDACTED] y" {
			t.Errorf("a piece: Redact(%q) = %q", piece, got)
		}
	}

	// base64, at each offset in the encoded text: the characters the
	// secret shares with its neighbours (at most 3 a side) may show, none
	// made of the secret's bits alone.
	shown := regexp.MustCompile(`^t=[A-Za-z0-9+/_=-]{0,3}\[REDACTED\][A-Za-z0-9+/_=-]{0,3}={0,2};$`)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		for _, prefix := range []string{"", "u", "us", "user:", "Bearer "} {
			for _, s := range []string{secret, spaced} {
				encoded := enc.EncodeToString([]byte(prefix + s))
				text := "t=" + encoded[len(prefix)*4/3:] + ";"
				if got := r.Redact(text); !shown.MatchString(got) {
					t.Errorf("base64 of %q+secret: Redact(%q) = %q", prefix, text, got)
				}
			}
		}
	}

	// Text with escapes but no secret is left as it is.
	for _, text := range []string{`50%25 done, %zz, \u00e9t\u00e9 \ud83d\ude00 \`, url.QueryEscape("no secret/here+there"), "aGVsbG8gd29ybGQ="} {
		if got := r.Redact(text); got != text {
			t.Errorf("Redact(%q) = %q, want it unchanged", text, got)
		}
	}
}

func TestRedactorTakesSecretsWhileInUse(t *testing.T) {
	r := NewRedactor()
	secrets := []string{"first-secret-of-the-run-0001", "access-token-renewed-0002", "access-token-renewed-0003"}
	var wg sync.WaitGroup
	for _, s := range secrets {
		wg.Go(func() { r.Add(s) })
		wg.Go(func() { r.Redact("text with " + s) })
	}
	wg.Wait()
	for _, s := range secrets {
		if got := r.Redact("<" + s + ">"); got != "<[REDACTED]>" {
			t.Errorf("Redact after Add(%q) = %q", s, got)
		}
	}
}

func TestLastErrorIsStoredRedacted(t *testing.T) {
	const token = "stored-token-0123456789-abcdefghijklmnop"
	st := State{LastError: NewRedactor(token).Redacted("redirect to https://x/?t=" + token + "\nlevel=INFO msg=completed")}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToLower(string(data)), token[:16]) {
		t.Fatalf("the token is in the stored state: %s", data)
	}
	var back State
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	want := `"redirect to https://x/?t=[REDACTED]\nlevel=INFO msg=completed"`
	if back.LastError.String() != want || back.LastError != st.LastError {
		t.Errorf("last error read back %s, want %s", back.LastError, want)
	}
	// No last error: no key, as before.
	if data, _ := json.Marshal(State{}); strings.Contains(string(data), "last_error") {
		t.Errorf("an empty last error is stored: %s", data)
	}
}

func TestEscapeErrorKeepsTheChain(t *testing.T) {
	cause := errors.New("line\nlevel=INFO msg=completed")
	err := fmt.Errorf("read: %w", cause)
	shown := EscapeError(err)
	if shown.Error() != `"read: line\nlevel=INFO msg=completed"` || !errors.Is(shown, cause) {
		t.Errorf("EscapeError = %q (is cause: %v)", shown, errors.Is(shown, cause))
	}
	if got := NewRedactor("a-secret-of-the-run-000").ShowError(errors.New("x a-secret-of-the-run-000")).Error(); got != "x [REDACTED]" {
		t.Errorf("ShowError = %q", got)
	}
}

func TestCursorShowsNoAPIText(t *testing.T) {
	// nextQueryFilters is the API's JSON, which may hold raw newlines
	// between its tokens: none of it is shown (status --json keeps it
	// raw; people get the time reached, Pass.Position).
	c := Cursor{Token: json.RawMessage("{\"next_filters\":{\"a\":\n\"level=INFO msg=completed\"}}")}
	if got, want := c.String(), "past the start of the window"; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
}
