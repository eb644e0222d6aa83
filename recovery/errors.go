package recovery

import (
	"errors"
	"fmt"
	"strings"
)

// The kinds of failure the operator must tell apart. Each maps to one exit
// code of the command (SPEC §3); test for them with errors.Is.
var (
	// ErrUsage: a bad flag, an unreadable or invalid alert, filter or
	// export, a window whose end is not after its start.
	ErrUsage = errors.New("usage error")
	// ErrInvalidToken: the token is missing or malformed, or the API
	// answered 401/403.
	ErrInvalidToken = errors.New("invalid token")
	// ErrInvalidProxy: the proxy address does not parse or nothing answers
	// there.
	ErrInvalidProxy = errors.New("invalid proxy")
	// ErrTooManyCriticalErrors: too many consecutive API requests failed.
	ErrTooManyCriticalErrors = errors.New("too many critical errors")
	// ErrCheckpointUnavailable: the checkpoint is locked by another run,
	// corrupt, or belongs to another window, source or filter.
	ErrCheckpointUnavailable = errors.New("checkpoint unavailable")
	// ErrStopped: the run stopped before the end date (--max-duration,
	// SIGINT, SIGTERM) with its progress saved.
	ErrStopped = errors.New("stopped before the end date")
	// ErrInternal: an unexpected fault after the run started, such as an
	// answer the API should never give (the MCAS agent's "Internal error"
	// notification). The SPEC gives it exit 1, as a failure while starting.
	ErrInternal = errors.New("internal error")
	// ErrSink: the syslog receiver cannot be reached (found by check's
	// probe), or refuses our TLS setup (a run does not retry that): the
	// MCAS "Data server connection error". The SPEC gives it no code of its
	// own: it exits as a general error.
	ErrSink = errors.New("data server connection error")
)

// ErrBadRequest marks an API's 400 answer: it refused the request itself,
// which no retry mends; in practice the filter, the one part of a request
// the operator wrote (check reports it on the filter's line).
var ErrBadRequest = errors.New("400 Bad Request")

// Error is a failure explained for the operator: its kind (one of the
// sentinels above), what was wrong, and what to do about it. The command
// prints it as "Name: Detail; Remedy".
type Error struct {
	Kind   error  // one of the Err* sentinels of this package
	Detail string // what was wrong, naming the file, address or value
	Remedy string // what the operator should do; may be empty
	Err    error  // the underlying cause, if any
}

// Problemf returns an *Error of the given kind whose Detail is formatted
// like fmt.Errorf; an error passed with %w becomes its cause.
func Problemf(kind error, remedy, format string, args ...any) *Error {
	detail := fmt.Errorf(format, args...)
	return &Error{Kind: kind, Detail: detail.Error(), Remedy: remedy, Err: errors.Unwrap(detail)}
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Detail)
	if e.Remedy != "" {
		b.WriteString("; ")
		b.WriteString(e.Remedy)
	}
	return b.String()
}

// Unwrap lets errors.Is find both the kind and the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}
