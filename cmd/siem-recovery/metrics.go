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
// process's Go and process collectors, and nothing global.
type followMetrics struct {
	registry *prometheus.Registry
	sent     *prometheus.CounterVec
	cycles   *prometheus.CounterVec
	requests prometheus.Counter
	errors   *prometheus.CounterVec
	lag      *prometheus.GaugeVec
	state    *prometheus.GaugeVec

	mu        sync.Mutex
	lastCycle time.Time                    // when a cycle of any data type last completed
	requested map[recovery.DataType]int64  // API requests counted so far, by data type's state
	states    map[recovery.DataType]string // each data type's feed state
}

// feedStates are the values the state gauge takes.
var feedStates = []string{recovery.FeedRunning, recovery.FeedCatchingUp, recovery.FeedConnectionError, recovery.FeedDisconnected}

func newFollowMetrics(streams []stream) *followMetrics {
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
		requested: map[recovery.DataType]int64{},
		states:    map[recovery.DataType]string{},
	}
	m.registry.MustRegister(m.sent, m.cycles, m.requests, m.errors, m.lag, m.state,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, s := range streams {
		m.sent.WithLabelValues(string(s.data))
		m.cycles.WithLabelValues(string(s.data))
		m.lag.WithLabelValues(string(s.data))
	}
	m.errors.WithLabelValues("sink")
	m.lastCycle = time.Now()
	m.setState(recovery.FeedCatchingUp)
	return m
}

// baseline notes the requests data type d's state counted before this
// run: the counter counts this run's.
func (m *followMetrics) baseline(d recovery.DataType, requests int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requested[d] = requests
}

// cycled takes a data type's cycle: what it sent, its requests, its lag
// and state.
func (m *followMetrics) cycled(d recovery.DataType, st recovery.State, sent int64) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent.WithLabelValues(string(d)).Add(float64(sent))
	m.cycles.WithLabelValues(string(d)).Inc()
	if more := st.APIRequests - m.requested[d]; more > 0 {
		m.requests.Add(float64(more))
	}
	m.requested[d] = st.APIRequests
	m.lag.WithLabelValues(string(d)).Set(st.Lag(now).Seconds())
	m.lastCycle = now
	m.states[d] = st.FeedState(now, true)
	worst := recovery.FeedRunning
	for _, s := range m.states {
		if slices.Index(feedStates, s) > slices.Index(feedStates, worst) {
			worst = s
		}
	}
	m.setStateLocked(worst)
}

// failed counts a failure of kind.
func (m *followMetrics) failed(kind string) { m.errors.WithLabelValues(kind).Inc() }

func (m *followMetrics) setState(s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setStateLocked(s)
}

func (m *followMetrics) setStateLocked(s string) {
	for _, name := range feedStates {
		v := 0.0
		if name == s {
			v = 1
		}
		m.state.WithLabelValues(name).Set(v)
	}
}

// health is what /healthz says: unhealthy once no cycle completed for the
// time after which the feed is in connection_error (the SIEM or the API
// out of reach for 2 h).
func (m *followMetrics) health() (int, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch age := time.Since(m.lastCycle); {
	case age > recovery.FeedDisconnectedAfter:
		m.setStateLocked(recovery.FeedDisconnected)
		return http.StatusServiceUnavailable, "disconnected: no cycle completed for " + age.Round(time.Second).String() + "\n"
	case age > recovery.FeedConnectionErrorAfter:
		m.setStateLocked(recovery.FeedConnectionError)
		return http.StatusServiceUnavailable, "connection_error: no cycle completed for " + age.Round(time.Second).String() + "\n"
	}
	return http.StatusOK, "ok\n"
}

// serve serves /metrics and /healthz on addr until the returned function
// is called. A port that cannot be listened on is a usage error.
func (m *followMetrics) serve(addr string, poll, margin time.Duration, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, recovery.Problemf(recovery.ErrUsage, "give --metrics-addr a free HOST:PORT (e.g. 127.0.0.1:9464, or :9464 for every address)",
			"--metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		code, text := m.health()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		w.Write([]byte(text))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
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
