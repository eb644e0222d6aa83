package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
)

// The lag and the state a feed's metrics show are reckoned at each scrape:
// a feed whose cycles stop (the API or the SIEM out of reach) shows its lag
// growing and, after 2 h, connection_error on /metrics, whether or not
// anything asked /healthz; a long cycle that delivers pages is alive.
func TestFollowMetricsReckonLagAndStateWhenAsked(t *testing.T) {
	clock := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	m := newFollowMetrics([]stream{{data: recovery.DataActivities}}, func() time.Time { return clock })
	start := clock.Add(-48 * time.Hour)
	m.baseline(recovery.DataActivities, recovery.State{}, start.UnixMilli(), time.Minute, 10*time.Minute)
	h := m.handler()
	scrape := func(want ...string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		for _, w := range want {
			if !strings.Contains(rec.Body.String(), "\n"+w+"\n") {
				t.Errorf("at %s the metrics lack %q", clock.Format(time.TimeOnly), w)
			}
		}
	}
	health := func(code int, text string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if rec.Code != code || rec.Body.String() != text {
			t.Errorf("at %s /healthz: %d %q, want %d %q", clock.Format(time.TimeOnly), rec.Code, rec.Body.String(), code, text)
		}
	}
	// A first start, two days behind.
	scrape(`siem_recovery_lag_seconds{data="activities"} 172800`, `siem_recovery_state{state="catching_up"} 1`)
	health(200, "ok\n")

	// Its first cycle, three hours long, delivering pages all along.
	clock = clock.Add(3 * time.Hour)
	delivering := recovery.State{Follow: &recovery.Follow{Start: start.UnixMilli(), Horizon: start.UnixMilli(), Poll: time.Minute, Margin: 10 * time.Minute},
		APIRequests: 400}
	delivering.LastSuccessAt = clock.Add(-time.Minute)
	m.delivered(delivering)
	scrape(`siem_recovery_lag_seconds{data="activities"} 183600`, `siem_recovery_state{state="catching_up"} 1`, "siem_recovery_api_requests_total 400")
	health(200, "ok\n")

	// Caught up.
	done := recovery.State{Follow: &recovery.Follow{Start: start.UnixMilli(), Horizon: clock.Add(-10 * time.Minute).UnixMilli(),
		LastCycleAt: clock, Cycles: 1, Poll: time.Minute, Margin: 10 * time.Minute}, APIRequests: 401}
	m.cycled(recovery.DataActivities, done, 5000)
	scrape(`siem_recovery_lag_seconds{data="activities"} 600`, `siem_recovery_state{state="running"} 1`, `siem_recovery_state{state="catching_up"} 0`,
		`siem_recovery_events_sent_total{data="activities"} 5000`, `siem_recovery_cycles_total{data="activities"} 1`)

	// Then nothing: no cycle, no page. Nobody asks /healthz.
	clock = clock.Add(3 * time.Hour)
	scrape(`siem_recovery_lag_seconds{data="activities"} 11400`, `siem_recovery_state{state="connection_error"} 1`, `siem_recovery_state{state="running"} 0`)
	clock = clock.Add(10 * time.Hour)
	scrape(`siem_recovery_state{state="disconnected"} 1`, `siem_recovery_state{state="connection_error"} 0`)
	health(503, "disconnected: no cycle completed and no page delivered for 13h0m0s\n")
}
