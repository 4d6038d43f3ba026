// Package metrics exposes terragate's Prometheus metrics: GraphQL operations, Terra calls,
// webhooks, subscriptions, the connection funnel and HTTP requests.
//
// Every label value is bounded: it comes from a fixed list, or it must look like a name and
// is admitted only up to a fixed number of distinct values, after which it reads "other".
// Nothing a caller controls (user ids, tokens, free text) can become a label value, so a
// client can neither grow the series count without bound nor read a secret off a dashboard.
//
// Every method is a no-op on a nil *Metrics, so a component can take an optional one.
package metrics

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/terragate/terragate/internal/buildinfo"
)

const namespace = "terragate"

// Label values that stand for something other than the input they replace. They are lower
// case, so they never collide with a provider name or an error code, which are upper case.
const (
	other     = "other"     // a value outside the known set, or beyond the cap of distinct values
	anonymous = "anonymous" // an operation without a name
	ok        = "ok"        // an operation or call without an error
)

// Caps on distinct label values admitted from open sets. They are far above what terragate
// uses (a dozen operations, a handful of Terra endpoints, Terra's ~100 providers) and far
// below what would hurt Prometheus.
const (
	maxOperations = 100
	maxCodes      = 50
	maxTerraOps   = 32
	maxProviders  = 150
)

// Buckets of the latency histograms, in seconds. Terra calls run up to the client's timeout
// (10 s by default), so their buckets reach past it.
var (
	requestBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	terraBuckets   = []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30}
	// Delivery lag is mostly transit and one store write, but clocks differ by up to the
	// signature check's 300 s tolerance, so the buckets reach that far.
	lagBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}
)

// Metrics holds terragate's instruments and the registry that exposes them. It is safe for
// concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	gqlRequests *prometheus.CounterVec
	gqlDuration *prometheus.HistogramVec
	operations  *capped
	codes       *capped

	terraRequests *prometheus.CounterVec
	terraDuration *prometheus.HistogramVec
	circuit       *prometheus.GaugeVec
	terraOps      *capped
	endpoints     *capped

	webhooks     *prometheus.CounterVec
	webhookBytes prometheus.Counter
	deliveryLag  prometheus.Histogram

	subscriptions     prometheus.Gauge
	unlistedDocuments prometheus.Counter

	sessionsCreated   *prometheus.CounterVec
	sessionsCompleted *prometheus.CounterVec
	providers         *capped

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec

	relay *relayMetrics // set by ObserveRelay
}

// New returns Metrics on a registry of their own, with the Go runtime and process
// collectors. A private registry (not prometheus.DefaultRegisterer) lets tests, and several
// servers in one process, each have theirs without duplicate-registration panics.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),

		gqlRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "graphql", Name: "requests_total",
			Help: "GraphQL operations by operation name and outcome: ok, or the first error's extensions.code. " +
				"A subscription counts once, when its first message is sent or it ends.",
		}, []string{"operation", "code"}),
		gqlDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "graphql", Name: "request_duration_seconds",
			Help: "Time from receiving a GraphQL query or mutation to having its response, by operation name and outcome " +
				"(ok, or the first error's extensions.code, as in requests_total). Subscriptions are not timed.",
			Buckets: requestBuckets,
		}, []string{"operation", "code"}),
		operations: newCapped(maxOperations),
		codes:      newCapped(maxCodes),

		terraRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "terra", Name: "requests_total",
			Help: "Calls to the Terra API by operation and status: 2xx, 3xx, 4xx, 429, 5xx, or error when no answer came.",
		}, []string{"op", "status"}),
		terraDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "terra", Name: "request_duration_seconds",
			Help:    "Duration of calls to the Terra API by operation, failed ones included.",
			Buckets: terraBuckets,
		}, []string{"op"}),
		circuit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "terra", Name: "circuit_state",
			Help: "State of the circuit breaker in front of each Terra endpoint: 1 for the current state (closed, half-open or open), 0 for the others.",
		}, []string{"endpoint", "state"}),
		terraOps:  newCapped(maxTerraOps),
		endpoints: newCapped(maxTerraOps),

		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "events_total",
			Help: "Terra webhook deliveries by event type and outcome (applied, unchanged, duplicate, ignored, refused, error).",
		}, []string{"type", "outcome"}),
		webhookBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "ingested_bytes_total",
			Help: "Bytes of Terra webhook bodies read whose signature verified (duplicates included).",
		}),
		deliveryLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "delivery_lag_seconds",
			Help: "Inbox lag: time from Terra signing a webhook delivery to terragate applying it, once per applied delivery " +
				"(deliveries are applied as they are stored, so nothing waits behind them). Terra signs each attempt as it " +
				"sends it, so retries do not add to it; a difference between Terra's clock and this host's does.",
			Buckets: lagBuckets,
		}),

		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "graphql", Name: "subscriptions_open",
			Help: "GraphQL subscriptions currently running, across all WebSocket connections.",
		}),
		unlistedDocuments: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "graphql", Name: "unlisted_documents_total",
			Help: "GraphQL requests whose document is not among the trusted documents, let through by TRUSTED_DOCUMENTS_MODE=allow-unlisted " +
				"(enforce would refuse them): when it stops growing, every client sends trusted documents and enforce is safe.",
		}),

		sessionsCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "widget", Name: "sessions_created_total",
			Help: "Widget sessions created, once per provider offered; provider \"any\" when the session offers every provider.",
		}, []string{"provider"}),
		sessionsCompleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "widget", Name: "sessions_completed_total",
			Help: "Widget sessions that ended with a connected provider, by provider.",
		}, []string{"provider"}),
		providers: newCapped(maxProviders),

		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests by route (as registered, never the raw path) and status class.",
		}, []string{"route", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Time to serve HTTP requests by route. WebSocket connections (101) are counted but not timed.",
			Buckets: requestBuckets,
		}, []string{"route"}),
	}
	m.reg.MustRegister(
		buildInfo(buildinfo.Read()),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.gqlRequests, m.gqlDuration,
		m.terraRequests, m.terraDuration, m.circuit,
		m.webhooks, m.webhookBytes, m.deliveryLag,
		m.subscriptions, m.unlistedDocuments,
		m.sessionsCreated, m.sessionsCompleted,
		m.httpRequests, m.httpDuration,
	)
	return m
}

// ObserveEvents exports the event bus's own figures, read when scraped: subscribers
// counts its subscriptions and listeners, dropped the events slow subscribers missed.
func (m *Metrics) ObserveEvents(subscribers func() int, dropped func() int64) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "events", Name: "subscribers",
			Help: "Subscriptions and listeners the event bus serves on this instance.",
		}, func() float64 { return float64(subscribers()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "events", Name: "dropped_total",
			Help: "Events subscribers missed because they had fallen too far behind.",
		}, func() float64 { return float64(dropped()) }),
	)
}

// buildInfo is the constant terragate_build_info series: 1, labelled with what was built,
// so dashboards can join on version and show when a rollout reached each instance.
func buildInfo(info buildinfo.Info) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; its labels say which build is running: the module version, the Go toolchain and the commit.",
	}, []string{"version", "goversion", "revision"})
	g.WithLabelValues(info.Version, info.GoVersion, info.Revision).Set(1)
	return g
}

// Handler serves the registry in Prometheus' exposition formats. It counts its own scrapes
// (promhttp_metric_handler_requests_total), so a stalled scraper shows. On a nil *Metrics it
// answers 404, as an unmounted route would.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry: m.reg,
		// One broken collector must not hide every other metric.
		ErrorHandling: promhttp.ContinueOnError,
		// Scrapes are cheap but not free; a burst of them must not pile up.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
}

// TerraCall records one call to the Terra API: op is the client's operation name (such as
// "userInfo"), status the HTTP status (0 when no answer came), err the call's error and took
// its duration. A 2xx with an error (an answer that would not decode) keeps its 2xx: the
// status says what Terra did, the error is the caller's to report.
func (m *Metrics) TerraCall(op string, status int, err error, took time.Duration) {
	if m == nil {
		return
	}
	op = m.terraOps.admit(op, isName(op, 64), true)
	m.terraRequests.WithLabelValues(op, statusClass(status, err)).Inc()
	m.terraDuration.WithLabelValues(op).Observe(took.Seconds())
}

// statusClass is the status label of a Terra call. 429 has its own value because being
// rate limited calls for a different response (back off) than other 4xx (fix the request).
func statusClass(status int, err error) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "429"
	case status >= 200 && status <= 599:
		return strconv.Itoa(status/100) + "xx"
	case err != nil || status == 0:
		return "error"
	default:
		return other
	}
}

// Circuit breaker states, as SetCircuit takes them.
const (
	CircuitClosed   = "closed"
	CircuitHalfOpen = "half-open"
	CircuitOpen     = "open"
)

var circuitStates = []string{CircuitClosed, CircuitHalfOpen, CircuitOpen}

// SetCircuit records that the circuit breaker in front of a Terra endpoint moved to state
// (CircuitClosed, CircuitHalfOpen or CircuitOpen). Every state of the endpoint is written,
// the current one 1 and the others 0, so a query on state="open" needs no absent() dance.
// An unknown state is ignored: it could only be shown as a state that does not exist.
func (m *Metrics) SetCircuit(endpoint, state string) {
	if m == nil || !slices.Contains(circuitStates, state) {
		return
	}
	endpoint = m.endpoints.admit(endpoint, isName(endpoint, 64), true)
	for _, s := range circuitStates {
		v := 0.0
		if s == state {
			v = 1
		}
		m.circuit.WithLabelValues(endpoint, s).Set(v)
	}
}

// Webhook event types kept as label values: the connection events terragate applies, and the
// data and service events Terra commonly sends. The list is spelled out here rather than
// taken from internal/terra so that package can take a *Metrics without an import cycle.
var webhookTypes = map[string]bool{
	"auth": true, "auth_cancelled": true, "deauth": true, "user_reauth": true,
	"access_revoked": true, "connection_error": true, "permission_change": true,

	"activity": true, "athlete": true, "body": true, "daily": true, "menstruation": true,
	"nutrition": true, "sleep": true,

	"healthcheck": true, "processing": true, "large_request_processing": true,
	"large_request_sending": true, "rate_limit_hit": true,
}

// Webhook outcomes, as Webhook takes them. Unchanged matches the store's inbox outcome for
// an event applied without changing anything (older or repeated news).
const (
	WebhookApplied   = "applied"
	WebhookUnchanged = "unchanged"
	WebhookDuplicate = "duplicate"
	WebhookIgnored   = "ignored"
	WebhookRefused   = "refused"
	WebhookError     = "error"
)

var webhookOutcomes = []string{WebhookApplied, WebhookUnchanged, WebhookDuplicate, WebhookIgnored, WebhookRefused, WebhookError}

// WebhookBytes counts n bytes of a verified webhook body.
func (m *Metrics) WebhookBytes(n int64) {
	if m == nil {
		return
	}
	m.webhookBytes.Add(float64(n))
}

// Webhook records one webhook delivery. eventType is Terra's event type ("" when the body
// was never decoded, as for a refused signature); types outside a fixed list become
// "other", since the type comes from the request body. outcome is one of the Webhook*
// constants; anything else becomes "other".
func (m *Metrics) Webhook(eventType, outcome string) {
	if m == nil {
		return
	}
	if !webhookTypes[eventType] {
		eventType = other
	}
	if !slices.Contains(webhookOutcomes, outcome) {
		outcome = other
	}
	m.webhooks.WithLabelValues(eventType, outcome).Inc()
}

// ObserveDeliveryLag records how long after Terra signed it a webhook delivery was applied.
// A negative duration (Terra's clock ahead of ours) counts as 0.
func (m *Metrics) ObserveDeliveryLag(d time.Duration) {
	if m == nil {
		return
	}
	m.deliveryLag.Observe(max(d, 0).Seconds())
}

// SubscriptionOpened records a GraphQL subscription starting; SubscriptionClosed must follow
// when it ends.
func (m *Metrics) SubscriptionOpened() {
	if m == nil {
		return
	}
	m.subscriptions.Inc()
}

// SubscriptionClosed records a GraphQL subscription ending.
func (m *Metrics) SubscriptionClosed() {
	if m == nil {
		return
	}
	m.subscriptions.Dec()
}

// UnlistedDocument records a request whose document is not among the trusted documents,
// let through in the rollout mode. The document is no label: its text is the caller's.
func (m *Metrics) UnlistedDocument() {
	if m == nil {
		return
	}
	m.unlistedDocuments.Inc()
}

// anyProvider labels sessions that offer every provider (an empty provider list).
const anyProvider = "any"

// SessionCreated records a widget session created for providers, counting it once for each
// distinct provider (so a rate by provider reads as "sessions that offered it"). An empty
// list, which offers every provider, counts under "any".
func (m *Metrics) SessionCreated(providers []string) {
	if m == nil {
		return
	}
	if len(providers) == 0 {
		m.sessionsCreated.WithLabelValues(anyProvider).Inc()
		return
	}
	seen := make(map[string]bool, len(providers))
	for _, p := range providers {
		p = m.provider(p)
		if !seen[p] {
			seen[p] = true
			m.sessionsCreated.WithLabelValues(p).Inc()
		}
	}
}

// SessionCompleted records a widget session that ended with provider connected.
func (m *Metrics) SessionCompleted(provider string) {
	if m == nil {
		return
	}
	m.sessionsCompleted.WithLabelValues(m.provider(provider)).Inc()
}

// provider is the label value of a provider name: Terra's form (upper case letters, digits
// and underscores, starting with a letter, at most 40 characters, as the widget package
// accepts them), up to maxProviders distinct names; anything else is "other".
func (m *Metrics) provider(p string) string {
	return m.providers.admit(p, isProvider(p), true)
}
