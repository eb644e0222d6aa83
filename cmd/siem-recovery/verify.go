package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"

	"github.com/urfave/cli/v2"

	"siem-recovery/checkpoint"
	"siem-recovery/recovery"
)

func verifyCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check that the SIEM got the whole window (step 2 of the MCAS recovery procedure)",
		UsageText: "siem-recovery verify --alert ALERT.json --source URL|file:PATH [--filter F] [--checkpoint P] [--received FILE]",
		Description: "Counts the window's activities at the source (same window, source and filter flags as run) and compares\n" +
			"the count with what the checkpoint says was sent. With --received FILE (the ids the SIEM holds: one per\n" +
			"line, or the CEF or JSON lines it received) it prints every missing activity id on stdout.\n\n" +
			"Exit codes: 0 nothing missing, 10 activities missing (re-run the recovery, e.g. with --exclude-ids FILE),\n" +
			"otherwise as for run (2 usage, 3 invalid token, 4 invalid proxy, 5 too many critical errors, 6 checkpoint).",
		Flags: slices.Concat(windowFlags(), sourceFlags(), []cli.Flag{
			checkpointFlag(),
			&cli.StringFlag{Name: "received", Category: "Verify", EnvVars: env("received"), TakesFile: true,
				Usage: "the ids the SIEM holds, a `FILE`: one id per line, or CEF lines with externalId=, or JSON lines with _id"},
		}, logFlags()),
		Action: func(c *cli.Context) error { return verify(c, stdout, stderr) },
	}
}

func verify(c *cli.Context, stdout, stderr io.Writer) error {
	in, err := readInputs(c, stderr)
	if err != nil {
		return err
	}
	log, window, filter, src := in.log, in.window, in.filter, in.src
	received, err := readIDs(c, "received", log)
	if err != nil {
		return err
	}
	// The checkpoint is optional: verify also checks a SIEM against a window
	// recovered some other way.
	var st *recovery.State
	cpPath := c.String("checkpoint")
	if s, _, err := checkpoint.Read(c.Context, cpPath); err == nil {
		if id := identity(src, window, filter); !id.Matches(s) {
			return checkpoint.Mismatch(cpPath, s, id, "verify asks for")
		}
		st = &s
	} else if !errors.Is(err, fs.ErrNotExist) || c.IsSet("checkpoint") {
		return err
	}

	source, err := openSource(c.Context, c, log, src, window, filter, nil)
	if err != nil {
		return err
	}
	if cl, ok := source.(io.Closer); ok {
		defer cl.Close()
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	var missing int64
	count, requests, err := recovery.Count(c.Context, source, func(a recovery.Activity) {
		if received != nil && !received.Contains(a.ID) {
			missing++
			fmt.Fprintln(out, a.ID)
		}
	})
	if err != nil {
		return err
	}
	if err := out.Flush(); err != nil {
		return err
	}
	attrs := []any{"window", window.String(), "at_source", count, "api_requests", requests}
	if st != nil {
		attrs = append(attrs, "sent", st.Sent, "skipped", st.Skipped, "state", st.State)
	}
	if received != nil {
		attrs = append(attrs, "received_ids", received.Len(), "missing", missing)
		log.Info("verified against the SIEM's ids", attrs...)
		if missing > 0 {
			return &missingError{detail: fmt.Sprintf("%d of the window's %d activities are not in %s (their ids are on stdout)", missing, count, c.String("received")),
				remedy: "re-run the recovery with --exclude-ids " + c.String("received") + " to send just those"}
		}
		return nil
	}
	log.Info("verified against the checkpoint", attrs...)
	switch {
	case st == nil:
		log.Warn("no checkpoint to compare with: only the source was counted", "checkpoint", cpPath)
	case st.State != recovery.StateCompleted || st.Sent+st.Skipped < count:
		short := max(count-st.Sent-st.Skipped, 0)
		return &missingError{detail: fmt.Sprintf("the source has %d activities in the window; the recovery sent %d and skipped %d (state %s): at least %d not delivered", count, st.Sent, st.Skipped, st.State, short),
			remedy: "run the recovery again to finish it, then verify with --received to list what the SIEM lacks"}
	}
	return nil
}

// missingError is verify's finding that activities are missing (exit 10).
type missingError struct{ detail, remedy string }

func (e *missingError) Error() string { return e.detail + "; " + e.remedy }
