package engine

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus figures.
type Metrics struct {
	lastSeq      atomic.Uint64
	lag          *prometheus.GaugeVec
	position     *prometheus.GaugeVec
	batchSize    *prometheus.HistogramVec
	applySeconds *prometheus.HistogramVec
	applied      *prometheus.CounterVec
	parked       *prometheus.CounterVec
}

// NewMetrics creates the engine's metrics and registers them on reg (when
// not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gcm_projection_lag_events", Help: "Stream last position minus the projection build's checkpoint.",
		}, []string{"projection", "generation"}),
		position: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gcm_projection_position", Help: "Checkpoint (last applied stream position) of a projection build.",
		}, []string{"projection", "generation"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gcm_projection_batch_events", Help: "Events per applied batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7),
		}, []string{"projection"}),
		applySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gcm_projection_batch_seconds", Help: "Time to apply one batch and its checkpoint.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"projection"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gcm_projection_events_total", Help: "Events a projection has passed (applied, skipped or parked).",
		}, []string{"projection"}),
		parked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gcm_projection_dead_letters_total", Help: "Events parked because they could not be applied.",
		}, []string{"projection"}),
	}
	if reg != nil {
		reg.MustRegister(m.lag, m.position, m.batchSize, m.applySeconds, m.applied, m.parked)
	}
	return m
}
