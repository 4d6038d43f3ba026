package graph_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/graph"
	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terrasim"
)

const testServiceKey = "svc_graph_KEY_00112233445566778899aabbccddeeff"

// startWithService is start with a service caller, "backend", that has testServiceKey.
func startWithService(t *testing.T, opts graph.Options) *server {
	t.Helper()
	v, err := auth.NewVerifierContext(context.Background(), auth.Config{Secret: []byte(testJWTSecret),
		ServiceKeys: []auth.ServiceKey{{Name: "backend", Key: testServiceKey}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	opts.Verifier = v
	return start(t, opts, nil)
}

// deadLetter keeps a webhook body as a dead letter, as the webhook handler would.
func (s *server) deadLetter(t *testing.T, key string, body any) string {
	t.Helper()
	b, _ := json.Marshal(body)
	now := time.Now()
	e, err := s.store.RecordDeadLetter(context.Background(), store.Delivery{DedupeKey: key, SignedAt: now, ReceivedAt: now,
		Body: b, Event: store.Event{Kind: store.EventAuthSuccess, Type: "auth"}}, "a bug, since fixed")
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatInt(e.ID, 10)
}

// A replay is audited as what it is, with its outcome, by the service that asked.
func TestReplayIsAudited(t *testing.T) {
	s := startWithService(t, graph.Options{})
	good := s.deadLetter(t, "trace-good", map[string]any{"type": "auth", "status": "success", "reference_id": "alice",
		"user": map[string]any{"user_id": "u-1", "provider": "OURA", "reference_id": "alice", "active": true}})
	bad := s.deadLetter(t, "trace-bad", map[string]any{"type": "user_reauth", "status": "warning",
		"new_user": map[string]any{"user_id": "u-same", "provider": "OURA", "reference_id": "alice"},
		"old_user": map[string]any{"user_id": "u-same", "provider": "OURA", "reference_id": "alice"}})
	const replay = `mutation($id: ID!) { replayWebhookEvent(id: $id) { outcome replays } }`
	if r := s.postAs(testServiceKey, replay, map[string]any{"id": good}); len(r.Errors) > 0 {
		t.Fatalf("replaying a good delivery: %s", r.raw)
	}
	if r := s.postAs(testServiceKey, replay, map[string]any{"id": bad}); len(r.Errors) != 1 || r.Errors[0].Extensions["code"] != graph.CodeReplayFailed {
		t.Fatalf("replaying a bad delivery: %s", r.raw)
	}
	// A replay that cannot run (not a dead letter any more) replays nothing and records nothing.
	if r := s.postAs(testServiceKey, replay, map[string]any{"id": good}); len(r.Errors) != 1 || r.Errors[0].Extensions["code"] != graph.CodeConflict {
		t.Fatalf("replaying an applied delivery: %s", r.raw)
	}
	page, err := s.store.ListAudit(context.Background(), store.AuditFilter{}, store.Page{First: 100})
	if err != nil {
		t.Fatal(err)
	}
	var replays []string
	for _, e := range page.Entries {
		if e.Actor != "svc:backend" {
			continue
		}
		if e.Action != "webhook.replay" || e.ActorKind != store.ActorService {
			t.Errorf("service entry %s %s (%s); want only webhook.replay", e.Action, e.Subject, e.ActorKind)
			continue
		}
		replays = append(replays, e.Subject+" "+e.Detail["outcome"])
	}
	want := []string{bad + " failed", good + " succeeded"} // newest first
	if len(replays) != 2 || replays[0] != want[0] || replays[1] != want[1] {
		t.Errorf("replay entries %q; want %q", replays, want)
	}
}

// A service key in an error message is scrubbed although no raw key is handed to the
// handler: the verifier finds it by its hash.
func TestServiceKeyScrubbedFromErrors(t *testing.T) {
	s := startWithService(t, graph.Options{})
	s.emu.Fail("/api/widget/session", terrasim.Fault{
		Status: http.StatusBadRequest, ContentType: "application/json",
		Body: `{"status":"error","message":"refused (key=` + testServiceKey + `)"}`,
	})
	r := s.post(`mutation { createWidgetSession(input: {providers: ["OURA"]}) { sessionId } }`)
	e := onlyError(t, r)
	if !strings.Contains(e.Message, "refused (key=") {
		t.Fatalf("message %q; want Terra's message, scrubbed", e.Message)
	}
	if strings.Contains(r.raw, testServiceKey) {
		t.Errorf("the service key reached the client: %s", r.raw)
	}
}
