package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/terragate/terragate/internal/tracing/tracingtest"
)

const relayTestSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// relayReceiver is an app backend on loopback: it hands each request to got, and answers
// with answer (200 when it returns).
type relayReceiver struct {
	srv *httptest.Server
	got chan relayRequest
}

type relayRequest struct {
	header http.Header
	body   []byte
}

func newRelayReceiver(t *testing.T, answer func(n int, w http.ResponseWriter)) *relayReceiver {
	t.Helper()
	rc := &relayReceiver{got: make(chan relayRequest, 16)}
	n := 0
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n++ // the handler runs one request at a time here: the gateway's first blocks
		rc.got <- relayRequest{header: r.Header.Clone(), body: body}
		answer(n, w)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *relayReceiver) next(t *testing.T) relayRequest {
	t.Helper()
	select {
	case r := <-rc.got:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("the backend got nothing")
		return relayRequest{}
	}
}

// A data event posted by Terra reaches the app's backend byte for byte, signed the Standard
// Webhooks way; the gateway stopped mid-relay and started again on the same database sends
// it again (the same webhook-id), and nothing of the health data shows in logs or metrics.
func TestRelayThroughRestart(t *testing.T) {
	const marker = "MARKER-7f3a-heart-rate-data"
	release := make(chan struct{})
	backend := newRelayReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 1 {
			<-release // the gateway stops while its first attempt is in flight
		}
	})
	dbURL := testDatabaseURL(t)
	if strings.HasPrefix(dbURL, "sqlite:") {
		dbURL = "sqlite:" + filepath.Join(t.TempDir(), "relay.db")
	}
	opts := []option{
		withoutWebhooks(),
		withEnv("DATABASE_URL", dbURL),
		withEnv("RELAY_DESTINATIONS", `[{"name":"backend","url":"`+backend.srv.URL+`/terra","events":["activity"],"secret":"`+relayTestSecret+`"}]`),
		withEnv("RELAY_RETRY_SCHEDULE", "50ms,100ms"),
	}
	g1 := startGateway(t, opts...)
	body := []byte(`{"type":"activity","user":{"user_id":"u-1","provider":"OURA","reference_id":"alice"},` +
		`"data":[{"metadata":{"summary_id":"s1"},"heart_rate_data":{"note":"` + marker + `","avg_bpm": 61.50}}],"version":"2022-03-16"}`)
	h := signedHeader(body, time.Now(), "trace-relay-1")
	h.Set("terra-reference", "ref-42")
	h.Set("x-terra-ordering-timestamp", "1751371200")
	if resp, answer := g1.postWebhook(body, h); resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook: %d %s", resp.StatusCode, answer)
	}
	// Not relayed: the destination wants activity only.
	sleep := []byte(`{"type":"sleep","user":{"user_id":"u-1"},"data":[]}`)
	if resp, answer := g1.postWebhook(sleep, signedHeader(sleep, time.Now(), "trace-relay-2")); resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook: %d %s", resp.StatusCode, answer)
	}

	first := backend.next(t)
	wh, err := standardwebhooks.NewWebhook(relayTestSecret)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.body, body) {
		t.Errorf("relayed body = %q; want Terra's byte for byte", first.body)
	}
	if err := wh.Verify(first.body, first.header); err != nil {
		t.Errorf("signature: %v", err)
	}
	for k, want := range map[string]string{"terragate-event-type": "activity", "terra-reference": "ref-42",
		"x-terra-trace-id": "trace-relay-1", "x-terra-ordering-timestamp": "1751371200", "content-type": "application/json"} {
		if got := first.header.Get(k); got != want {
			t.Errorf("%s = %q; want %q", k, got, want)
		}
	}

	g1.stop()
	select {
	case <-g1.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the gateway did not stop")
	}
	close(release)

	g2 := startGateway(t, opts...)
	again := backend.next(t)
	if again.header.Get("webhook-id") != first.header.Get("webhook-id") || !bytes.Equal(again.body, body) {
		t.Errorf("after the restart: webhook-id %q, body %q; want the same message", again.header.Get("webhook-id"), again.body)
	}
	if err := wh.Verify(again.body, again.header); err != nil {
		t.Errorf("signature after the restart: %v", err)
	}
	select {
	case r := <-backend.got:
		t.Errorf("the backend got another request: %s", r.header.Get("terragate-event-type"))
	default:
	}

	// The attempt is counted once it has ended, just after the backend answered.
	var metricsText []byte
	for end := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get(g2.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		metricsText, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(metricsText), `terragate_relay_attempts_total{destination="backend",outcome="delivered"} 1`) &&
			strings.Contains(string(metricsText), `terragate_relay_backlog{destination="backend"} 0`) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("metrics never showed the delivery:\n%s", grepRelay(metricsText))
		}
		time.Sleep(20 * time.Millisecond) // polling /metrics until a deadline
	}
	for what, text := range map[string]string{
		"logs": g1.logs.String() + g2.logs.String(), "stdout": g1.stdout.String() + g2.stdout.String(),
		"metrics": string(metricsText), "answers": g1.seen.String() + g2.seen.String(),
	} {
		if strings.Contains(text, marker) || strings.Contains(text, "avg_bpm") {
			t.Errorf("health data in %s", what)
		}
	}
}

func grepRelay(text []byte) string {
	var out []string
	for line := range strings.SplitSeq(string(text), "\n") {
		if strings.Contains(line, "relay") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// Each relay attempt is a client span of its own when tracing is on, named by the
// destination's path: nothing of the body, the destination's query or its secret is exported.
func TestRelayTraced(t *testing.T) {
	const marker = "MARKER-9c1e-sleep-stages"
	rc := &tracingtest.Receiver{}
	collector := httptest.NewServer(rc)
	defer collector.Close()
	backend := newRelayReceiver(t, func(int, http.ResponseWriter) {})
	g := startGateway(t, withoutWebhooks(), withEnv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL),
		withEnv("RELAY_DESTINATIONS", `[{"name":"backend","url":"`+backend.srv.URL+`/hooks/terra?key=query-secret-77","secret":"`+relayTestSecret+`"}]`))
	body := []byte(`{"type":"sleep","user":{"user_id":"u-1"},"data":[{"note":"` + marker + `"}]}`)
	if resp, answer := g.postWebhook(body, signedHeader(body, time.Now(), "trace-traced-1")); resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook: %d %s", resp.StatusCode, answer)
	}
	if got := backend.next(t); got.header.Get("traceparent") == "" {
		t.Error("the attempt carried no traceparent")
	}
	g.stop() // flushes the spans
	var span *tracepb.Span
	for end := time.Now().Add(10 * time.Second); span == nil; {
		for _, s := range rc.Spans() {
			if s.Name == "POST /hooks/terra" {
				span = s
			}
		}
		if span == nil && time.Now().After(end) {
			t.Fatalf("no relay span among %d", len(rc.Spans()))
		}
		time.Sleep(20 * time.Millisecond) // polling the collector until a deadline
	}
	if span.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("relay span kind %v; want client", span.Kind)
	}
	for _, raw := range rc.Raw() {
		for _, leak := range []string{marker, "query-secret-77", relayTestSecret} {
			if bytes.Contains(raw, []byte(leak)) {
				t.Errorf("exported spans contain %q", leak)
			}
		}
	}
}
