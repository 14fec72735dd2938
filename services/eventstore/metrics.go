package eventstore

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	appends       *prometheus.CounterVec
	appendSeconds prometheus.Histogram
	loadSeconds   prometheus.Histogram
	conflicts     prometheus.Counter
	errors        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gcm_eventstore_appends_total", Help: "Events appended to the stream, by event type.",
		}, []string{"type"}),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gcm_eventstore_append_seconds", Help: "Time to append one event, until JetStream acknowledged it.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}),
		loadSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gcm_eventstore_load_seconds", Help: "Time to load one aggregate's events.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gcm_eventstore_conflicts_total", Help: "Appends refused because the aggregate had moved on (optimistic concurrency).",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gcm_eventstore_append_errors_total", Help: "Appends that failed for another reason than a conflict.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.appends, m.appendSeconds, m.loadSeconds, m.conflicts, m.errors)
	}
	return m
}
