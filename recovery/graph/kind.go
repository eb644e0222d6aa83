package graph

import (
	"context"
	"errors"
	"net/url"
	"os"
	"strings"
	"time"

	"siem-recovery/internal/argfile"
	"siem-recovery/recovery"
	"siem-recovery/recovery/source"
)

// Kind is the Graph source: --source graph, a window of Defender XDR's
// CloudAppEvents table through Microsoft Graph's runHuntingQuery, with the
// operator's KQL predicate (--where) and the cloud's Graph URL
// (--graph-url). It authenticates as an Entra ID application or a managed
// identity only (advanced hunting takes no MCAS token), reads in one lane
// by Timestamp, and keeps no row for more than 30 days.
var Kind = source.Kind{
	Name:   "Defender XDR advanced hunting (--source graph)",
	Claims: func(value string) bool { return value == "graph" || strings.HasPrefix(value, "graph:") },
	Parse:  parseTarget,
	Flags: []source.Flag{
		{Name: "graph-url", Value: DefaultBaseURL,
			Usage: "--source graph: Microsoft Graph's `URL` (https://graph.microsoft.us, https://dod-graph.microsoft.us, https://microsoftgraph.chinacloudapi.cn for other clouds)"},
		{Name: "where", TakesFile: true, Value: "",
			Usage: "--source graph: a `FILE` holding one KQL predicate over CloudAppEvents, the condition of a where clause (ActionType == \"FileDownloaded\"); ANDed with the window"},
	},
	Open:     openKind,
	Window:   window,
	NoFilter: "give the rows' condition to --source graph as a KQL predicate with --where FILE; --filter is the MCAS API's filter syntax",
	Data:     []recovery.DataType{recovery.DataCloudAppEvents},
	API:      true,
	OneLane:  "advanced hunting is read in one lane, by Timestamp: 45 calls a minute leave lanes nothing to gain",
	Fixed:    "advanced hunting's rows are read by Timestamp, and keep no exact time they were saved at",
}

// tenantEnv names the tenant of the application (the Azure SDK's): the
// rows of one Graph URL belong to the token's tenant.
const tenantEnv = "AZURE_TENANT_ID"

func parseTarget(ctx context.Context, value string, s source.Settings) (source.Target, error) {
	if value != "graph" {
		return source.Target{}, recovery.Problemf(recovery.ErrUsage, "use --source graph, and --graph-url for another cloud's Graph",
			"--source %q: the Graph source is named graph alone", recovery.RedactURL(value))
	}
	endpoint, err := ParseBaseURL(s.String("graph-url"))
	if err != nil {
		return source.Target{}, err
	}
	base := (&url.URL{Scheme: endpoint.Scheme, Host: strings.ToLower(endpoint.Host)}).String()
	var where Predicate
	if path := s.String("where"); path != "" {
		text, _, err := argfile.Read(ctx, path, MaxWhere)
		var tooLarge *argfile.TooLargeError
		switch {
		case errors.As(err, &tooLarge):
			return source.Target{}, recovery.Problemf(recovery.ErrUsage, remedyWhere, "the where file %s is larger than %d bytes", path, MaxWhere)
		case ctx.Err() != nil:
			return source.Target{}, recovery.Problemf(recovery.ErrStopped, "give --where a regular file", "stopped while still waiting to read the where file %s", path)
		case err != nil:
			return source.Target{}, recovery.Problemf(recovery.ErrUsage, "check the path given to --where", "cannot read the where file %s: %w", path, err)
		}
		if where, err = ParseWhere(string(text)); err != nil {
			return source.Target{}, err
		}
	}
	tenant := strings.ToLower(strings.TrimSpace(os.Getenv(tenantEnv)))
	return source.Target{
		Display:   "graph:" + base,
		Key:       "graph\n" + base + "\ntenant=" + tenant + "\nwhere=" + where.String(),
		URL:       base,
		Filter:    where.String(),
		Predicate: where,
	}, nil
}

// window refuses what advanced hunting cannot give: a window older than
// its 30 days, or one by created.
func window(scope recovery.Scope, now time.Time) error {
	if scope.By != recovery.ByDate {
		return errByCreated()
	}
	return Validate(scope.Window, now)
}

func openKind(ctx context.Context, t source.Target, o source.Options) (recovery.Source, error) {
	cred, err := o.Credential(ctx, false)
	if err != nil {
		return nil, err
	}
	if cred.Identity == nil {
		return nil, recovery.Problemf(recovery.ErrUsage,
			"give the Entra ID application's AZURE_TENANT_ID, AZURE_CLIENT_ID and secret, certificate or federated token (--auth entra), or --auth managed-identity; leave out --token-file and MCAS_TOKEN",
			"the Graph source takes no MCAS API token: advanced hunting authenticates an Entra ID application with %s", Resource.Permission)
	}
	proxy, err := recovery.ParseProxy(o.Settings.String("proxy"))
	if err != nil {
		return nil, err
	}
	rate := 0 // the API's own quota, unless --rate-limit says
	if o.Settings.IsSet("rate-limit") {
		rate = o.Settings.Int("rate-limit")
	}
	for _, name := range []string{"rate-limit", "max-critical-errors"} {
		if n := o.Settings.Int(name); n <= 0 {
			return nil, recovery.Problemf(recovery.ErrUsage, "give a positive number", "--%s %d", name, n)
		}
	}
	where, _ := t.Predicate.(Predicate)
	s, err := New(Config{
		BaseURL:           t.URL,
		Identity:          cred.Identity,
		TenantID:          strings.TrimSpace(os.Getenv(tenantEnv)),
		Proxy:             proxy,
		RateLimit:         rate,
		PageSize:          min(o.PageSize, MaxPageSize),
		MaxCriticalErrors: o.Settings.Int("max-critical-errors"),
		Window:            o.Scope.Window,
		By:                o.Scope.By,
		Where:             where,
		Logger:            o.Log,
		Redactor:          o.Redactor,
	})
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	return s, nil
}
