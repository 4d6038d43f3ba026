package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/store/postgres/pgtest"
	"github.com/terragate/terragate/internal/terra"
)

// AuthEvent is the signed body of Terra's auth webhook for a new connection of end user
// ref, as Terra sends it.
func AuthEvent(userID, ref string) []byte {
	return []byte(`{"type":"auth","status":"success","user":{"user_id":"` + userID + `","provider":"OURA","reference_id":"` + ref +
		`","active":true,"scopes":"activity,sleep","created_at":"2026-11-25T10:00:00.000000+00:00","last_webhook_update":null},"reference_id":"` + ref +
		`","widget_session_id":null,"message":"User has successfully authenticated","version":"2022-03-16"}`)
}

// PostWebhook delivers body to the gateway as Terra would: signed now, with a trace id
// of its own.
func PostWebhook(ctx context.Context, c *http.Client, gatewayURL string, body []byte, traceID string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gatewayURL+"/webhooks/terra", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("terra-signature", terra.Sign([]byte(WebhookSecret), time.Now(), body))
	req.Header.Set("X-Terra-Trace-Id", traceID)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return check(resp, http.StatusOK)
}

// Webhooks is the ingest fixture: a gateway on a fresh database.
type Webhooks struct {
	r  *Runner
	gw *Gateway
}

// Deliver sends event i: a new connection of its own end user, so every delivery is
// verified, stored and applied (no duplicate short-cut).
func (w *Webhooks) Deliver(ctx context.Context, i int) error {
	n := strconv.Itoa(i)
	return PostWebhook(ctx, w.r.client, w.gw.URL, AuthEvent("bench-hook-tu-"+n, "bench-hook-user-"+n), "bench-trace-"+n)
}

// WebhookRows measures webhook ingest (verify, store durably, apply, answer) on SQLite and,
// when a server answers, on PostgreSQL: latency at the sustained rate Cfg.WebhookRate
// (open model) and the capacity at Cfg.InFlight deliveries in flight.
func (r *Runner) WebhookRows(ctx context.Context) ([]Row, error) {
	rows, err := r.webhookRows(ctx, "sqlite", r.sqliteURL("webhooks"))
	if err != nil || r.Cfg.Postgres == "" || pgtest.Ping(ctx, r.Cfg.Postgres) != nil {
		return rows, err
	}
	url, drop, err := pgtest.CreateSchema(r.Cfg.Postgres, "bench_")
	if err != nil {
		return rows, err
	}
	defer func() { _ = drop() }()
	pg, err := r.webhookRows(ctx, "postgres", url)
	return append(rows, pg...), err
}

func (r *Runner) webhookRows(ctx context.Context, engineName, databaseURL string) ([]Row, error) {
	gw, err := r.startGateway(ctx, databaseURL, nil)
	if err != nil {
		return nil, err
	}
	defer gw.Stop()
	w := &Webhooks{r: r, gw: gw}
	c := r.Cfg
	var achieved, p50, p99, late99, capacity []float64
	refused := 0
	for round := range c.Rounds {
		r.progress("webhook ingest (%s) at %.0f/s, round %d", engineName, c.WebhookRate, round+1)
		open := Open(ctx, c.WebhookRate, 512, c.WarmUp, c.Duration, &r.next, w.Deliver)
		r.progress("webhook ingest (%s) at %d in flight, round %d", engineName, c.InFlight, round+1)
		closed := Closed(ctx, c.InFlight, c.WarmUp, c.Duration, &r.next, w.Deliver)
		// A delivery refused with 503 (the store could not take it within its deadline)
		// is an outcome to report, not a broken run: Terra would send it again.
		if err := firstError(open, closed); err != nil && !only503(open, closed) {
			return nil, fmt.Errorf("webhook ingest: %w", err)
		}
		refused += open.Errors + closed.Errors
		achieved = append(achieved, open.PerSecond())
		p50, p99 = append(p50, micros(open.Quantile(.5))), append(p99, micros(open.Quantile(.99)))
		late99 = append(late99, micros(open.LateQuantile(.99)))
		capacity = append(capacity, closed.PerSecond())
	}
	busy := gw.BusyErrors()
	rate, tail := median(achieved), median(p99)
	row := Row{
		Scenario:  fmt.Sprintf("webhook ingest (%s), %.0f/s offered", engineName, c.WebhookRate),
		Baseline:  fmtRate(c.WebhookRate) + " offered" + sentLate(median(late99)),
		Terragate: fmtRate(rate) + fmt.Sprintf(", capacity %s at %d in flight", fmtRate(median(capacity)), c.InFlight),
		Ratio:     fmtRatio(rate / c.WebhookRate), P50: latency(median(p50)), P99: latency(tail),
		Spread: spread(p99, latency), Memory: fmt.Sprintf("%d busy errors, %d refused (503)", busy, refused),
	}
	if engineName == "sqlite" {
		row.Target = "≥ 2000/s, p99 < 20 ms, no SQLITE_BUSY"
		row.Met = rate >= 0.98*c.WebhookRate && c.WebhookRate >= 2000 && tail < 20_000 && busy == 0 && refused == 0
	}
	return []Row{row}, nil
}

// only503 reports whether every failed request of the runs was answered 503.
func only503(runs ...Stats) bool {
	for _, s := range runs {
		if s.Errors > 0 && (s.FirstError == nil || !strings.Contains(s.FirstError.Error(), "HTTP 503")) {
			return false
		}
		if s.Requests == 0 {
			return false
		}
	}
	return true
}
