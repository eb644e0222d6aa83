package mcas

import (
	"context"
	"fmt"
	"strings"
	"time"

	"siem-recovery/recovery"
)

// alertsPath is the alerts endpoint under the tenant's URL, with the
// trailing slash the activities endpoint needs too (defender-docs
// api-alerts-list.md writes it so).
const alertsPath = "/api/v1/alerts/"

// records is what differs between the data types a Source reads: where
// they are listed, what they are called in messages, and how one record
// of an answer is decoded. Everything else (the client, the credential,
// the Budget, the retry policy, the bounds of an answer, the plain-paging
// cursor) is the same for both.
type records struct {
	data recovery.DataType
	path string // the endpoint under the tenant's URL
	// one and many name a record and records in messages ("activity",
	// "activities"); api names the endpoint ("the activities API").
	one, many, api string
	// remedyFilter follows a request the API refused (400): its filter.
	remedyFilter string
	// remedyCrowded follows a millisecond that holds more records than
	// plain paging can page through.
	remedyCrowded string
}

var (
	activityRecords = records{
		data: recovery.DataActivities, path: endpointPath,
		one: "activity", many: "activities", api: "the activities API",
		remedyFilter: remedyFilter, remedyCrowded: remedyScan,
	}
	alertRecords = records{
		data: recovery.DataAlerts, path: alertsPath,
		one: "alert", many: "alerts", api: "the alerts API",
		remedyFilter:  "check the --alerts-filter file uses fields and operators the alerts API accepts",
		remedyCrowded: "narrow the window or the alerts filter: the alerts API has no scan mode to page through so many alerts of one millisecond",
	}
)

// recordsOf is the description of data ("": activities).
func recordsOf(data recovery.DataType) (records, error) {
	switch data {
	case "", recovery.DataActivities:
		return activityRecords, nil
	case recovery.DataAlerts:
		return alertRecords, nil
	}
	return records{}, recovery.Problemf(recovery.ErrUsage, "read activities or alerts from the MCAS API",
		"the MCAS API serves activities and alerts, not %q", data)
}

// decode decodes one record of an answer: an activity with d (which
// reuses its memory from record to record), or an alert.
func (r records) decode(d *recovery.Decoder, raw []byte) (recovery.Activity, error) {
	if r.data == recovery.DataAlerts {
		return recovery.DecodeAlert(raw)
	}
	return d.Decode(raw)
}

func (r records) alerts() bool { return r.data == recovery.DataAlerts }

// errAlertsByCreated refuses a window on created for alerts.
func errAlertsByCreated() error {
	return recovery.Problemf(recovery.ErrUsage,
		"read alerts by date (leave out --by created): created applies to activities only",
		"alerts are read by their date: an alert has one time, when it was raised, and the alerts API filters and sorts on date only")
}

// alertScope checks that scope can be read from the alerts API: a window
// of dates, with no range of created (the pass's horizon and the sweeps
// for late arrivals are for activities only: an alert has no time of its
// own for when MCAS saved it).
func alertScope(scope recovery.Scope) error {
	if scope.By == recovery.ByCreated {
		return errAlertsByCreated()
	}
	if scope.SavedFrom != 0 || scope.SavedBefore != 0 {
		return recovery.Problemf(recovery.ErrInternal, remedyInternal,
			"alerts cannot be read by when MCAS saved them (%s): the alerts API filters on date only", scope)
	}
	return nil
}

// setAlertPageSize sets the limit of an alerts request: plain paging
// only, n from 1 to 100; 0 (the default) and more than 100 (a scan page
// size, given for activities) are 100.
func (s *Source) setAlertPageSize(n int) error {
	if s.paging == PagingScan || n < 0 {
		return recovery.Problemf(recovery.ErrUsage, "give a page size of 1 to 100 for alerts",
			"the alerts API pages plainly only (no scan mode): page size %d, %s paging", n, s.paging)
	}
	s.scanLimit, s.plainLimit = 0, n
	if n == 0 || n > PlainMaxLimit {
		s.plainLimit = PlainMaxLimit
	}
	return nil
}

// fetchAlerts is fetch for alerts: plain paging by date cursor only (the
// alerts API has no scan mode), over a scope of dates. A scan cursor is
// not one an alerts source made.
func (s *Source) fetchAlerts(ctx context.Context, scope recovery.Scope, ch *chain, c recovery.Cursor) (recovery.Page, error) {
	if err := alertScope(scope); err != nil {
		return recovery.Page{}, err
	}
	cur, err := decodePosition(c)
	if err != nil {
		return recovery.Page{}, err
	}
	if len(cur.NextFilters) > 0 {
		return recovery.Page{}, recovery.Problemf(recovery.ErrCheckpointUnavailable, "start this recovery afresh with another --checkpoint",
			"the checkpoint's position in the alerts API is a scan continuation, which only the activities API makes")
	}
	return s.fetchPlain(ctx, scope, ch, c, cur)
}

// tallyAlerts is tally for alerts: the total of one plain answer of one
// alert, a lower bound when the answer says moreThanTotal (Tally.AtLeast).
func (s *Source) tallyAlerts(ctx context.Context, scope recovery.Scope) (recovery.Tally, error) {
	if err := alertScope(scope); err != nil {
		return recovery.Tally{}, err
	}
	if scope.Window.End <= scope.Window.Start {
		return recovery.Tally{}, nil
	}
	c, err := s.singleActivity(scope)
	if err != nil {
		return recovery.Tally{}, err
	}
	ans, requests, err := s.post(ctx, c)
	t := recovery.Tally{Requests: requests}
	if err != nil {
		return t, err
	}
	if ans.Total == nil {
		if ans.badTotal != "" && s.badTotal.CompareAndSwap(false, true) {
			s.log.Warn("the API's total is not a count of alerts; counting by other means", "endpoint", s.Endpoint(), "total", s.show(ans.badTotal))
		}
		return t, fmt.Errorf("%s: %w", s.Endpoint(), recovery.ErrNoTotal)
	}
	t.Activities = *ans.Total
	t.AtLeast = ans.MoreThanTotal != nil && *ans.MoreThanTotal
	if len(ans.activities) > 0 && scope.Contains(ans.activities[0]) {
		t.First = ans.activities[0].Timestamp
	}
	return t, nil
}

// Reader is the Source as the replay loop reads it: the Source itself
// for activities; for alerts, the same Source without scan lanes (they are
// few, and the alerts API has no scan mode): its Fetch, Over, Count,
// Probe, Credential and Authorize, but not recovery.LaneSizer.
func (s *Source) Reader() recovery.Source {
	if s.rec.alerts() {
		return alertReader{s}
	}
	return s
}

// alertReader is an alerts Source as the replay loop sees it.
type alertReader struct{ s *Source }

func (a alertReader) Fetch(ctx context.Context, cur recovery.Cursor) (recovery.Page, error) {
	return a.s.Fetch(ctx, cur)
}

// Over reads another window of dates; a range of created (or a window by
// created) is refused by the Fetch and Count of the source it returns.
func (a alertReader) Over(scope recovery.Scope) recovery.Source { return a.s.Over(scope) }

func (a alertReader) Count(ctx context.Context, w recovery.Window) (recovery.Tally, error) {
	return a.s.Count(ctx, w)
}

func (a alertReader) Probe(ctx context.Context) error { return a.s.Probe(ctx) }
func (a alertReader) Credential() string              { return a.s.Credential() }
func (a alertReader) Authorize(ctx context.Context) (time.Duration, error) {
	return a.s.Authorize(ctx)
}

// What an alerts source can do: all but scan lanes.
var (
	_ recovery.Scoped       = alertReader{}
	_ recovery.Counter      = alertReader{}
	_ recovery.Prober       = alertReader{}
	_ recovery.Credentialed = alertReader{}
	_ recovery.DataOpener   = (*Source)(nil)
	_ recovery.DataOpener   = alertReader{}
)

// OpenData returns the source of data (activities or alerts) over scope
// with filter (that data type's: the alerts filter for alerts), on this
// Source's tenant, connection, credential and Budget: the tenant's one
// request quota, and one count of consecutive failed requests, whichever
// data type makes them (recovery.DataOpener). Its errors are those of
// New.
func (s *Source) OpenData(data recovery.DataType, scope recovery.Scope, filter recovery.Filter) (recovery.Source, error) {
	rec, err := recordsOf(data)
	if err != nil {
		return nil, err
	}
	endpoint := *s.endpoint
	o := &Source{
		endpoint:  &endpoint,
		auth:      s.auth,
		proxy:     s.proxy,
		client:    s.client,
		budget:    s.budget,
		rec:       rec,
		paging:    s.paging,
		timeout:   s.timeout,
		retryMin:  s.retryMin,
		retryMax:  s.retryMax,
		maxAnswer: s.maxAnswer,
		leaveRaw:  s.leaveRaw,
		log:       s.log,
		redactor:  s.redactor,
		chain:     newChain(),
	}
	o.endpoint.Path = strings.TrimSuffix(s.endpoint.Path, s.rec.path) + rec.path
	if rec != s.rec {
		o.paging = PagingAuto // a choice of the other data type's
	}
	if err := o.setData(scope, filter); err != nil {
		return nil, err
	}
	if err := o.setPageSize(s.pageSize); err != nil {
		return nil, err
	}
	return o.Reader(), nil
}

// OpenData is Source.OpenData (recovery.DataOpener).
func (a alertReader) OpenData(data recovery.DataType, scope recovery.Scope, filter recovery.Filter) (recovery.Source, error) {
	return a.s.OpenData(data, scope, filter)
}
