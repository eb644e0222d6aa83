// Package source describes the kinds of source a recovery reads (the MCAS
// API, a JSON-lines export, …): each kind's package declares a Kind, and
// the command's one list of kinds is all it knows of them. What differs
// between kinds (how --source names one, its own flags, whether it reads
// in scan lanes or keeps saving records after a pass read them, where its
// records link to) is a field of its Kind, never a branch in the command.
package source

import (
	"context"
	"log/slog"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/entra"
)

// Settings are where a kind reads its flags, by name: the command line (a
// *cli.Context is one).
type Settings interface {
	String(name string) string
	Int(name string) int
	Bool(name string) bool
	Duration(name string) time.Duration
	IsSet(name string) bool
}

// Flag is a flag a kind declares for itself: the command puts it on the
// command line of every command that takes a source, in the kind's
// category, and the kind reads it back through Settings.
type Flag struct {
	Name  string
	Usage string // as urfave/cli takes it: a `WORD` in backquotes names the value
	// Value is the default, and tells the flag's type: a string, an int, a
	// bool or a time.Duration.
	Value     any
	TakesFile bool
}

// Target is a --source value a Kind has read.
type Target struct {
	Kind *Kind
	// Display names it in logs, errors, the checkpoint and status; never
	// a secret.
	Display string
	// Key is what identifies it in the checkpoint's fingerprint: a new
	// token or a copied path does not make another recovery, another
	// tenant or another export's content does.
	Key string
	// Portal is where its records link to in the agent's CEF (cs1: the
	// tenant's portal), or "" when it has none of its own.
	Portal string
	// Path is the local file it reads, or "".
	Path string
	// URL is the service it asks, or "".
	URL string
	// Filter is the kind's own filter as text (Graph's --where), shown as
	// the recovery's filter and part of its identity; "" when the kind
	// takes --filter, or none is given.
	Filter string
	// Predicate is what the kind made of its own filter, for Open.
	Predicate any
}

// Credential is how an API source authenticates: a token given by hand,
// or an Entra ID identity.
type Credential struct {
	Token    recovery.Token
	Identity *entra.Identity
}

// Options are what opening a source of any kind needs.
type Options struct {
	// Data is the data type to read (one of the kind's Data); "" is the
	// kind's first.
	Data recovery.DataType
	// Scope is the window, and the time it applies to.
	Scope recovery.Scope
	// Filter is the filter of that data type (--filter for activities,
	// --alerts-filter for alerts), ANDed with the window.
	Filter recovery.Filter
	// PageSize is --page-size, checked positive.
	PageSize int
	Settings Settings
	Log      *slog.Logger
	// Redactor collects the secrets of the run; nil: the source makes its
	// own.
	Redactor *recovery.Redactor
	// Raw says whether pages must carry each record's text (Activity.Raw):
	// only --format json sends it.
	Raw bool
	// Credential reads the credential the command line gives (--auth,
	// --token-file, the AZURE_ variables); tokens says whether a token
	// given by hand is one this kind takes. Only an API kind calls it.
	Credential func(ctx context.Context, tokens bool) (Credential, error)
}

// Kind is one kind of source.
type Kind struct {
	// Name names the kind for people: "the MCAS API", "an export".
	Name string
	// Claims tells whether a --source value names a source of this kind;
	// the first kind of the list that claims it reads it.
	Claims func(value string) bool
	// Parse reads the value, and the kind's own flags that make the
	// source what it is (Graph's --graph-url and --where), within ctx: an
	// error is a *recovery.Error (a usage error that names the value and
	// the fix).
	Parse func(ctx context.Context, value string, s Settings) (Target, error)
	// Window, when set, refuses a window (on its time) the kind cannot
	// read at now (Graph: older than its 30 days, or by created), before
	// anything else happens.
	Window func(scope recovery.Scope, now time.Time) error
	// NoFilter, when set, says why --filter does not apply to the kind
	// (it takes its own).
	NoFilter string
	// Flags are the kind's own flags.
	Flags []Flag
	// Open opens the source of t over o.Scope. Its errors are
	// *recovery.Error.
	Open func(ctx context.Context, t Target, o Options) (recovery.Source, error)
	// Data are the data types it serves, the default first (--data).
	// OneData, when set, says why a source of the kind serves one data
	// type at a time (an export holds activities or alerts).
	Data    []recovery.DataType
	OneData string

	// API tells that it is a service the run asks over the network with a
	// credential, under a request budget: --auth, --token-file, --proxy,
	// --rate-limit and --max-critical-errors are its.
	API bool
	// Lanes tells that it can read its window in scan lanes side by side
	// (--parallel); OneLane, when it cannot, says why a --parallel given
	// is ignored.
	Lanes   bool
	OneLane string
	// Late tells that it keeps saving records after a pass read a window:
	// a pass reads up to a horizon and sweeps read what was saved later
	// (--settle, --settle-margin), and a window that has not ended is not
	// complete. Fixed, when it does not, says why --settle is ignored.
	Late  bool
	Fixed string
}

// Of is the kind among kinds that claims value, and the target it reads;
// remedy says what --source takes when none does.
func Of(ctx context.Context, kinds []*Kind, value string, s Settings) (Target, error) {
	for _, k := range kinds {
		if k.Claims(value) {
			t, err := k.Parse(ctx, value, s)
			t.Kind = k
			return t, err
		}
	}
	return Target{}, recovery.Problemf(recovery.ErrUsage, "see siem-recovery run --help, --source", "--source %q names no source", recovery.RedactURL(value))
}
