package export

import (
	"context"
	"errors"
	"strings"

	"siem-recovery/internal/argfile"
	"siem-recovery/recovery"
	"siem-recovery/recovery/source"
)

// Kind is the export source: --source file:PATH (or file://PATH), a
// JSON-lines file of activity objects. A file gains no activity once
// written (no horizon, no sweeps) and is read in one lane, from its first
// line to its last.
var Kind = source.Kind{
	Name:   "an export",
	Claims: func(value string) bool { return strings.HasPrefix(value, "file:") },
	Parse:  parse,
	Open:   open,
	Data:   []recovery.DataType{recovery.DataActivities, recovery.DataAlerts},
	OneData: "an export holds activities or alerts: give --data activities or --data alerts, " +
		"and recover the other data type's file with a run of its own",

	OneLane: "an export is read in one lane, from its first line to its last",
	Fixed:   "an export gains no activity once written, so nothing arrives late in it",
}

const remedyTarget = "use --source https://TENANT.REGION.portal.cloudappsecurity.com, file:PATH for a JSON-lines export, or graph for Defender XDR advanced hunting"

func parse(_ context.Context, value string, _ source.Settings) (source.Target, error) {
	path := strings.TrimPrefix(strings.TrimPrefix(value, "file:"), "//")
	if path == "" {
		return source.Target{}, recovery.Problemf(recovery.ErrUsage, remedyTarget, "--source %q names no file", value)
	}
	key, err := Identity(path)
	if err != nil {
		return source.Target{}, Problem(path, err)
	}
	return source.Target{Display: "file:" + path, Key: key, Path: path}, nil
}

func open(_ context.Context, t source.Target, o source.Options) (recovery.Source, error) {
	alerts := o.Data == recovery.DataAlerts
	if alerts && o.Filter.JSON() != "" {
		return nil, recovery.Problemf(recovery.ErrUsage, "leave out --alerts-filter: an export's alerts are read as the file holds them",
			"--alerts-filter applies to the MCAS API, not to an export")
	}
	if alerts && o.Scope.By == recovery.ByCreated {
		return nil, recovery.Problemf(recovery.ErrUsage, "give the window by date: an alert has one time",
			"alerts are read by their date, and --by created was given")
	}
	s, err := Open(t.Path, o.Scope, o.Filter, o.PageSize)
	if err != nil {
		return nil, Problem(t.Path, err)
	}
	if alerts {
		s.ReadAlerts()
	}
	if !o.Raw {
		s.LeaveRaw()
	}
	return s, nil
}

// Problem words a failure to open the export at path for the operator.
func Problem(path string, err error) error {
	var notRegular *argfile.NotRegularError
	if errors.As(err, &notRegular) && notRegular.Mode.IsDir() {
		return recovery.Problemf(recovery.ErrUsage, "name a JSON-lines file after file: in --source", "the export %s is a directory", path)
	}
	if errors.As(err, &notRegular) {
		return recovery.Problemf(recovery.ErrUsage,
			"save the export to a regular file first (e.g. zcat export.jsonl.gz > export.jsonl) and give that after file:; "+
				"a run resumes by byte offset, which a pipe or device cannot give back",
			"--source file:%s: %s is %s, not a regular file", path, path, argfile.Describe(notRegular.Mode))
	}
	return recovery.Problemf(recovery.ErrUsage, "check the path after file: in --source", "cannot open the export %s: %w", path, err)
}

var _ recovery.Source = (*Source)(nil)
