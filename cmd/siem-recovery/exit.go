package main

import (
	"errors"

	"siem-recovery/recovery"
)

// The exit codes of SPEC §3. Scripts and cron rely on them: never renumber.
const (
	exitCompleted          = 0
	exitGeneral            = 1
	exitUsage              = 2
	exitInvalidToken       = 3
	exitInvalidProxy       = 4
	exitTooManyCritical    = 5
	exitCheckpointUnusable = 6
	exitStopped            = 75
	// exitMissing is verify's "the SIEM lacks activities"; not an error of
	// the tool, so it has its own code.
	exitMissing = 10
)

// exitCode maps an error to its exit code and the name printed before it.
// It is the only place that does.
func exitCode(err error) (int, string) {
	var as *stoppedAs
	if errors.As(err, &as) {
		return as.code, "Stopped before the end date"
	}
	switch {
	case err == nil:
		return exitCompleted, "Completed"
	case errors.Is(err, recovery.ErrUsage):
		return exitUsage, "Usage error"
	case errors.Is(err, recovery.ErrInvalidToken):
		return exitInvalidToken, "Invalid token"
	case errors.Is(err, recovery.ErrInvalidProxy):
		return exitInvalidProxy, "Invalid proxy"
	case errors.Is(err, recovery.ErrTooManyCriticalErrors):
		return exitTooManyCritical, "Too many critical errors"
	case errors.Is(err, recovery.ErrCheckpointUnavailable):
		return exitCheckpointUnusable, "Checkpoint unavailable"
	case errors.Is(err, recovery.ErrStopped):
		return exitStopped, "Stopped before the end date"
	case errors.Is(err, recovery.ErrInternal):
		// After the start, the agent's notification name; the SPEC keeps
		// the general error's code.
		return exitGeneral, "Internal error"
	case errors.Is(err, recovery.ErrSink):
		// The MCAS agent's name for it; SPEC §3 gives it no code of its own.
		return exitGeneral, "Data server connection error"
	}
	var missing *missingError
	if errors.As(err, &missing) {
		return exitMissing, "Activities missing"
	}
	var at *atCheckpoint
	if errors.As(err, &at) {
		// Once its checkpoint is open the run has started: an unexpected
		// failure then (a sink file that cannot be written) is the agent's
		// Internal error, not one of bootstrap.
		return exitGeneral, "Internal error"
	}
	return exitGeneral, "General error during bootstrap"
}

// explain returns what to print after the error's name: the detail and
// remedy of the operator-facing error, without the wrapping context the
// code added on the way up.
func explain(err error) string {
	text := err.Error()
	var e *recovery.Error
	if errors.As(err, &e) {
		text = e.Error()
	} else if code, _ := exitCode(err); code == exitGeneral {
		text += "; " + generalRemedy
	}
	var at *atCheckpoint
	if errors.As(err, &at) {
		text += " (checkpoint " + at.path + ")"
	}
	return text
}

// errorParts are what explain joins, apart: what was wrong, the remedy
// (each "" when the error has none), and the checkpoint the run had open.
func errorParts(err error) (detail, remedy, checkpoint string) {
	var e *recovery.Error
	var missing *missingError
	switch {
	case errors.As(err, &e):
		detail, remedy = e.Detail, e.Remedy
	case errors.As(err, &missing):
		detail, remedy = missing.detail, missing.remedy
	default:
		detail = err.Error()
		if code, _ := exitCode(err); code == exitGeneral {
			remedy = generalRemedy
		}
	}
	var at *atCheckpoint
	if errors.As(err, &at) {
		checkpoint = at.path
	}
	return detail, remedy, checkpoint
}

// generalRemedy is the remedy of an error the code did not foresee.
const generalRemedy = "fix the cause and re-run (progress is kept); if the cause is unclear, re-run with --log-format json and report the output with the command line (without the token)"

// usageError marks err as a usage error (exit 2).
func usageError(err error) error {
	return recovery.Problemf(recovery.ErrUsage, "see siem-recovery --help", "%w", err)
}

// stoppedAs is a planned stop that exits with the code --stopped-exit-code
// asks for instead of 75.
type stoppedAs struct {
	error
	code int
}

func (e *stoppedAs) Unwrap() error { return e.error }

// stoppedWith gives a planned stop the exit code code.
func stoppedWith(err error, code int) error {
	if code == exitStopped || !errors.Is(err, recovery.ErrStopped) {
		return err
	}
	return &stoppedAs{error: err, code: code}
}
