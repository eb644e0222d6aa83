package recovery

import (
	"log/slog"
	"strings"
)

// Token is an MCAS API token. Every way of printing it (fmt verbs, slog,
// JSON) shows a redaction instead; only Reveal gives the secret, for the
// Authorization header.
type Token struct{ secret string }

// NewToken wraps a secret. White space around it (a token file's newline,
// a pasted space) is not part of it.
func NewToken(secret string) Token { return Token{secret: strings.TrimSpace(secret)} }

// Reveal returns the secret. Call it only to build the Authorization header.
func (t Token) Reveal() string { return t.secret }

// IsZero reports whether no token was given.
func (t Token) IsZero() bool { return t.secret == "" }

const redacted = "[REDACTED]"

func (t Token) String() string               { return redacted }
func (t Token) GoString() string             { return redacted }
func (t Token) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (t Token) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (t Token) MarshalText() ([]byte, error) { return []byte(redacted), nil }
