// Package mcastest is an in-process emulator of the Microsoft Defender for
// Cloud Apps (MCAS) activities and alerts API, for tests of siem-recovery's API source
// and of the command that uses it. It is an httptest server on 127.0.0.1
// (plain HTTP, or HTTPS with Options.TLS) that holds a fixed set of
// activities (more can be added between two runs: Add) and answers POST
// /api/v1/activities/ the way the real API does, as far as siem-recovery
// relies on it:
//
//   - Auth: "Authorization: Token <t>" for a legacy token, "Bearer <t>" when
//     the server's token is a JWT, or "Bearer <t>" for an access token
//     given to AcceptToken while it has not expired; any other header
//     answers 401.
//
//   - The trailing slash: POST /api/v1/activities (no slash) ignores the
//     body, as the real API does, and lists the first 100 activities of the
//     tenant, newest first, unfiltered. Stats.NoSlash counts such requests.
//
//   - Two times: "date" (the activity's timestamp, when it happened) and
//     "created" (when MCAS saved it: the activity's "created", else
//     "createdRaw", else its timestamp). Options.IndexDelay lists an
//     activity only that long after it was saved, by the server's clock
//     (Now, moved by Advance), as MCAS indexes what it saves.
//
//   - Filters: {"field":{"op":value}} ANDed. "date" and "created" take eq,
//     gt, gte, lt, lte and range ([{"start":ms,"end":ms}], both ends
//     included); every other field (service, activity.eventType,
//     user.username, …) is matched by recovery.Filter, with the same
//     operators and field names.
//
//   - Sorting by "date" (the default) or "created", "asc" or "desc" (the
//     default), ties broken by _id so the order is stable.
//
//   - Plain paging: "skip" and "limit" with limit ≤ 100 and skip+limit ≤
//     5000, else 400. The answer has "data", "total", "max" (where the
//     count stops: Options.TotalCap, else the total), "moreThanTotal" and
//     "hasNext".
//
//   - Scan mode ("isScan": true): limit 500–5000 (default 500), else 400.
//     While more records follow, the server drops the last records of the
//     page that share its final millisecond (of the sort field) and
//     answers "hasNext": true with "nextQueryFilters": the request's
//     filters with the sort field's bound moved to that millisecond, so
//     each record is listed exactly once. When every record of a page
//     shares one millisecond nothing can be dropped; the page is kept whole
//     and nextQueryFilters carries a private "_scanAfter" key
//     ({"timestamp":ms,"id":lastId}, ms of the sort field) that resumes
//     inside the millisecond. Options.NoScan makes the server refuse isScan with
//     400, like an API without scan support.
//
//   - Throttling: Options.RequestsPerMinute requests per Options.BudgetPeriod
//     (default one minute, a fixed window from the first request); past
//     it the server answers 429 with Retry-After in whole seconds until the
//     window ends.
//
//   - Faults, injected with FailNext (the next n requests) or FailEvery
//     (every k-th request): any status (500, 503, 429 with a Retry-After,
//     a redirect with a Location), with a body of the test's own, a slow
//     answer (Delay), or a 200 with a truncated JSON body (Malformed).
//     Hostile answers too: a scan answer whose nextQueryFilters are its
//     own request's filters (RepeatFilters), one with millions of
//     activities more than the limit, made as they are written
//     (Overfill), a listing that ignores the window's start
//     (IgnoreStart), a continuation pointing back to an earlier page
//     (Rewind), empty answers that say more follow with a new
//     continuation each time (EmptyNext), and activities listed twice,
//     within a page and across a page boundary (Repeat). Answers too
//     large to hold, made as they are written: activities padded to any
//     size (Pad, PadField), gzipped whatever was asked (Gzip: a bomb of a
//     GiB in about a MiB), or with a Content-Encoding not asked for;
//     totals that are not counts (Total, NoTotal); a Content-Length longer
//     than the answer, closed or stalled (LongerBy, Stall); a body of any
//     Content-Type (a web page).
//
//   - Estimates, as the real API gives them: Options.TotalCap stops every
//     "total" at a number, with "moreThanTotal": true past it (the
//     documented "approximate number of records", a lower bound where it
//     says so); Options.AnswerCap lists at most that many activities an
//     answer whatever the limit (Microsoft documents 100 for answers to
//     API-token requests), paging on with "hasNext" and a continuation.
//
//   - Answer time: Options.AnswerTime holds back every answer to a
//     listing or a count, as a real tenant takes seconds to answer a page;
//     requests side by side (scan lanes) are held side by side, and
//     Stats.MaxInFlight tells how many were answered at once.
//
//   - Counting: Stats tells how many requests came and how each was
//     answered; Requests lists them with their bodies and headers.
//
//   - Alerts: POST /api/v1/alerts/ (alerts.go) over Options.Alerts and
//     Options.GeneratedAlerts (GenerateAlerts, real-shaped alerts from
//     internal/activitygen), filtered by date and a few alert filters,
//     sorted by (timestamp, _id), in plain pages of at most 100, answered
//     with "total", "max" and "moreThanTotal" (Options.AlertsTotalLimit);
//     the same token, budget, answer time and faults as activities, the
//     requests numbered together. Stats.AlertRequests and Stats.Alerts
//     count them.
//
// Generate makes activities in the shape the API returns them
// (internal/activitygen: appId but no uniqueServiceAppIds, event objects,
// both forms of _id, created later than timestamp — seconds, and for one in
// 17 hours — numbers as strings), including many that share one
// millisecond, or all saved at one moment (late arrivals to Add);
// Options.Generated serves the same activities without holding them (a
// benchmark's 200,000). StartTinyproxy runs a real tinyproxy for proxy
// tests, and DeadAddr gives a loopback address where nothing listens.
// ShowsSecret tells whether a text shows a token or a long piece of it.
package mcastest
