package mcas

import (
	"context"
	"net/url"
	"strings"

	"siem-recovery/recovery"
	"siem-recovery/recovery/source"
)

// Kind is the MCAS API source: --source https://TENANT.REGION.portal.cloudappsecurity.com.
// It authenticates with a token or an Entra ID identity, reads in scan
// lanes, and keeps saving activities after a pass read a window (late
// arrivals, a window that has not ended). It serves alerts too
// (Options.Data): by date only, in one lane, with no horizon or sweeps
// (Lanes and Late are the activities'; an alerts source is no
// recovery.LaneSizer, and refuses a range of created). It claims every --source value
// no other kind claims, so that a mistyped tenant URL is told what an API
// URL looks like: list it last.
var Kind = source.Kind{
	Name:   "the MCAS API",
	Claims: func(string) bool { return true },
	Parse:  parseTarget,
	Open:   openKind,
	Data:   []recovery.DataType{recovery.DataActivities, recovery.DataAlerts},
	API:    true,
	Lanes:  true,
	Late:   true,
}

func parseTarget(_ context.Context, value string, _ source.Settings) (source.Target, error) {
	if value == "" {
		return source.Target{}, recovery.Problemf(recovery.ErrUsage,
			"use --source https://TENANT.REGION.portal.cloudappsecurity.com, file:PATH for a JSON-lines export, or graph for Defender XDR advanced hunting", "no --source given")
	}
	endpoint, err := ParseSource(value)
	if err != nil {
		return source.Target{}, err
	}
	// The tenant is named by scheme and host: a copied path such as /api
	// makes no other recovery.
	base := &url.URL{Scheme: endpoint.Scheme, Host: strings.ToLower(endpoint.Host)}
	return source.Target{Display: base.String(), Key: base.String(), Portal: base.String(), URL: base.String()}, nil
}

func openKind(ctx context.Context, t source.Target, o source.Options) (recovery.Source, error) {
	cred, err := o.Credential(ctx, true)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"rate-limit", "max-critical-errors"} {
		if n := o.Settings.Int(name); n <= 0 {
			return nil, recovery.Problemf(recovery.ErrUsage, "give a positive number", "--%s %d", name, n)
		}
	}
	s, err := New(Config{
		BaseURL:           t.URL,
		Data:              o.Data,
		Token:             cred.Token,
		Identity:          cred.Identity,
		Proxy:             o.Settings.String("proxy"),
		RateLimit:         o.Settings.Int("rate-limit"),
		PageSize:          o.PageSize,
		MaxCriticalErrors: o.Settings.Int("max-critical-errors"),
		Window:            o.Scope.Window,
		By:                o.Scope.By,
		Filter:            o.Filter,
		Logger:            o.Log,
		Redactor:          o.Redactor,
		LeaveRaw:          !o.Raw,
	})
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	return s.Reader(), nil
}
