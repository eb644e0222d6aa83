package recovery

import "strings"

// RedactURL returns a URL (which may not parse) fit for a message: its
// user information and any query or fragment, where a token may have been
// pasted, are shown as xxxxx.
func RedactURL(raw string) string {
	s := raw
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i+1] + "xxxxx"
	}
	authority := strings.Index(s, "://") + 1 // 0 without a scheme
	if authority > 0 {
		authority += 2
	}
	end := len(s)
	if i := strings.IndexByte(s[authority:], '/'); i >= 0 {
		end = authority + i
	}
	if at := strings.LastIndexByte(s[authority:end], '@'); at >= 0 {
		s = s[:authority] + "xxxxx" + s[authority+at:]
	}
	return s
}
