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
	"os"
	"runtime/pprof"

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
		fmt.Fprintf(stderr, "%s: %s\n", name, explain(err))
	}
	return code
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:  "siem-recovery",
		Usage: "recover the MCAS activities your SIEM never received",
		Description: "When the MCAS SIEM agent fails to deliver, MCAS raises a system alert naming a time window.\n" +
			"siem-recovery pulls that window's activities (activities only, with the original agent's filter),\n" +
			"sends them to the SIEM as the agent would (syslog, CEF), keeps its progress in a checkpoint,\n" +
			"and disables itself when it reaches the end date. Re-running it resumes; once done, it does nothing.",
		Version:         version,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		Commands: reportUsageErrors(
			runCommand(stderr),
			statusCommand(stdout),
			verifyCommand(stdout, stderr),
			checkCommand(stdout, stderr),
			versionCommand(stdout),
		),
		// Usage errors are reported once, by execute, with exit code 2.
		OnUsageError:   onUsageError,
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageError(fmt.Errorf("no command %q; the commands are run, status, verify, check and version", c.Args().First()))
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
