// Package graph is siem-recovery's source for the successor of the MCAS
// SIEM agent's data: the CloudAppEvents table of Defender XDR advanced
// hunting, read through Microsoft Graph's POST
// /v1.0/security/runHuntingQuery, for SIEMs fed by the Defender XDR
// streaming API.
//
// The source writes the KQL itself: the window on Timestamp (half-open,
// to the tick of 100 ns), the operator's predicate (ParseWhere: one where
// clause, refused with a pipe, a second statement or another table), the
// rows after the cursor, and "top N by Timestamp asc, ReportId asc". The
// cursor is the last row's (Timestamp, ReportId): rows that share a
// millisecond, or a tick, are each read once, and a checkpoint resumes
// exactly. Each row becomes the streaming API's record ({"time",
// "tenantId", "operationName":"Publish", "category":
// "AdvancedHunting-CloudAppEvents", "properties":{row}}, the Activity's
// Raw) and its CEF fields by Microsoft's published mapping (ParseRecord).
//
// Every request of a Source, and of every scope it reads (Over), spends
// one rate limit (45 calls a minute by default, the tenant's documented
// floor) and one count of consecutive failed requests. Throttled requests
// (429) wait for Retry-After and are retried without limit; a query the
// API stops (its 3-minute timeout, its resource limits) or whose result is
// too large is cut in two, its time span or its rows, and asked again;
// 5xx answers, network errors and malformed answers are retried with
// exponential backoff (cenkalti/backoff/v4) until MaxCriticalErrors fail
// in a row. A 401 renews the token once (Config.Renew); a second one, or a
// 403, is recovery.ErrInvalidToken. A window that starts more than 30
// days ago is a usage error naming the MCAS activities API (Validate).
//
// docs/graph-source.md describes the API, the query, the record and the
// CEF mapping for operators, with the documents they come from; package
// graphtest emulates the API for tests.
package graph
