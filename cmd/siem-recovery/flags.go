package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"siem-recovery/checkpoint"
	"siem-recovery/recovery"
)

// env names the environment variable that may set a flag (SPEC §2).
func env(flag string) []string {
	return []string{"SIEM_RECOVERY_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}

const (
	defaultPageSize  = 5000
	defaultRateLimit = 20
	defaultCritical  = 10
	// defaultUDPRate paces UDP as scripts/udp-rate.sh measured worth it
	// (docs/delivery.md): unpaced, a stock rsyslog lost a quarter and more;
	// at 5,000 a second, a few in a thousand. It is twice what the API can
	// yield (30 requests a minute of 5,000), so it slows only exports.
	defaultUDPRate = 5000
)

// windowFlags choose the recovery window.
func windowFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "alert", Category: "Window", EnvVars: env("alert"), TakesFile: true,
			Usage: "the MCAS system alert as JSON; the window is its `FILE`'s startDate and endDate (RFC 3339 or epoch ms; start/end accepted)"},
		&cli.StringFlag{Name: "start", Category: "Window", EnvVars: env("start"),
			Usage: "window start `T`, inclusive (RFC 3339 or epoch ms); overrides --alert"},
		&cli.StringFlag{Name: "end", Category: "Window", EnvVars: env("end"),
			Usage: "window end `T`, exclusive (RFC 3339 or epoch ms); overrides --alert"},
		&cli.StringFlag{Name: "by", Category: "Window", EnvVars: env("by"), Value: "date",
			Usage: "which `TIME` of the activities the window applies to: date, when they happened (a gap in the SIEM's timeline), " +
				"or created, when MCAS saved them (an alert about the SIEM agent's delivery: what the agent failed to send)"},
	}
}

// sourceFlags choose where activities come from and which ones: the
// flags every kind of source shares, --data, and each kind's own.
func sourceFlags() []cli.Flag {
	return slices.Concat(commonSourceFlags(), dataFlags(), kindFlags())
}

// kindFlags are the flags the kinds of source declare for themselves, in
// the Source category.
func kindFlags() []cli.Flag {
	var flags []cli.Flag
	for _, k := range sourceKinds {
		for _, f := range k.Flags {
			switch v := f.Value.(type) {
			case string:
				flags = append(flags, &cli.StringFlag{Name: f.Name, Category: "Source", EnvVars: env(f.Name), Value: v, Usage: f.Usage, TakesFile: f.TakesFile})
			case int:
				flags = append(flags, &cli.IntFlag{Name: f.Name, Category: "Source", EnvVars: env(f.Name), Value: v, Usage: f.Usage})
			case bool:
				flags = append(flags, &cli.BoolFlag{Name: f.Name, Category: "Source", EnvVars: env(f.Name), Value: v, Usage: f.Usage})
			case time.Duration:
				flags = append(flags, &cli.DurationFlag{Name: f.Name, Category: "Source", EnvVars: env(f.Name), Value: v, Usage: f.Usage})
			default:
				panic(fmt.Sprintf("source kind %s: flag --%s has a default of type %T", k.Name, f.Name, f.Value))
			}
		}
	}
	return flags
}

// commonSourceFlags are the flags of every kind of source (those of an
// API: its credential, proxy and budget).
func commonSourceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "source", Category: "Source", EnvVars: env("source"),
			Usage: "the MCAS API `URL` (https://TENANT.REGION.portal.cloudappsecurity.com), file:PATH for a JSON-lines export of activities, or graph: Defender XDR advanced hunting's CloudAppEvents through Microsoft Graph (--graph-url, --where)"},
		&cli.StringFlag{Name: "token-file", Category: "Source", EnvVars: env("token-file"), TakesFile: true,
			Usage: "read the API token from `FILE` (preferred: the token stays out of the process list)"},
		&cli.StringFlag{Name: "token", Category: "Source", EnvVars: append(env("token"), "MCAS_TOKEN"),
			Usage: "the API `TOKEN`; prefer --token-file or MCAS_TOKEN: an argument is blanked from the process title at start, but is visible until then"},
		&cli.StringFlag{Name: "auth", Category: "Source", EnvVars: env("auth"),
			Usage: "how to authenticate to the API: token (--token-file, MCAS_TOKEN, --token), entra (an Entra ID application from AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE) or managed-identity (default: token when one is given, else entra when AZURE_CLIENT_ID and AZURE_TENANT_ID are set)"},
		&cli.StringFlag{Name: "proxy", Category: "Source", EnvVars: env("proxy"),
			Usage: "HTTP(S) proxy for the API and Entra ID, `URL` http://host:port or host:port"},
		&cli.StringFlag{Name: "filter", Category: "Source", EnvVars: env("filter"), TakesFile: true,
			Usage: "the original agent's activity filter, a JSON `FILE` in MCAS filter syntax ({\"service\":{\"eq\":[11161]}}); ANDed with the window"},
		&cli.IntFlag{Name: "rate-limit", Category: "Source", EnvVars: env("rate-limit"), Value: defaultRateLimit,
			Usage: "API requests per minute (MCAS allows 30 per tenant; leave room for other clients)"},
		// Every command takes it, so that run's flags work as they are for
		// verify and check; only run reads in lanes.
		&cli.StringFlag{Name: "parallel", Category: "Source", EnvVars: env("parallel"), Value: "auto",
			Usage: "run: scan lanes, read the window in `N` time slices side by side (1 to 8), all under the one --rate-limit, or auto: as many as the API's " +
				"answer time needs to reach --rate-limit (1 when answers are fast); set when the recovery starts; the API only (an export is read in one)"},
		&cli.IntFlag{Name: "page-size", Category: "Source", EnvVars: env("page-size"), Value: defaultPageSize,
			Usage: "activities per page: up to 5000 in scan mode, at most 100 in plain paging; also the checkpoint interval"},
		&cli.IntFlag{Name: "max-critical-errors", Category: "Source", EnvVars: env("max-critical-errors"), Value: defaultCritical,
			Usage: "consecutive failed API requests before giving up"},
	}
}

// sinkFlags choose where and how activities are sent.
func sinkFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "sink", Category: "Sink", EnvVars: env("sink"), Value: "stdout",
			Usage: "where to send: tcp://host:port, udp://host:port, tls://host:port (syslog), relp://host:port (syslog over RELP), relp+tls://host:port (RELP inside TLS), file:PATH, or stdout (-)"},
		&cli.StringFlag{Name: "format", Category: "Sink", EnvVars: env("format"), Value: "cef",
			Usage: "cef (as the MCAS SIEM agent) or json (each activity as the source returned it)"},
		&cli.StringFlag{Name: "syslog", Category: "Sink", EnvVars: env("syslog"),
			Usage: "syslog header: rfc5424, rfc3164 or none (default: rfc5424 on network sinks, none on file and stdout)"},
		&cli.StringFlag{Name: "framing", Category: "Sink", EnvVars: env("framing"), Value: "lf",
			Usage: "TCP/TLS framing: lf (newline) or octet (RFC 6587 octet counting)"},
		&cli.IntFlag{Name: "udp-rate", Category: "Sink", EnvVars: env("udp-rate"), Value: defaultUDPRate,
			Usage: "udp:// only: send at most `N` datagrams a second, so that bursts do not overflow the receiver (0: unpaced)"},
		&cli.StringFlag{Name: "portal-url", Category: "Sink", EnvVars: env("portal-url"),
			Usage: "the tenant's portal `URL` for the cs1 link of each CEF event (default: --source when it is the API)"},
		&cli.StringFlag{Name: "ca-file", Category: "Sink", EnvVars: env("ca-file"), TakesFile: true,
			Usage: "CA certificates (PEM) that sign the SIEM's TLS certificate; default: the system's"},
		&cli.StringFlag{Name: "tls-cert", Category: "Sink", EnvVars: env("tls-cert"), TakesFile: true,
			Usage: "client certificate (PEM) for TLS to the SIEM"},
		&cli.StringFlag{Name: "tls-key", Category: "Sink", EnvVars: env("tls-key"), TakesFile: true,
			Usage: "client key (PEM) for TLS to the SIEM"},
		&cli.StringFlag{Name: "tls-server-name", Category: "Sink", EnvVars: env("tls-server-name"),
			Usage: "name to verify the SIEM's certificate against (default: the host of --sink)"},
		&cli.BoolFlag{Name: "tls-insecure-skip-verify", Category: "Sink", EnvVars: env("tls-insecure-skip-verify"),
			Usage: "do not verify the SIEM's TLS certificate (only for a lab: anyone on the path can read the events)"},
	}
}

// checkpointFlag names the checkpoint file.
func checkpointFlag() cli.Flag {
	return &cli.StringFlag{Name: "checkpoint", Category: "Progress", EnvVars: env("checkpoint"), TakesFile: true,
		Usage: "the bbolt `FILE` that records progress (created with mode 0600; a run also holds FILE.lock). " +
			"Default: a file named for the window, source and filter in the user's state directory " +
			"($XDG_STATE_HOME/siem-recovery, else ~/.local/state/siem-recovery; macOS ~/Library/Application Support/siem-recovery; " +
			"Windows %LOCALAPPDATA%\\siem-recovery), so the same command resumes from any directory; run prints the path"}
}

// checkpointPath is --checkpoint, or else the default checkpoint of the
// recovery id: its own file in the user's state directory.
func checkpointPath(c *cli.Context, id checkpoint.Identity) (string, error) {
	if p := c.String("checkpoint"); p != "" {
		return p, nil
	}
	dir, err := stateDir()
	if err != nil {
		return "", recovery.Problemf(recovery.ErrUsage, "give --checkpoint FILE",
			"no --checkpoint, and no state directory for the default one: %w", err)
	}
	return filepath.Join(dir, id.FileName()), nil
}

// otherByCheckpoint is, when --by and --checkpoint were not given and no
// default checkpoint exists for id, the default checkpoint of the same
// recovery by the other time, if one exists: what a run with the same
// other flags and --by created (or date) made. The usual slip is a resume
// without --by created; "" when there is none.
func otherByCheckpoint(c *cli.Context, id checkpoint.Identity) (path string, by recovery.TimeField) {
	if id.Follow || c.IsSet("by") || c.String("checkpoint") != "" {
		return "", id.By
	}
	own, err := checkpointPath(c, id)
	if err != nil || exists(own) {
		return "", id.By
	}
	other := id
	other.By = recovery.ByCreated
	if id.By == recovery.ByCreated {
		other.By = recovery.ByDate
	}
	path = filepath.Join(filepath.Dir(own), other.FileName())
	if !exists(path) {
		return "", id.By
	}
	return path, other.By
}

// exists tells whether something is at path.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// otherByError is a run's (and check's) refusal to start a recovery by
// one time beside the same recovery's checkpoint by the other: --by was
// left out, and the remedy names it.
func otherByError(c *cli.Context, id checkpoint.Identity, path string, by recovery.TimeField) error {
	own, _ := checkpointPath(c, id)
	state := ""
	if st, _, err := checkpoint.Read(c.Context, path); err == nil {
		state = fmt.Sprintf(" (%s, %d sent)", st.State, st.Sent)
	}
	return recovery.Problemf(recovery.ErrCheckpointUnavailable,
		fmt.Sprintf("re-run with --by %s to resume it; or give --by %s to start another recovery, by %s", by, id.By, id.By),
		"this recovery by %s has no checkpoint (%s), but the same recovery by %s has one: %s%s", id.By, own, by, path, state)
}

// stateDir is the user's state directory for checkpoints on this system.
func stateDir() (string, error) {
	return checkpoint.StateDir(runtime.GOOS, os.Getenv, os.UserHomeDir)
}

// onlyCheckpoint is the checkpoint status reads without --checkpoint: the
// only one in the state directory. With none or several it is a usage
// error, which lists them to choose from.
func onlyCheckpoint() (string, error) {
	const remedy = "give it with --checkpoint PATH (run prints the path it uses when it starts)"
	dir, err := stateDir()
	if err != nil {
		return "", recovery.Problemf(recovery.ErrUsage, remedy, "status needs --checkpoint")
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.db"))
	switch len(names) {
	case 0:
		return "", recovery.Problemf(recovery.ErrUsage, remedy, "status needs --checkpoint, and %s holds no checkpoint", dir)
	case 1:
		return names[0], nil
	}
	return "", recovery.Problemf(recovery.ErrUsage, remedy, "status needs --checkpoint; the checkpoints in %s are: %s", dir, strings.Join(names, ", "))
}

// logFlags choose how logs look; logs always go to stderr.
func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-format", Category: "Logging", EnvVars: env("log-format"), Value: "text",
			Usage: "text or json (for log shippers); logs go to stderr"},
		&cli.BoolFlag{Name: "quiet", Category: "Logging", EnvVars: env("quiet"),
			Usage: "log warnings and errors only"},
		&cli.BoolFlag{Name: "verbose", Category: "Logging", EnvVars: env("verbose"),
			Usage: "log every page"},
		&cli.DurationFlag{Name: "progress-interval", Category: "Logging", EnvVars: env("progress-interval"), Value: 30 * time.Second,
			Usage: "without a terminal, log progress every `D` (on a terminal a progress bar shows instead)"},
	}
}
