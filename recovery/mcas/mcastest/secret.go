package mcastest

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"

	"siem-recovery/recovery"
)

// ShowsSecret reports whether text shows secret: the whole of it, or any
// run of recovery.RedactedRun of its characters, in any letter case, as it
// is or in an encoded form a server may echo it in (percent-encoded as a
// query or a path, every character but letters and digits as a JSON
// \uXXXX escape, / as \/, or base64 in either alphabet at any offset). at
// is where in text (lower-cased) the first such run begins. Tests use it to
// prove a token reaches no output, without printing it.
func ShowsSecret(text, secret string) (at int, shown bool) {
	text = strings.ToLower(text)
	for _, form := range encodedForms(secret) {
		form = strings.ToLower(form)
		n := min(recovery.RedactedRun, len(form))
		if n == 0 {
			continue
		}
		for i := 0; i+n <= len(form); i++ {
			if at := strings.Index(text, form[i:i+n]); at >= 0 {
				return at, true
			}
		}
	}
	return 0, false
}

// encodedForms are secret and the forms ShowsSecret looks for it in. Those
// of base64 are the characters made of the secret's bits alone, for each
// of the three offsets it can start at.
func encodedForms(secret string) []string {
	if secret == "" {
		return nil
	}
	var escaped strings.Builder
	for _, r := range secret {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			escaped.WriteRune(r)
		} else {
			fmt.Fprintf(&escaped, `\u%04x`, r)
		}
	}
	forms := []string{secret, url.QueryEscape(secret), url.PathEscape(secret), escaped.String(), strings.ReplaceAll(secret, "/", `\/`)}
	for k := range 3 {
		data := append(make([]byte, k), secret...)
		first, last := (8*k+5)/6, 8*len(data)/6
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			if s := enc.EncodeToString(data); last > first {
				forms = append(forms, s[first:last])
			}
		}
	}
	return forms
}
