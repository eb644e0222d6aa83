package mcastest

import (
	"strings"

	"siem-recovery/recovery"
)

// ShowsSecret reports whether text shows secret: the whole of it, or any
// run of recovery.RedactedRun of its characters, in any letter case. at is
// where in text (lower-cased) the first such run begins. Tests use it to
// prove a token reaches no output, without printing it.
func ShowsSecret(text, secret string) (at int, shown bool) {
	text, secret = strings.ToLower(text), strings.ToLower(secret)
	n := min(recovery.RedactedRun, len(secret))
	if n == 0 {
		return 0, false
	}
	for i := 0; i+n <= len(secret); i++ {
		if at := strings.Index(text, secret[i:i+n]); at >= 0 {
			return at, true
		}
	}
	return 0, false
}
