package graph_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/terragate/terragate/graph"
	"github.com/terragate/terragate/internal/store"
)

// relayEvent stores a data event relayed to dests, as the webhook handler would.
func (s *server) relayEvent(t *testing.T, key, typ string, dests ...string) {
	t.Helper()
	now := time.Now()
	_, err := s.store.ApplyWebhook(context.Background(), store.Delivery{DedupeKey: key, SignedAt: now, ReceivedAt: now,
		Event: store.Event{Kind: store.EventIgnored, Type: typ},
		Relay: &store.RelayEvent{Type: typ, TraceID: key, Body: []byte(`{"type":"` + typ + `"}`), Destinations: dests}})
	if err != nil {
		t.Fatal(err)
	}
}

const relayQuery = `query($d: String, $s: RelayDeliveryStatus, $t: String, $first: Int, $after: String) {
  relayDeliveries(destination: $d, status: $s, eventType: $t, first: $first, after: $after) {
    edges { cursor node { id destination eventType webhookId status attempts lastStatusCode lastError nextAttemptAt deliveredAt createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}`

type relayNode struct {
	ID             string  `json:"id"`
	Destination    string  `json:"destination"`
	EventType      string  `json:"eventType"`
	WebhookID      string  `json:"webhookId"`
	Status         string  `json:"status"`
	Attempts       int     `json:"attempts"`
	LastStatusCode *int    `json:"lastStatusCode"`
	LastError      *string `json:"lastError"`
	NextAttemptAt  *string `json:"nextAttemptAt"`
}

func relayNodes(t *testing.T, r response) ([]relayNode, bool, string) {
	t.Helper()
	var data struct {
		RelayDeliveries struct {
			Edges []struct {
				Node relayNode `json:"node"`
			} `json:"edges"`
			PageInfo struct {
				HasNextPage bool   `json:"hasNextPage"`
				EndCursor   string `json:"endCursor"`
			} `json:"pageInfo"`
		} `json:"relayDeliveries"`
	}
	if err := json.Unmarshal(r.Data, &data); err != nil || len(r.Errors) > 0 {
		t.Fatalf("relayDeliveries: %s", r.raw)
	}
	var out []relayNode
	for _, e := range data.RelayDeliveries.Edges {
		out = append(out, e.Node)
	}
	return out, data.RelayDeliveries.PageInfo.HasNextPage, data.RelayDeliveries.PageInfo.EndCursor
}

// Service callers read the delivery log, filtered and paged; each read is audited; end
// users are refused.
func TestRelayDeliveries(t *testing.T) {
	s := startWithService(t, graph.Options{})
	s.relayEvent(t, "k1", "activity", "a", "b")
	s.relayEvent(t, "k2", "sleep", "a")
	nodes, more, end := relayNodes(t, s.postAs(testServiceKey, relayQuery, map[string]any{"first": 2}))
	if len(nodes) != 2 || !more || nodes[0].Status != "PENDING" || nodes[0].WebhookID == "" {
		t.Fatalf("first page = %+v, more %v", nodes, more)
	}
	rest, more, _ := relayNodes(t, s.postAs(testServiceKey, relayQuery, map[string]any{"first": 2, "after": end}))
	if len(rest) != 1 || more {
		t.Errorf("second page = %+v, more %v", rest, more)
	}
	only, _, _ := relayNodes(t, s.postAs(testServiceKey, relayQuery, map[string]any{"d": "a", "t": "sleep", "s": "PENDING"}))
	if len(only) != 1 || only[0].Destination != "a" || only[0].EventType != "sleep" {
		t.Errorf("a's sleep = %+v", only)
	}
	if r := s.postAs(token(t, "alice"), relayQuery, nil); len(r.Errors) != 1 || r.Errors[0].Extensions["code"] != graph.CodeForbidden {
		t.Errorf("end user: %s", r.raw)
	}
	page, err := s.store.ListAudit(context.Background(), store.AuditFilter{Action: store.ActionAdminRead}, store.Page{First: 10})
	if err != nil || len(page.Entries) != 3 || page.Entries[0].Subject != "relayDeliveries" {
		t.Errorf("admin reads = %+v, %v", page.Entries, err)
	}
}

// A dead letter goes back to PENDING on a service's request, audited with its outcome;
// anything else is CONFLICT, and an unknown id NOT_FOUND.
func TestReplayRelayDelivery(t *testing.T) {
	s := startWithService(t, graph.Options{})
	s.relayEvent(t, "k1", "activity", "a")
	now := time.Now()
	claimed, err := s.store.ClaimRelayDeliveries(context.Background(), "a", now, now.Add(time.Minute), 1)
	if err != nil || len(claimed) != 1 {
		t.Fatal(claimed, err)
	}
	const replay = `mutation($id: ID!) { replayRelayDelivery(id: $id) { id status attempts nextAttemptAt lastStatusCode } }`
	id := strconv.FormatInt(claimed[0].ID, 10)
	if r := s.postAs(testServiceKey, replay, map[string]any{"id": id}); len(r.Errors) != 1 || r.Errors[0].Extensions["code"] != graph.CodeConflict {
		t.Fatalf("replaying a pending delivery: %s", r.raw)
	}
	if _, err := s.store.FinishRelayDelivery(context.Background(), claimed[0], store.RelayResult{Status: store.RelayFailed, StatusCode: 410, Error: "410 Gone", At: now}); err != nil {
		t.Fatal(err)
	}
	r := s.postAs(testServiceKey, replay, map[string]any{"id": id})
	var data struct {
		ReplayRelayDelivery struct {
			Status        string  `json:"status"`
			Attempts      int     `json:"attempts"`
			NextAttemptAt *string `json:"nextAttemptAt"`
		} `json:"replayRelayDelivery"`
	}
	if err := json.Unmarshal(r.Data, &data); err != nil || len(r.Errors) > 0 || data.ReplayRelayDelivery.Status != "PENDING" ||
		data.ReplayRelayDelivery.NextAttemptAt == nil {
		t.Fatalf("replay: %s", r.raw)
	}
	for _, bad := range []struct{ id, code string }{{"999", graph.CodeNotFound}, {"x", graph.CodeBadUserInput}} {
		if r := s.postAs(testServiceKey, replay, map[string]any{"id": bad.id}); len(r.Errors) != 1 || r.Errors[0].Extensions["code"] != bad.code {
			t.Errorf("replay %q: %s; want %s", bad.id, r.raw, bad.code)
		}
	}
	if r := s.postAs(token(t, "alice"), replay, map[string]any{"id": id}); len(r.Errors) != 1 || r.Errors[0].Extensions["code"] != graph.CodeForbidden {
		t.Errorf("end user: %s", r.raw)
	}
	page, err := s.store.ListAudit(context.Background(), store.AuditFilter{Action: store.ActionRelayReplay}, store.Page{First: 10})
	if err != nil || len(page.Entries) != 1 || page.Entries[0].Subject != id || page.Entries[0].Actor != "svc:backend" ||
		page.Entries[0].Detail["outcome"] != "succeeded" {
		t.Errorf("replay audit = %+v, %v", page.Entries, err)
	}
}
