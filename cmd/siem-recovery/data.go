package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"siem-recovery/recovery"
	"siem-recovery/recovery/source"
)

// stream is one data type a command reads (--data), and its filter:
// --filter for activities, --alerts-filter for alerts.
type stream struct {
	data   recovery.DataType
	filter recovery.Filter
}

// dataFlags choose the data types and the alerts' filter.
func dataFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "data", Category: "Source", EnvVars: env("data"),
			Usage: "what to send, `TYPES` comma-separated: activities, alerts (the MCAS API), cloudappevents (--source graph); " +
				"default: run the source's first (activities, as the recovery agent's \"only Activities\"), follow all the source has (activities,alerts, as the agent)"},
		&cli.StringFlag{Name: "alerts-filter", Category: "Source", EnvVars: env("alerts-filter"), TakesFile: true,
			Usage: "the agent's alert filter, a JSON `FILE` in MCAS filter syntax ({\"severity\":{\"eq\":[2]}}); ANDed with the window"},
	}
}

// readData reads --data for a source of kind: the data types, each once,
// in the kind's order. Without --data, run reads the kind's first, follow
// (all) every one it has.
func readData(c *cli.Context, kind *source.Kind, all bool) ([]recovery.DataType, error) {
	raw := strings.TrimSpace(c.String("data"))
	if raw == "" {
		if all {
			return slices.Clone(kind.Data), nil
		}
		return kind.Data[:1], nil
	}
	names := make([]string, len(kind.Data))
	for i, d := range kind.Data {
		names[i] = string(d)
	}
	var asked []recovery.DataType
	for _, part := range strings.Split(raw, ",") {
		d := recovery.DataType(strings.ToLower(strings.TrimSpace(part)))
		if !slices.Contains(kind.Data, d) {
			return nil, recovery.Problemf(recovery.ErrUsage, fmt.Sprintf("give --data %s (comma-separated)", strings.Join(names, ", ")),
				"--data %q: %s serves no %q", raw, kind.Name, d)
		}
		asked = append(asked, d)
	}
	var data []recovery.DataType
	for _, d := range kind.Data { // the kind's order, each once
		if slices.Contains(asked, d) {
			data = append(data, d)
		}
	}
	return data, nil
}

// readStreams reads --data and the filter of each data type. --filter is
// the activities' filter, --alerts-filter the alerts'; a filter given for
// a data type the run does not read is refused, rather than silently
// ignored.
func readStreams(ctx context.Context, c *cli.Context, kind *source.Kind, all bool, filter recovery.Filter) ([]stream, error) {
	data, err := readData(c, kind, all)
	if err != nil {
		return nil, err
	}
	if kind.OneData != "" && len(data) > 1 {
		return nil, recovery.Problemf(recovery.ErrUsage, kind.OneData, "--data %s: %s holds one data type", dataText(data), kind.Name)
	}
	if kind.NoFilter != "" && filter.JSON() != "" {
		return nil, recovery.Problemf(recovery.ErrUsage, kind.NoFilter, "--filter does not apply to %s", kind.Name)
	}
	alerts, err := readAlertsFilter(ctx, c)
	if err != nil {
		return nil, err
	}
	if alerts.JSON() != "" && !slices.Contains(data, recovery.DataAlerts) {
		return nil, recovery.Problemf(recovery.ErrUsage, "add alerts to --data, or leave out --alerts-filter",
			"--alerts-filter is given but --data does not name alerts")
	}
	if filter.JSON() != "" && !slices.Contains(data, recovery.DataActivities) {
		return nil, recovery.Problemf(recovery.ErrUsage, "give the alerts' filter with --alerts-filter; --filter is the activities'",
			"--filter is given but --data does not name activities")
	}
	var streams []stream
	for _, d := range data {
		s := stream{data: d}
		switch d {
		case recovery.DataActivities:
			s.filter = filter
		case recovery.DataAlerts:
			s.filter = alerts
		}
		streams = append(streams, s)
	}
	return streams, nil
}

func readAlertsFilter(ctx context.Context, c *cli.Context) (recovery.Filter, error) {
	path := c.String("alerts-filter")
	if path == "" {
		return recovery.Filter{}, nil
	}
	data, _, err := readArgFile(ctx, "alerts-filter", "the alerts filter file", path, recovery.ErrUsage)
	if err != nil {
		return recovery.Filter{}, err
	}
	f, err := recovery.ParseFilter(data)
	if err != nil {
		return f, recovery.Problemf(recovery.ErrUsage, "give the SIEM agent's alert filter as a JSON object in MCAS filter syntax, without a date key",
			"the alerts filter file %s: %w", path, err)
	}
	return f, nil
}

// onlyActivities tells whether streams is the recovery of activities
// alone: what every checkpoint was before --data, whose fingerprint it
// keeps.
func onlyActivities(streams []stream) bool {
	return len(streams) == 1 && streams[0].data == recovery.DataActivities
}

// dataNames are the streams' data types, comma-joined: "activities,alerts".
func dataNames(streams []stream) string {
	data := make([]recovery.DataType, len(streams))
	for i, s := range streams {
		data[i] = s.data
	}
	return dataText(data)
}

// dataText is data types as --data takes them: "activities,alerts".
func dataText(data []recovery.DataType) string {
	names := make([]string, len(data))
	for i, d := range data {
		names[i] = string(d)
	}
	return strings.Join(names, ",")
}
