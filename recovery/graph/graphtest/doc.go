// Package graphtest is an in-process emulator of Microsoft Graph's
// runHuntingQuery over the CloudAppEvents table, for tests of
// siem-recovery's Graph source (recovery/graph) and of the command that
// uses it. It is an httptest TLS server on 127.0.0.1 (httptest's
// certificate, the one mcastest and entratest serve: TLSConfig, CAPEM)
// that holds generated rows (Generate: the table's columns with
// real-shaped values; Add adds late ones) and answers POST
// /v1.0/security/runHuntingQuery as advanced hunting does, as far as the
// source relies on it:
//
//   - Auth: "Authorization: Bearer <t>" for a token of Options.Tokens, or
//     one given to AcceptToken while it has not expired (an Entra ID
//     emulator's); else 401 with Graph's InvalidAuthenticationToken body.
//   - The query: KQL as the source writes it, and the operator predicates
//     it passes on (kql.go lists the grammar): where clauses with and, or,
//     not(), comparisons, in / !in lists, has / contains / startswith,
//     datetime(), strcmp(); order by, top N by, take, count. Strings
//     compare with == and strcmp only: < on strings is refused, as Kusto
//     refuses it. An unknown operator, function or column answers 400
//     with a syntax or semantic error.
//   - Data: the last 30 days by the server's clock (Options.Now), within
//     the request's Timespan ("start/end").
//   - Limits: Options.MaxRows (default 100,000) cuts a result short;
//     Options.MaxResultBytes answers 400 "exceeded the allowed result
//     size"; Options.MaxScanRows answers a query whose Timestamp range
//     holds more rows as one that ran past 3 minutes (504, or
//     Options.Heavy).
//   - Dynamic columns are strings holding JSON by default, JSON itself
//     with Options.DynamicAsJSON.
//   - Throttling: Options.RequestsPerMinute per Options.BudgetPeriod,
//     then 429 with Retry-After. Faults, injected with FailNext and
//     FailEvery: any status with Graph's error body (FaultTimeout,
//     FaultStopped, FaultTooLarge), a slow answer, a 200 cut in the
//     middle, more rows than asked (Overfill), rows out of order, rows
//     listed twice.
//   - Counting: Stats tells how many requests came and how each was
//     answered; Requests lists them with their queries.
package graphtest
