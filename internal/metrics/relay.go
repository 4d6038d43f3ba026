package metrics

import (
	"context"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Relay attempt outcomes, as RelayAttempt takes them.
const (
	RelayDelivered = "delivered" // a 2xx in time
	RelayRetry     = "retry"     // failed, due again
	RelayDead      = "dead"      // failed for good: a dead letter
)

var relayOutcomes = []string{RelayDelivered, RelayRetry, RelayDead}

// relayBuckets reach past the default RELAY_TIMEOUT (15 s).
var relayBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30}

// maxDestinations caps the destination label. Destinations come from the configuration
// (names of [a-z0-9-]), never from a request.
const maxDestinations = 64

// relayMetrics are the relay's instruments, registered by ObserveRelay.
type relayMetrics struct {
	attempts     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	dead         *prometheus.CounterVec
	destinations *capped
}

// RelayBacklog is the relay's due work for one destination, as the backlog gauges show it.
type RelayBacklog struct {
	Destination string
	Pending     int
	OldestAge   time.Duration // how long the oldest PENDING delivery has waited; 0 when none
}

// ObserveRelay registers the relay's metrics: attempts by destination and outcome, their
// latency, dead letters, and the backlog, which backlog reads when scraped (nil: none).
// Call it once, before the relay runs.
func (m *Metrics) ObserveRelay(backlog func(context.Context) ([]RelayBacklog, error)) {
	if m == nil {
		return
	}
	r := &relayMetrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "relay", Name: "attempts_total",
			Help: "Relay delivery attempts by destination and outcome (delivered, retry, dead).",
		}, []string{"destination", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "relay", Name: "attempt_duration_seconds",
			Help:    "Duration of relay delivery attempts by destination, failed ones included.",
			Buckets: relayBuckets,
		}, []string{"destination"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "relay", Name: "dead_letters_total",
			Help: "Relay deliveries that failed for good (410, or the retry schedule spent): replayable with replayRelayDelivery.",
		}, []string{"destination"}),
		destinations: newCapped(maxDestinations),
	}
	m.reg.MustRegister(r.attempts, r.duration, r.dead)
	if backlog != nil {
		m.reg.MustRegister(&backlogCollector{read: backlog, destinations: r.destinations})
	}
	m.relay = r
}

// RelayAttempt records one delivery attempt to destination.
func (m *Metrics) RelayAttempt(destination, outcome string, took time.Duration) {
	if m == nil || m.relay == nil {
		return
	}
	if !slices.Contains(relayOutcomes, outcome) {
		outcome = other
	}
	destination = m.relay.destinations.admit(destination, true, true)
	m.relay.attempts.WithLabelValues(destination, outcome).Inc()
	m.relay.duration.WithLabelValues(destination).Observe(took.Seconds())
}

// RelayDeadLetter records a delivery to destination that failed for good.
func (m *Metrics) RelayDeadLetter(destination string) {
	if m == nil || m.relay == nil {
		return
	}
	m.relay.dead.WithLabelValues(m.relay.destinations.admit(destination, true, true)).Inc()
}

// backlogCollector reads the backlog from the store when scraped.
type backlogCollector struct {
	read         func(context.Context) ([]RelayBacklog, error)
	destinations *capped
}

var (
	backlogDesc = prometheus.NewDesc(namespace+"_relay_backlog",
		"Relay deliveries PENDING per destination (due, waiting for a retry, or in flight).", []string{"destination"}, nil)
	oldestDesc = prometheus.NewDesc(namespace+"_relay_oldest_pending_seconds",
		"Age of the oldest PENDING relay delivery per destination; 0 when there is none.", []string{"destination"}, nil)
)

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- backlogDesc
	ch <- oldestDesc
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := c.read(ctx)
	if err != nil {
		return // the scrape shows the series missing, not wrong
	}
	for _, r := range rows {
		d := c.destinations.admit(r.Destination, true, true)
		ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(r.Pending), d)
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, r.OldestAge.Seconds(), d)
	}
}
