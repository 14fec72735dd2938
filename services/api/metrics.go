package api

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	commands *prometheus.HistogramVec
	waits    *prometheus.HistogramVec
	limited  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gcm_http_requests_total", Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gcm_http_request_seconds", Help: "HTTP request duration by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
		}, []string{"route", "method"}),
		commands: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gcm_command_seconds", Help: "Command latency: validation, aggregate load, decision and append.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
		}, []string{"command", "outcome"}),
		waits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gcm_min_position_wait_seconds", Help: "Time a read waited for the projections to reach min_position.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
		}, []string{"outcome"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gcm_http_rate_limited_total", Help: "Requests refused with 429 because their caller exceeded a rate limit.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.commands, m.waits, m.limited)
	}
	return m
}

func (m *metrics) observe(route, method string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
}
