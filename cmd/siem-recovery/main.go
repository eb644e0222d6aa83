// Command siem-recovery recovers the Microsoft Defender for Cloud Apps
// (MCAS) activities a SIEM never received: it reads the window of the MCAS
// "missing events" system alert, pulls that window's activities with the
// original SIEM agent's filter, sends them to the SIEM in the agent's CEF
// format, and disables itself once the window is delivered.
//
// This package only wires: one file per command, flags in flags.go, and the
// mapping of errors to exit codes in exit.go.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/urfave/cli/v2"

	"siem-recovery/recovery"
)

// version is the tool's version, also the version field of every CEF header.
// Release builds set it with -ldflags "-X main.version=...".
var version = "0.1.0"

func main() {
	args := hideSecrets(os.Args)
	stop := startProfile(os.Getenv("SIEM_RECOVERY_CPUPROFILE"))
	code := execute(context.Background(), args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// startProfile writes a CPU profile to path (for scripts/bench.sh and for
// anyone chasing a slow recovery); it returns the function that ends it.
func startProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "SIEM_RECOVERY_CPUPROFILE:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "SIEM_RECOVERY_CPUPROFILE:", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// execute runs the command line and returns the exit code.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, args)
	code, name := exitCode(err)
	var reported *reportedError
	if err != nil && !errors.As(err, &reported) {
		if jsonLogs(args, os.Getenv) {
			logError(stderr, err, code, name)
		} else {
			fmt.Fprintf(stderr, "%s: %s\n", name, explain(err))
		}
	}
	return code
}

// jsonLogs tells whether the command line (or its environment: flags win)
// asks for JSON logs: then the line that ends the command is a JSON record
// too, so that a log shipper reading stderr gets every line, the error
// above all. It reads args itself, as the error may be that they do not
// parse.
func jsonLogs(args []string, getenv func(string) string) bool {
	format := getenv(env("log-format")[0])
	for i, a := range args {
		a = "-" + strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, "-log-format="); ok {
			format = v
		} else if a == "-log-format" && i+1 < len(args) {
			format = args[i+1]
		}
	}
	return format == "json"
}

// logError writes the error that ends the command as one JSON log record:
// msg is the line the text form prints, beside it the error's name, exit
// code, what was wrong, the remedy and the checkpoint when there is one.
func logError(stderr io.Writer, err error, code int, name string) {
	detail, remedy, checkpoint := errorParts(err)
	attrs := []any{"error", name, "exit_code", code, "detail", detail, "remedy", remedy}
	if checkpoint != "" {
		attrs = append(attrs, "checkpoint", checkpoint)
	}
	slog.New(slog.NewJSONHandler(stderr, nil)).Error(name+": "+explain(err), attrs...)
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:  "siem-recovery",
		Usage: "get the MCAS activities and alerts your SIEM never received into it, and keep it fed",
		Description: "run recovers a window: it pulls the window's activities (and alerts, with --data) with the original SIEM\n" +
			"agent's filter, sends them to the SIEM as the agent did (syslog, CEF), keeps its progress in a checkpoint,\n" +
			"and disables itself at the end date; re-running it resumes, and once done it does nothing.\n" +
			"follow keeps a SIEM fed as the retired SIEM agent did; gaps finds the windows a SIEM lacks, now that no\n" +
			"agent raises an alert; --source graph recovers Defender XDR's CloudAppEvents for SIEMs fed by the streaming API.",
		Version:         version,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		Commands: reportUsageErrors(
			runCommand(stderr),
			followCommand(stderr),
			statusCommand(stdout, stderr),
			verifyCommand(stdout, stderr),
			gapsCommand(stdout, stderr),
			checkCommand(stdout, stderr),
			versionCommand(stdout),
		),
		// Usage errors are reported once, by execute, with exit code 2.
		OnUsageError:   onUsageError,
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageError(fmt.Errorf("no command %q; the commands are run, follow, status, verify, gaps, check and version", c.Args().First()))
			}
			return cli.ShowAppHelp(c)
		},
	}
}

// reportUsageErrors makes a bad flag of any command a usage error (exit 2),
// printed once by execute, instead of the library's help dump.
func reportUsageErrors(cmds ...*cli.Command) []*cli.Command {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
	}
	return cmds
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	return recovery.Problemf(recovery.ErrUsage, "see siem-recovery "+c.Command.FullName()+" --help", "%w", err)
}
