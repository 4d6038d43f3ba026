package metrics_test

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/metrics"
)

func TestRelayMetrics(t *testing.T) {
	m := metrics.New()
	m.ObserveRelay(func(context.Context) ([]metrics.RelayBacklog, error) {
		return []metrics.RelayBacklog{{Destination: "backend", Pending: 3, OldestAge: 90 * time.Second}}, nil
	})
	m.RelayAttempt("backend", metrics.RelayDelivered, 20*time.Millisecond)
	m.RelayAttempt("backend", metrics.RelayRetry, time.Second)
	m.RelayAttempt("backend", "exploded", time.Second)
	m.RelayDeadLetter("backend")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`terragate_relay_attempts_total{destination="backend",outcome="delivered"} 1`,
		`terragate_relay_attempts_total{destination="backend",outcome="retry"} 1`,
		`terragate_relay_attempts_total{destination="backend",outcome="other"} 1`,
		`terragate_relay_attempt_duration_seconds_count{destination="backend"} 3`,
		`terragate_relay_dead_letters_total{destination="backend"} 1`,
		`terragate_relay_backlog{destination="backend"} 3`,
		`terragate_relay_oldest_pending_seconds{destination="backend"} 90`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	var none *metrics.Metrics
	none.RelayAttempt("backend", metrics.RelayDelivered, time.Second) // no panic on nil
	none.ObserveRelay(nil)
}
