// Package mcas is siem-recovery's source for the Microsoft Defender for
// Cloud Apps (MCAS) activities API: POST {source}/api/v1/activities/,
// paged in scan mode (nextQueryFilters, kept in the cursor as the API sent
// it) or, where scan mode cannot be used, by a date cursor that is exact
// when many activities share one millisecond.
//
// Every request of a Source, and of every scope it reads (Over: scan
// lanes side by side, sweeps), spends one Budget: one client-side rate
// limit and one count of consecutive failed requests.
// Throttled requests (429) wait for Retry-After and are retried without
// limit; 5xx answers, timeouts, network errors and malformed answers are
// critical and retried with exponential backoff until MaxCriticalErrors
// fail in a row, or until the same request gets the same malformed answer
// twice. An answer is malformed when it is not the expected JSON, holds
// more activities than the limit asked for (it is read as a stream and
// refused at the first one too many), is larger than MaxAnswer (inflated)
// or holds an activity larger than MaxActivity (refused without being
// held whole: bounds.go), or could
// only be followed forever: a continuation the reader of the pass
// followed before, a page that ends before where the scan stood, more
// than a few answers in a row with nothing new that say more follow
// (chain.go). An activity listed twice is sent once. A wrong token, an unreachable proxy or API
// address and a refused request end the fetch at once with a
// *recovery.Error the command maps to its exit code. The token is sent
// only in the Authorization header; whatever the API sends reaches an
// error or a log line redacted (Config.Redactor) and escaped
// (recovery.Escape).
//
// The same Source reads alerts (Config.Data, alerts.go): POST
// {source}/api/v1/alerts/, by date only, in plain pages with the same date
// cursor, each record decoded by recovery.DecodeAlert; its count honours
// the answer's moreThanTotal. OpenData opens one data type from a Source
// of the other on the same connection, credential and Budget: the
// tenant's quota is one.
//
// Lanes sizes scan lanes from the answer time the Budget measures, and
// Tally counts a part of the window for recovery.Slices, which balances
// them.
//
// docs/api-source.md describes the protocol, the resume semantics and the
// retry policy for operators; package mcastest emulates the API for tests.
package mcas
