package webhook_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/sqlite"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/webhook"
)

// routes is a fixed relay routing: event type -> destinations. What is enqueued is seen in
// the store; recorder below checks the handler's word to the relay.
type routes map[string][]string

func (r routes) Route(typ string) []string { return r[typ] }
func (r routes) Enqueued([]string)         {}

// recorder is a routing that records what the handler said was enqueued.
type recorder struct {
	routes
	mu    sync.Mutex
	woken [][]string
}

func (r *recorder) Enqueued(dests []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.woken = append(r.woken, dests)
}

func (r *recorder) said() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.woken)
}

// The relay hears of an event's deliveries once they are committed, before Terra's answer,
// and of nothing for a duplicate or an event no destination wants.
func TestRelayToldOfCommittedDeliveries(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hooks.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec := &recorder{routes: routes{"activity": {"a", "b"}}}
	h, err := webhook.New([]string{secret}, connection.NewMapping(nil, nil).DecodeEvent, st, nil, slog.New(slog.DiscardHandler), webhook.WithRelay(rec))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	activity := []byte(`{"type":"activity","user":{"user_id":"u1"},"data":[]}`)
	sleep := []byte(`{"type":"sleep","user":{"user_id":"u1"},"data":[]}`)
	for i, ev := range []struct {
		body  []byte
		trace string
	}{{activity, "tr-1"}, {activity, "tr-1"}, {sleep, "tr-2"}} {
		if code := postRaw(t, srv.URL, ev.body, map[string]string{"X-Terra-Trace-Id": ev.trace}); code != 200 {
			t.Fatalf("status %d", code)
		}
		if i == 0 && len(relayLog(t, st)) != 2 {
			t.Fatal("the deliveries were not committed when Terra got its answer")
		}
	}
	if got := rec.said(); len(got) != 1 || !slices.Equal(got[0], []string{"a", "b"}) {
		t.Errorf("the relay was told %v; want [[a b]] once", got)
	}
}

func newRelayEnv(t *testing.T, r routes) (store.Store, *httptest.Server) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hooks.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := webhook.New([]string{secret}, connection.NewMapping(nil, nil).DecodeEvent, st, nil, slog.New(slog.DiscardHandler), webhook.WithRelay(r))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return st, srv
}

func postRaw(t *testing.T, url string, body []byte, header map[string]string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("terra-signature", terra.Sign([]byte(secret), time.Now(), body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func relayLog(t *testing.T, st store.Store) []store.RelayDelivery {
	t.Helper()
	p, err := st.ListRelayDeliveries(context.Background(), store.RelayFilter{}, store.Page{First: 100})
	if err != nil {
		t.Fatal(err)
	}
	return p.Deliveries
}

// A data event goes through the inbox transaction: recorded (without its body), and
// enqueued for every destination that wants its type, with Terra's headers; a duplicate
// relays once.
func TestDataEventEnqueuedForRelay(t *testing.T) {
	st, srv := newRelayEnv(t, routes{"activity": {"a", "b"}})
	body := []byte(`{"type":"activity","user":{"user_id":"u1","provider":"OURA"},"data":[{"x": 1.50}],"version":"2022-03-16"}`)
	hdr := map[string]string{"X-Terra-Trace-Id": "tr-1", "terra-reference": "ref-9", "x-terra-ordering-timestamp": "1751371200"}
	for range 2 {
		if code := postRaw(t, srv.URL, body, hdr); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	log := relayLog(t, st)
	if len(log) != 2 {
		t.Fatalf("relay log = %+v; want a and b once", log)
	}
	for _, d := range log {
		if d.EventType != "activity" || d.TraceID != "tr-1" || d.Reference != "ref-9" || d.OrderingTimestamp != "1751371200" {
			t.Errorf("delivery = %+v", d)
		}
	}
	got, err := st.RelayBody(context.Background(), log[0].EventID)
	if err != nil || !bytes.Equal(got, body) {
		t.Errorf("relay body = %q, %v", got, err)
	}
	inbox := inboxRows(t, st)
	if len(inbox) != 1 || len(inbox[0].Body) != 0 || inbox[0].Type != "activity" || inbox[0].Outcome != store.InboxIgnored {
		t.Errorf("inbox = %+v; want one data event without its body", inbox)
	}
}

// With no destination for its type, nothing of a data event's body is kept.
func TestDataEventWithoutDestinationKeepsNoBody(t *testing.T) {
	st, srv := newRelayEnv(t, routes{"sleep": {"a"}})
	body := []byte(`{"type":"activity","user":{"user_id":"u1"},"data":[{"marker":"x"}]}`)
	if code := postRaw(t, srv.URL, body, nil); code != 200 {
		t.Fatalf("status %d", code)
	}
	if log := relayLog(t, st); len(log) != 0 {
		t.Errorf("relay log = %+v; want none", log)
	}
	if inbox := inboxRows(t, st); len(inbox) != 1 || len(inbox[0].Body) != 0 {
		t.Errorf("inbox = %+v; want one row without body", inbox)
	}
}

// Connection events are applied as before, keep their body in the inbox, and are relayed to
// destinations that want them.
func TestConnectionEventRelayed(t *testing.T) {
	st, srv := newRelayEnv(t, routes{"auth": {"all"}})
	body := []byte(`{"type":"auth","status":"success","user":{"user_id":"u-1","provider":"OURA","reference_id":"alice","active":true},"reference_id":"alice","version":"2022-03-16"}`)
	if code := postRaw(t, srv.URL, body, nil); code != 200 {
		t.Fatalf("status %d", code)
	}
	if u, err := st.TerraUser(context.Background(), "u-1"); err != nil || u.Status != store.StatusConnected {
		t.Errorf("user = %+v, %v", u, err)
	}
	if inbox := inboxRows(t, st); len(inbox) != 1 || !bytes.Equal(inbox[0].Body, body) {
		t.Errorf("inbox = %+v", inbox)
	}
	if log := relayLog(t, st); len(log) != 1 || log[0].Destination != "all" || log[0].EventType != "auth" {
		t.Errorf("relay log = %+v", log)
	}
}

func inboxRows(t *testing.T, st store.Store) []store.InboxEvent {
	t.Helper()
	p, err := st.ListWebhookEvents(context.Background(), store.InboxFilter{}, store.Page{First: 100})
	if err != nil {
		t.Fatal(err)
	}
	return p.Events
}

// An event terragate cannot apply (a bug: here a panic while applying it, or while decoding
// it) is still Terra's event for the app: it is kept as a dead letter and relayed in that
// same transaction, once, however often Terra sends it again.
func TestDeadLetterRelayed(t *testing.T) {
	for _, c := range []struct {
		name   string
		decode func([]byte) (store.Event, error)
		wrap   func(store.Store) webhook.Applier
	}{
		{"applying", connection.NewMapping(nil, nil).DecodeEvent, func(st store.Store) webhook.Applier { return &buggy{Store: st, marker: "u-bug"} }},
		{"decoding", func(body []byte) (store.Event, error) {
			if bytes.Contains(body, []byte("u-bug")) {
				panic(panicText)
			}
			return connection.NewMapping(nil, nil).DecodeEvent(body)
		}, func(st store.Store) webhook.Applier { return st }},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hooks.db"), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			h, err := webhook.New([]string{secret}, c.decode, c.wrap(st), nil, slog.New(slog.DiscardHandler), webhook.WithRelay(routes{"auth": {"a"}}))
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			body := []byte(`{"type":"auth","status":"success","user":{"user_id":"u-bug","provider":"OURA","reference_id":"alice","active":true},"reference_id":"alice","version":"2022-03-16"}`)
			for range 2 { // Terra's retry finds the dead letter
				if code := postRaw(t, srv.URL, body, map[string]string{"X-Terra-Trace-Id": "tr-bug", "terra-reference": "ref-1"}); code != 200 {
					t.Fatalf("status %d", code)
				}
			}
			if inbox := inboxRows(t, st); len(inbox) != 1 || inbox[0].Outcome != store.InboxFailed {
				t.Fatalf("inbox = %+v; want one dead letter", inbox)
			}
			log := relayLog(t, st)
			if len(log) != 1 || log[0].Destination != "a" || log[0].EventType != "auth" || log[0].TraceID != "tr-bug" || log[0].Reference != "ref-1" {
				t.Fatalf("relay log = %+v; want the dead letter once for a", log)
			}
			if got, err := st.RelayBody(context.Background(), log[0].EventID); err != nil || !bytes.Equal(got, body) {
				t.Errorf("relay body = %q, %v; want Terra's", got, err)
			}
		})
	}
}
