package main

import (
	"context"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"siem-recovery/recovery"
	"siem-recovery/recovery/entra"
)

// The values of --auth (SPEC §2, §7).
const (
	authToken   = "token"
	authEntra   = "entra"
	authManaged = "managed-identity"
)

// readAuth chooses how the API source shown as source authenticates: a
// token given by hand, or an Entra ID identity from the Azure SDK's
// environment. Without --auth: the token when one is given, else Entra ID
// when AZURE_CLIENT_ID and AZURE_TENANT_ID are set.
func readAuth(ctx context.Context, c *cli.Context, log *slog.Logger, source string) (recovery.Token, *entra.Identity, error) {
	kind := strings.TrimSpace(c.String("auth"))
	tokenGiven := c.String("token-file") != "" || c.String("token") != ""
	if kind == "" {
		switch {
		case tokenGiven:
			kind = authToken
		case os.Getenv("AZURE_CLIENT_ID") != "" && os.Getenv("AZURE_TENANT_ID") != "":
			kind = authEntra
		default:
			return recovery.Token{}, nil, recovery.Problemf(recovery.ErrUsage,
				"give an API token with --token-file or MCAS_TOKEN, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or a certificate, or a federated token) for an Entra ID application; see --auth",
				"no API token and no Entra ID application for %s", source)
		}
	}
	var id *entra.Identity
	var err error
	switch kind {
	case authToken:
		token, err := readToken(ctx, c, log, source)
		return token, nil, err
	case authEntra:
		id, err = entra.FromEnv(os.Getenv)
	case authManaged:
		id, err = entra.ManagedFromEnv(os.Getenv)
	default:
		return recovery.Token{}, nil, recovery.Problemf(recovery.ErrUsage, "use --auth token, entra or managed-identity",
			"--auth %q is not a way to authenticate", kind)
	}
	if err == nil && tokenGiven {
		err = recovery.Problemf(recovery.ErrUsage, "remove the token, or leave --auth out to use it",
			"--auth %s, but an API token is given too (--token-file, --token or MCAS_TOKEN)", kind)
	}
	return recovery.Token{}, id, err
}
