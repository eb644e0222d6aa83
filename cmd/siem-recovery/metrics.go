package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"siem-recovery/recovery"
)

// followMetrics are what a feed (follow --metrics-addr) tells Prometheus:
// what it sent, asked and failed, how far behind it is, and its state; and
// /healthz, for a Kubernetes liveness probe. A registry of its own: the
// process's Go and process collectors, and nothing global. The lag and the
// state are reckoned when asked, from each data type's latest state, so
// that they move while the feed is stuck (no cycle, no page), when an
// alert on them matters most.
type followMetrics struct {
	registry *prometheus.Registry
	sent     *prometheus.CounterVec
	cycles   *prometheus.CounterVec
	requests prometheus.Counter
	errors   *prometheus.CounterVec
	lag      *prometheus.GaugeVec
	state    *prometheus.GaugeVec
	now      func() time.Time

	mu        sync.Mutex
	started   time.Time                            // when this run began: the feed is alive from then on
	requested map[recovery.DataType]int64          // API requests counted so far, by data type's state
	feeds     map[recovery.DataType]recovery.State // each data type's latest state: horizon, last cycle, last page
}

// feedStates are the values the state gauge takes.
var feedStates = []string{recovery.FeedRunning, recovery.FeedCatchingUp, recovery.FeedConnectionError, recovery.FeedDisconnected}

// newFollowMetrics makes the metrics of a feed of streams; now is the
// clock (time.Now).
func newFollowMetrics(streams []stream, now func() time.Time) *followMetrics {
	m := &followMetrics{
		registry: prometheus.NewRegistry(),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "siem_recovery_events_sent_total",
			Help: "Records the sink accepted, by data type (activities, alerts, cloudappevents)."}, []string{"data"}),
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "siem_recovery_cycles_total",
			Help: "Cycles completed (the source read to the present less the margin, the sink holding all of it), by data type."}, []string{"data"}),
		requests: prometheus.NewCounter(prometheus.CounterOpts{Name: "siem_recovery_api_requests_total",
			Help: "Requests made to the source's API, retries included."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "siem_recovery_errors_total",
			Help: "Failures, by kind: sink (the SIEM could not be reached; retried), or the name of the error the feed ended on."}, []string{"kind"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "siem_recovery_lag_seconds",
			Help: "How far behind the present the feed stands (its horizon's age), by data type."}, []string{"data"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "siem_recovery_state",
			Help: "1 for the feed's state (running, catching_up, connection_error, disconnected), 0 for the others."}, []string{"state"}),
		now:       now,
		requested: map[recovery.DataType]int64{},
		feeds:     map[recovery.DataType]recovery.State{},
	}
	m.registry.MustRegister(m.sent, m.cycles, m.requests, m.errors, m.lag, m.state,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, s := range streams {
		m.sent.WithLabelValues(string(s.data))
		m.cycles.WithLabelValues(string(s.data))
		m.lag.WithLabelValues(string(s.data))
	}
	m.errors.WithLabelValues("sink")
	m.started = m.now()
	m.setState(recovery.FeedCatchingUp)
	return m
}

// baseline takes data type d's state as this run found it: the requests
// it counted before (the counter counts this run's), and where it stands.
// A feed's first start has no Follow yet: it stands at start. poll and
// margin are this run's.
func (m *followMetrics) baseline(d recovery.DataType, st recovery.State, start int64, poll, margin time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requested[d] = st.APIRequests
	f := recovery.Follow{Start: start, Horizon: start}
	if st.Follow != nil {
		f = *st.Follow
	}
	f.Poll, f.Margin = poll, margin
	st.Follow = &f
	m.feeds[d] = st
}

// cycled takes a data type's cycle: what it sent, its requests and where
// it stands.
func (m *followMetrics) cycled(d recovery.DataType, st recovery.State, sent int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent.WithLabelValues(string(d)).Add(float64(sent))
	m.cycles.WithLabelValues(string(d)).Inc()
	m.noteLocked(d, st)
}

// delivered takes the state of a data type after a page was delivered: a
// long cycle (a first start days behind) is alive while it delivers.
func (m *followMetrics) delivered(st recovery.State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.noteLocked(st.DataOf(), st)
}

func (m *followMetrics) noteLocked(d recovery.DataType, st recovery.State) {
	if more := st.APIRequests - m.requested[d]; more > 0 {
		m.requests.Add(float64(more))
	}
	m.requested[d] = st.APIRequests
	if st.Follow == nil { // a page before the cycle's Follow was read: keep what is known
		st.Follow = m.feeds[d].Follow
	}
	m.feeds[d] = st
}

// failed counts a failure of kind.
func (m *followMetrics) failed(kind string) { m.errors.WithLabelValues(kind).Inc() }

func (m *followMetrics) setState(s string) {
	for _, name := range feedStates {
		v := 0.0
		if name == s {
			v = 1
		}
		m.state.WithLabelValues(name).Set(v)
	}
}

// refresh sets the lag and the state gauges for now, and returns the
// feed's state (the worst of its data types') and how long it has been
// since its least recent data type last completed a cycle or delivered a
// page (this run's start at the earliest).
func (m *followMetrics) refresh() (state string, silent time.Duration) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	state = recovery.FeedRunning
	for d, st := range m.feeds {
		m.lag.WithLabelValues(string(d)).Set(st.Lag(now).Seconds())
		f := *st.Follow
		last := slices.MaxFunc([]time.Time{f.LastCycleAt, st.LastSuccessAt, m.started}, time.Time.Compare)
		f.LastCycleAt, st.Follow = last, &f
		s := st.FeedState(now, true)
		if slices.Index(feedStates, s) > slices.Index(feedStates, state) {
			state = s
		}
		silent = max(silent, now.Sub(last))
	}
	m.setState(state)
	return state, silent
}

// health is what /healthz says: unhealthy while the feed is in
// connection_error or disconnected (no cycle completed and no page
// delivered for 2 h or 12 h: the SIEM or the API out of reach).
func (m *followMetrics) health() (int, string) {
	state, silent := m.refresh()
	if state == recovery.FeedConnectionError || state == recovery.FeedDisconnected {
		return http.StatusServiceUnavailable, state + ": no cycle completed and no page delivered for " + silent.Round(time.Second).String() + "\n"
	}
	return http.StatusOK, "ok\n"
}

// handler serves /metrics (the lag and the state reckoned at each
// scrape) and /healthz.
func (m *followMetrics) handler() http.Handler {
	metrics := promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		m.refresh()
		metrics.ServeHTTP(w, r)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		code, text := m.health()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		w.Write([]byte(text))
	})
	return mux
}

// serve serves /metrics and /healthz on addr until the returned function
// is called. A port that cannot be listened on is a usage error.
func (m *followMetrics) serve(addr string, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, recovery.Problemf(recovery.ErrUsage, "give --metrics-addr a free HOST:PORT (e.g. 127.0.0.1:9464, or :9464 for every address)",
			"--metrics-addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: m.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("the metrics server stopped", "addr", addr, "error", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String(), "paths", "/metrics /healthz")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
