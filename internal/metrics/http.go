package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTP counts and times the requests next serves under route, a name the caller gives (the
// pattern it mounts next at, such as "/graphql"), never the request's path, which a client
// chooses. Status is recorded by class (2xx, 4xx, ...): the exact code is in the access log.
// WebSocket upgrades are counted as 1xx and not timed, since their duration is the
// connection's lifetime. On a nil *Metrics it returns next.
func (m *Metrics) HTTP(route string, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	if route == "" {
		route = other
	}
	// Resolved once here rather than per request: the label values are fixed.
	duration := m.httpDuration.WithLabelValues(route)
	requests := m.httpRequests.MustCurryWith(map[string]string{"route": route})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		start := time.Now()
		returned := false
		defer func() {
			status := rec.status
			switch {
			case status == 0 && !returned:
				// A panic: net/http answers 500 or drops the connection. Not recovering here
				// leaves the panic's stack intact for net/http's log.
				status = http.StatusInternalServerError
			case status == 0:
				status = http.StatusOK // nothing written: net/http sends 200
			}
			observeHTTP(requests, duration, status, start)
		}()
		next.ServeHTTP(rec, r)
		returned = true
	})
}

func observeHTTP(requests *prometheus.CounterVec, duration prometheus.Observer, status int, start time.Time) {
	requests.WithLabelValues(statusLabel(status)).Inc()
	if status != http.StatusSwitchingProtocols {
		duration.Observe(time.Since(start).Seconds())
	}
}

// statusRecorder remembers the first status written. It unwraps, so http.ResponseController
// and coder/websocket (which look for Hijacker and Flusher through Unwrap) still work.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	// 1xx other than 101 are informational and followed by the real status.
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Flush passes flushes on: streaming transports (server-sent events) assert http.Flusher
// directly instead of using http.ResponseController.
func (r *statusRecorder) Flush() {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func statusLabel(status int) string {
	if status < 100 || status > 599 {
		return other
	}
	return strconv.Itoa(status/100) + "xx"
}
