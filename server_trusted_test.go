package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/terragate/terragate/internal/trusted"
)

// watchSession is a trusted subscription: its first message is the session as it is.
const watchSession = `subscription WatchSession($id: ID!) { widgetSession(id: $id) { status provider } }`

// writeManifest writes a manifest of docs as graphql-codegen's client preset does
// ({"sha256:<hex>": "<document>"}) and returns its path.
func writeManifest(t *testing.T, docs ...string) string {
	t.Helper()
	m := map[string]string{}
	for _, d := range docs {
		m["sha256:"+trusted.Hash(d)] = d
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "persisted-documents.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// postJSON posts a request body built from v with bearer, and returns the HTTP status and
// the GraphQL answer.
func (g *gateway) postJSON(bearer string, v any) (int, gqlResponse) {
	g.t.Helper()
	resp, body := g.post(string(mustJSON(v)), http.Header{"Authorization": {"Bearer " + bearer}})
	return resp.StatusCode, decodeAnswer(g.t, body)
}

// decodeAnswer parses a GraphQL response body, with or without errors.
func decodeAnswer(t *testing.T, body string) gqlResponse {
	t.Helper()
	var r gqlResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("not a GraphQL response: %q", body)
	}
	return r
}

func persistedQuery(doc string) map[string]any {
	return map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": trusted.Hash(doc)}}
}

// TestTrustedDocuments runs the gateway with TRUSTED_DOCUMENTS in its default mode,
// enforce: the manifest's documents run, named by documentId (POST and GET), by APQ's hash
// or sent as text; anything else is refused with PERSISTED_QUERY_NOT_FOUND before a
// resolver runs, over HTTP and over WebSocket in both subprotocols, and APQ cannot register
// a way around it.
func TestTrustedDocuments(t *testing.T) {
	g := startGateway(t, withEnv("TRUSTED_DOCUMENTS", writeManifest(t, listUsers, createSession, watchSession)))
	alice := token(t, "alice")
	calls := len(g.emu.Requests())

	handWritten := `mutation { createWidgetSession { url } }`
	for name, body := range map[string]map[string]any{
		"a hand-written document":     {"query": handWritten},
		"an unknown documentId":       {"documentId": "sha256:" + trusted.Hash(handWritten)},
		"an unknown APQ hash":         {"extensions": persistedQuery(handWritten)},
		"APQ registering a document":  {"query": handWritten, "extensions": persistedQuery(handWritten)},
		"a listed id with other text": {"query": handWritten, "documentId": "sha256:" + trusted.Hash(createSession)},
		"a listed document, edited":   {"query": createSession + " ", "variables": map[string]any{"in": nil}},
	} {
		status, r := g.postJSON(alice, body)
		if status != http.StatusOK || r.code() != "PERSISTED_QUERY_NOT_FOUND" || string(r.Data) != "null" {
			t.Errorf("%s: answered %d %+v, want PERSISTED_QUERY_NOT_FOUND", name, status, r)
		}
	}
	// What APQ was sent is not registered: the hash alone is still refused.
	if _, r := g.postJSON(alice, map[string]any{"extensions": persistedQuery(handWritten)}); r.code() != "PERSISTED_QUERY_NOT_FOUND" {
		t.Errorf("after an attempt to register it, the hash alone: %+v", r)
	}
	if n := len(g.emu.Requests()); n != calls {
		t.Errorf("refused documents reached Terra %d times", n-calls)
	}

	// The manifest's documents run, however they are named.
	in := map[string]any{"in": map[string]any{"providers": []string{"OURA"}}}
	var session widgetSession
	for name, body := range map[string]map[string]any{
		"documentId":         {"documentId": "sha256:" + trusted.Hash(createSession), "variables": in},
		"bare documentId":    {"documentId": trusted.Hash(createSession), "variables": in},
		"APQ hash":           {"extensions": persistedQuery(createSession), "variables": in},
		"text":               {"query": createSession, "variables": in},
		"text and its hash":  {"query": createSession, "extensions": persistedQuery(createSession), "variables": in},
		"text and its docId": {"query": createSession, "documentId": "sha256:" + trusted.Hash(createSession), "variables": in},
	} {
		status, r := g.postJSON(alice, body)
		var d struct {
			S widgetSession `json:"createWidgetSession"`
		}
		if status != http.StatusOK || len(r.Errors) > 0 || json.Unmarshal(r.Data, &d) != nil || d.S.SessionID == "" {
			t.Errorf("%s: answered %d %+v", name, status, r)
		}
		session = d.S
	}
	if n := len(g.emu.Requests()); n == calls {
		t.Error("Terra was never called for a session") // one call: the same open session is returned
	}
	get := func(params url.Values) (int, gqlResponse) {
		t.Helper()
		resp, body := httpGet(t, g.url+"/graphql?"+params.Encode(), http.Header{"Authorization": {"Bearer " + alice}})
		return resp.StatusCode, decodeAnswer(t, body)
	}
	if status, r := get(url.Values{"documentId": {"sha256:" + trusted.Hash(listUsers)}, "variables": {`{"all":true}`}}); status != http.StatusOK || len(r.Errors) > 0 || !strings.Contains(string(r.Data), "connectedUsers") {
		t.Errorf("GET with a documentId: %d %+v", status, r)
	}
	if _, r := get(url.Values{"query": {`{ connectedUsers { userId } }`}}); r.code() != "PERSISTED_QUERY_NOT_FOUND" {
		t.Errorf("GET with a hand-written query: %+v", r)
	}

	// Over WebSocket, in both subprotocols, the same rule.
	for _, proto := range []struct{ name, subscribe, next string }{
		{"graphql-transport-ws", "subscribe", "next"},
		{"graphql-ws", "start", "data"},
	} {
		t.Run(proto.name, func(t *testing.T) {
			c := g.dialWSProto(t, alice, proto.name)
			c.send(wsMessage{ID: "listed", Type: proto.subscribe, Payload: mustJSON(map[string]any{
				"documentId": "sha256:" + trusted.Hash(watchSession), "variables": map[string]any{"id": session.SessionID},
			})})
			m, ok := c.next("listed", 5*time.Second)
			var first struct {
				Data struct {
					W sessionState `json:"widgetSession"`
				} `json:"data"`
			}
			if !ok || m.Type != proto.next || json.Unmarshal(m.Payload, &first) != nil || first.Data.W.Status != "CREATED" {
				t.Errorf("a trusted subscription by documentId: %s %s", m.Type, m.Payload)
			}
			for id, payload := range map[string]map[string]any{
				"text":    {"query": `subscription($id: ID!) { widgetSession(id: $id) { status } }`, "variables": map[string]any{"id": session.SessionID}},
				"unknown": {"documentId": "sha256:" + trusted.Hash("subscription { connectionEvents { type } }")},
			} {
				c.send(wsMessage{ID: id, Type: proto.subscribe, Payload: mustJSON(payload)})
				m, ok := c.next(id, 5*time.Second)
				if !ok || !strings.Contains(string(m.Payload), `"code":"PERSISTED_QUERY_NOT_FOUND"`) || strings.Contains(string(m.Payload), `"data":{`) {
					t.Errorf("%s: %s %s, want PERSISTED_QUERY_NOT_FOUND", id, m.Type, m.Payload)
				}
				if m, ok := c.next(id, 5*time.Second); !ok || m.Type != "complete" {
					t.Errorf("%s: then %s %s, want complete", id, m.Type, m.Payload)
				}
			}
		})
	}
}

// TestTrustedDocumentsAllowUnlisted is the rollout mode: documents outside the manifest
// still run, and every request enforce would refuse is counted (and each document logged
// once, by hash) so an operator can tell when enforcing is safe. An id nobody knows is
// still not found.
func TestTrustedDocumentsAllowUnlisted(t *testing.T) {
	g := startGateway(t,
		withEnv("TRUSTED_DOCUMENTS", writeManifest(t, listUsers)),
		withEnv("TRUSTED_DOCUMENTS_MODE", "allow-unlisted"))
	alice := token(t, "alice")

	if _, r := g.postJSON(alice, map[string]any{"documentId": "sha256:" + trusted.Hash(listUsers)}); len(r.Errors) > 0 {
		t.Errorf("a trusted document by documentId: %+v", r)
	}
	unlisted := `query Old { connectedUsers { userId } }`
	for range 2 {
		if r := g.gql(alice, unlisted, nil); len(r.Errors) > 0 {
			t.Errorf("an unlisted document was refused: %+v", r)
		}
	}
	if _, r := g.postJSON(alice, map[string]any{"documentId": "sha256:" + trusted.Hash("{ providers { name } }")}); r.code() != "PERSISTED_QUERY_NOT_FOUND" {
		t.Errorf("an unknown documentId: %+v", r)
	}

	resp, page := httpGet(t, g.url+"/metrics", nil)
	// Every request enforce would refuse counts: the unknown id too.
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "terragate_graphql_unlisted_documents_total 3\n") {
		t.Errorf("/metrics does not count the 3 unlisted requests:\n%s", grepLines(page, "unlisted"))
	}
	if strings.Contains(page, "connectedUsers") {
		t.Error("/metrics shows a document's text")
	}
	if n := strings.Count(g.logs.String(), trusted.Hash(unlisted)); n != 1 {
		t.Errorf("the unlisted document's hash is logged %d times, want once:\n%s", n, g.logs.String())
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// dialWSProto opens a WebSocket in the given subprotocol and waits for connection_ack.
func (g *gateway) dialWSProto(t *testing.T, bearer, proto string) *wsClient {
	t.Helper()
	ctx := t.Context()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(g.url, "http")+"/graphql", &websocket.DialOptions{Subprotocols: []string{proto}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.CloseNow() })
	if conn.Subprotocol() != proto {
		t.Fatalf("the gateway chose %q, not %q", conn.Subprotocol(), proto)
	}
	c := &wsClient{t: t, conn: conn, ctx: ctx, msgs: make(chan wsMessage, 64), pending: map[string][]wsMessage{}}
	c.send(wsMessage{Type: "connection_init", Payload: mustJSON(map[string]any{"Authorization": "Bearer " + bearer})})
	go c.read()
	for {
		m, ok := c.next("", 5*time.Second)
		if !ok || m.Type == "closed" {
			t.Fatalf("no connection_ack: %v", c.err())
		}
		if m.Type == "connection_ack" {
			return c
		}
	}
}
