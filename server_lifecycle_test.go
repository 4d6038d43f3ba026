package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/terragate/terragate/internal/terrasim"
	"github.com/terragate/terragate/internal/tracing/tracingtest"
)

// wsClient speaks the graphql-ws protocol (graphql-transport-ws) to the gateway.
type wsClient struct {
	mu      sync.Mutex
	readErr error // why reading stopped
	t       *testing.T
	conn    *websocket.Conn
	ctx     context.Context
	msgs    chan wsMessage
	pending map[string][]wsMessage // messages read while waiting for another id
}

type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// dialWS opens a graphql-ws connection; bearer "" sends no Authorization in connection_init.
// It returns the error of the handshake or of connection_init.
func (g *gateway) dialWS(bearer string, header http.Header) (*wsClient, error) {
	g.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g.t.Cleanup(cancel)
	wsURL := "ws" + strings.TrimPrefix(g.url, "http") + "/graphql"
	conn, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}, HTTPHeader: header})
	if err != nil {
		return nil, err
	}
	g.t.Cleanup(func() { _ = conn.CloseNow() })
	c := &wsClient{t: g.t, conn: conn, ctx: ctx, msgs: make(chan wsMessage, 64), pending: map[string][]wsMessage{}}
	payload := map[string]any{}
	if bearer != "" {
		payload["Authorization"] = "Bearer " + bearer
	}
	c.send(wsMessage{Type: "connection_init", Payload: mustJSON(payload)})
	go c.read()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			return nil, errors.New("closed before connection_ack")
		}
		if m.Type != "connection_ack" {
			return nil, errors.New("got " + m.Type + " instead of connection_ack")
		}
	case <-time.After(5 * time.Second):
		return nil, errors.New("no connection_ack")
	}
	return c, nil
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func (c *wsClient) send(m wsMessage) {
	b, _ := json.Marshal(m)
	if err := c.conn.Write(c.ctx, websocket.MessageText, b); err != nil {
		c.t.Logf("ws write: %v", err)
	}
}

// read forwards messages, answering pings, until the connection ends.
func (c *wsClient) read() {
	defer close(c.msgs)
	for {
		_, b, err := c.conn.Read(c.ctx)
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			return
		}
		var m wsMessage
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		if m.Type == "ping" {
			c.send(wsMessage{Type: "pong"})
			continue
		}
		c.msgs <- m
	}
}

func (c *wsClient) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

func (c *wsClient) subscribe(id, query string, vars map[string]any) {
	c.send(wsMessage{ID: id, Type: "subscribe", Payload: mustJSON(map[string]any{"query": query, "variables": vars})})
}

// registered waits until the gateway has started every operation subscribed so far, and
// with it registered each subscription with the event bus: it pings and waits for the pong.
// The gateway reads a connection's messages in order and starts each operation (its
// resolver included) before reading the next, so the pong comes only after. Messages that
// arrive first are kept for next.
func (c *wsClient) registered() {
	c.t.Helper()
	c.send(wsMessage{Type: "ping"})
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				c.t.Fatalf("closed before the pong: %v", c.err())
			}
			if m.Type == "pong" {
				return
			}
			c.pending[m.ID] = append(c.pending[m.ID], m)
		case <-deadline:
			c.t.Fatal("no pong within 5 s")
		}
	}
}

// next waits for the next message of subscription id ("next", "error" or "complete").
func (c *wsClient) next(id string, within time.Duration) (wsMessage, bool) {
	c.t.Helper()
	if q := c.pending[id]; len(q) > 0 {
		c.pending[id] = q[1:]
		return q[0], true
	}
	deadline := time.After(within)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				return wsMessage{Type: "closed"}, true
			}
			if m.ID == id {
				return m, true
			}
			c.pending[m.ID] = append(c.pending[m.ID], m)
		case <-deadline:
			return wsMessage{}, false
		}
	}
}

const connectionEventsSub = `subscription { connectionEvents { type at terraUser { userId provider status referenceId } } }`

type connectionEvent struct {
	ConnectionEvents struct {
		Type      string    `json:"type"`
		TerraUser terraUser `json:"terraUser"`
	} `json:"connectionEvents"`
}

// isError reports whether m carries an error (an error message, or a next message with
// errors) with the given extensions.code ("" for any).
func isError(m wsMessage, code string) bool {
	switch m.Type {
	case "error":
		return code == "" || strings.Contains(string(m.Payload), `"code":"`+code+`"`)
	case "next":
		var p struct {
			Errors []gqlError `json:"errors"`
		}
		if json.Unmarshal(m.Payload, &p) != nil || len(p.Errors) == 0 {
			return false
		}
		return code == "" || p.Errors[0].Extensions["code"] == code
	}
	return false
}

func decodeNext[T any](t *testing.T, m wsMessage) T {
	t.Helper()
	var p struct {
		Data   T          `json:"data"`
		Errors []gqlError `json:"errors"`
	}
	if m.Type != "next" || json.Unmarshal(m.Payload, &p) != nil || len(p.Errors) > 0 {
		t.Fatalf("want a next message with data, got %s %s", m.Type, m.Payload)
	}
	return p.Data
}

type sessionState struct {
	SessionID        string     `json:"sessionId"`
	Status           string     `json:"status"`
	Provider         *string    `json:"provider"`
	FailureReason    *string    `json:"failureReason"`
	TerraUser        *terraUser `json:"terraUser"`
	AlreadyConnected []string   `json:"alreadyConnected"`
}

const sessionQuery = `query($id: ID!) { widgetSession(id: $id) { sessionId status provider failureReason alreadyConnected terraUser { userId provider status } } }`

func (g *gateway) session(bearer, id string) *sessionState {
	g.t.Helper()
	r := g.gql(bearer, sessionQuery, map[string]any{"id": id})
	if len(r.Errors) > 0 {
		g.t.Fatalf("widgetSession: %+v", r.Errors)
	}
	var d struct {
		S *sessionState `json:"widgetSession"`
	}
	_ = json.Unmarshal(r.Data, &d)
	return d.S
}

func (g *gateway) waitSession(bearer, id, status string) *sessionState {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s := g.session(bearer, id); s != nil && s.Status == status {
			return s
		}
		time.Sleep(25 * time.Millisecond)
	}
	g.t.Fatalf("session %s never reached %s: %+v", id, status, g.session(bearer, id))
	return nil
}

func TestWidgetSessionStatus(t *testing.T) {
	g := startGateway(t)
	alice, bob := token(t, "alice"), token(t, "bob")

	ok := g.createSession(alice, map[string]any{"providers": []string{"OURA"}})
	if s := g.session(alice, ok.SessionID); s == nil || s.Status != "CREATED" || s.TerraUser != nil {
		t.Fatalf("new session: %+v", s)
	}
	// Someone else's session reads exactly like an unknown one.
	if s := g.session(bob, ok.SessionID); s != nil {
		t.Errorf("bob sees alice's session: %+v", s)
	}
	if s := g.session(alice, "00000000-0000-0000-0000-000000000000"); s != nil {
		t.Errorf("unknown id: %+v", s)
	}

	if _, err := g.emu.Complete(terraSessionID(t, ok), "OURA", true); err != nil {
		t.Fatal(err)
	}
	s := g.waitSession(alice, ok.SessionID, "COMPLETED")
	if s.Provider == nil || *s.Provider != "OURA" || s.TerraUser == nil || s.TerraUser.Provider != "OURA" {
		t.Errorf("completed session: %+v", s)
	}

	denied := g.createSession(alice, map[string]any{"providers": []string{"GARMIN"}})
	if _, err := g.emu.Complete(terraSessionID(t, denied), "GARMIN", false); err != nil {
		t.Fatal(err)
	}
	s = g.waitSession(alice, denied.SessionID, "FAILED")
	if s.FailureReason == nil || *s.FailureReason != "user_cancelled" || s.TerraUser != nil {
		t.Errorf("denied session: %+v", s)
	}
}

// terraSessionID is Terra's id of a session: the last segment of its widget URL.
func terraSessionID(t *testing.T, s widgetSession) string {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil || path.Base(u.Path) == "" {
		t.Fatalf("widget url %q", s.URL)
	}
	return path.Base(u.Path)
}

func TestWidgetSessionExpires(t *testing.T) {
	g := startGateway(t, withEmulator(func(c *terrasim.Config) { c.ExpiresIn = 1 }))
	alice := token(t, "alice")
	s := g.createSession(alice, map[string]any{"providers": []string{"OURA"}})

	ws, err := g.dialWS(alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.subscribe("s", `subscription($id: ID!) { widgetSession(id: $id) { status } }`, map[string]any{"id": s.SessionID})
	var seen []string
	for {
		m, ok := ws.next("s", 5*time.Second)
		if !ok {
			t.Fatalf("subscription stalled after %v", seen)
		}
		if m.Type == "complete" {
			break
		}
		seen = append(seen, decodeNext[struct {
			W sessionState `json:"widgetSession"`
		}](t, m).W.Status)
	}
	if strings.Join(seen, ",") != "CREATED,EXPIRED" {
		t.Errorf("statuses pushed: %v", seen)
	}
	if st := g.session(alice, s.SessionID); st.Status != "EXPIRED" {
		t.Errorf("query after expiry: %+v", st)
	}
}

func TestTrustedRedirects(t *testing.T) {
	// Webhooks held back: the gateway must confirm the connection with Terra itself.
	g := startGateway(t, withoutWebhooks(), withEnv("ALLOWED_REDIRECT_URLS", appOrigin+"/done,myapp://connected"))
	alice := token(t, "alice")
	s := g.createSession(alice, map[string]any{
		"providers":          []string{"OURA"},
		"successRedirectUrl": appOrigin + "/done?tab=1",
		"failureRedirectUrl": "myapp://connected",
	})
	reqs := g.emu.Requests()
	sent := reqs[len(reqs)-1].Body
	success, _ := sent["auth_success_redirect_url"].(string)
	failure, _ := sent["auth_failure_redirect_url"].(string)
	if !strings.HasPrefix(success, g.public()+"/widget/return/"+s.SessionID+"?state=") || !strings.HasPrefix(failure, g.public()+"/widget/return/"+s.SessionID+"?state=") {
		t.Fatalf("Terra was given %q and %q, not terragate's return URLs", success, failure)
	}

	// The browser comes back from the widget through terragate.
	back := connectInBrowser(t, s.URL, "Oura", "allow")
	if !strings.HasPrefix(back.String(), g.public()+"/widget/return/") {
		t.Fatalf("widget sent the browser to %s", back)
	}
	resp, app := follow(t, back.String())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("return answered %d", resp.StatusCode)
	}
	q := app.Query()
	if app.Scheme+"://"+app.Host+app.Path != appOrigin+"/done" || q.Get("tab") != "1" || q.Get("session_id") != s.SessionID ||
		q.Get("status") != "COMPLETED" || q.Get("provider") != "OURA" || q.Get("user_id") == "" {
		t.Fatalf("app redirect = %s", app)
	}
	users := g.connectedUsers(alice, false)
	if len(users) != 1 || users[0].UserID != q.Get("user_id") {
		t.Errorf("confirmed connection not stored: %+v", users)
	}

	// A replay changes nothing and shows a plain page.
	g.checkErrorPage(t, "replay", back.String(), http.StatusConflict, "This link was already used.")
	// Forgeries: another session's id, a tampered state, no state.
	other := g.createSession(alice, map[string]any{"providers": []string{"GARMIN"}, "successRedirectUrl": appOrigin + "/done"})
	forged := strings.Replace(back.String(), s.SessionID, other.SessionID, 1)
	for name, u := range map[string]string{
		"other session": forged,
		"bad state":     strings.Replace(back.String(), "state=success.", "state=success.9", 1),
		"no state":      g.public() + "/widget/return/" + other.SessionID + "?user_id=x&resource=GARMIN",
	} {
		g.checkErrorPage(t, name, u, http.StatusBadRequest, "This link is not valid.")
	}
	if st := g.session(alice, other.SessionID); st.Status != "CREATED" {
		t.Errorf("a forged return changed the session: %+v", st)
	}

	// A valid state with a forged user_id: another end user's connection, or an id Terra
	// answers 404 for. Terra is asked, nothing changes, and the app is not handed the id.
	bobs, err := g.emu.Connect("OURA", "bob")
	if err != nil {
		t.Fatal(err)
	}
	bob := token(t, "bob")
	for name, forgedID := range map[string]string{"bob's user_id": bobs.UserID, "unknown user_id": "00000000-0000-4000-8000-00000000dead"} {
		sess := g.createSession(alice, map[string]any{"providers": []string{"OURA"}, "successRedirectUrl": appOrigin + "/done?case=" + url.QueryEscape(name)})
		reqs = g.emu.Requests()
		ret, _ := reqs[len(reqs)-1].Body["auth_success_redirect_url"].(string)
		if !strings.Contains(ret, "/widget/return/"+sess.SessionID+"?state=") {
			t.Fatalf("%s: Terra was given %q", name, ret)
		}
		resp, app := follow(t, ret+"&user_id="+url.QueryEscape(forgedID)+"&resource=OURA&reference_id=alice")
		q := app.Query()
		if resp.StatusCode != http.StatusSeeOther || q.Get("session_id") != sess.SessionID || q.Get("status") != "CREATED" || q.Has("user_id") {
			t.Errorf("%s: answered %d, app redirect %s", name, resp.StatusCode, app)
		}
		asked := false
		for _, r := range g.emu.Requests() {
			asked = asked || (r.Path == "/v2/userInfo" && r.Query.Get("user_id") == forgedID)
		}
		if !asked {
			t.Errorf("%s: Terra was not asked to confirm the user_id", name)
		}
		if st := g.session(alice, sess.SessionID); st.Status != "CREATED" || st.TerraUser != nil {
			t.Errorf("%s: the session became %+v", name, st)
		}
		for who, bearer := range map[string]string{"alice": alice, "bob": bob} {
			for _, u := range g.connectedUsers(bearer, true) {
				if u.UserID == forgedID {
					t.Errorf("%s: %s now has the forged connection: %+v", name, who, u)
				}
			}
		}
	}
	if users := g.connectedUsers(alice, true); len(users) != 1 {
		t.Errorf("alice's connections after the forged returns: %+v", users)
	}

	// A phone-only source comes back with user_id=null: passed through, not confirmed.
	phone := g.createSession(alice, map[string]any{"providers": []string{"FITBIT"}, "successRedirectUrl": appOrigin + "/done"})
	reqs = g.emu.Requests()
	ret, _ := reqs[len(reqs)-1].Body["auth_success_redirect_url"].(string)
	resp, app = follow(t, ret+"&user_id=null&resource=APPLE&reference_id=alice")
	if resp.StatusCode != http.StatusSeeOther || app.Query().Get("user_id") != "null" || app.Query().Get("status") != "CREATED" {
		t.Errorf("phone-only return: %d %s", resp.StatusCode, app)
	}
	if st := g.session(alice, phone.SessionID); st.Status != "CREATED" {
		t.Errorf("phone-only session: %+v", st)
	}

	// Deny: the failure return records FAILED and goes to the deep link.
	denied := g.createSession(alice, map[string]any{"providers": []string{"POLAR"}, "failureRedirectUrl": "myapp://connected"})
	back = connectInBrowser(t, denied.URL, "Polar", "deny")
	resp, app = follow(t, back.String())
	if resp.StatusCode != http.StatusSeeOther || app.Scheme != "myapp" || app.Query().Get("status") != "FAILED" || app.Query().Get("user_id") != "" {
		t.Errorf("failure return: %d %s", resp.StatusCode, app)
	}
	if st := g.session(alice, denied.SessionID); st.Status != "FAILED" {
		t.Errorf("denied session: %+v", st)
	}
}

// checkErrorPage asserts that u answers status with terragate's plain error page: HTML
// with a human sentence, and nothing of the request (state, session id) or of secrets.
func (g *gateway) checkErrorPage(t *testing.T, name, u string, status int, sentence string) {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	if resp.StatusCode != status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("%s: answered %d %s, want %d text/html", name, resp.StatusCode, resp.Header.Get("Content-Type"), status)
	}
	if !strings.Contains(page, "<h1>"+sentence+"</h1>") || !strings.Contains(page, "Please go back to the app") {
		t.Errorf("%s: the page does not say %q in plain words:\n%s", name, sentence, page)
	}
	parsed, _ := url.Parse(u)
	leaks := []string{testAPIKey, testWebhookSecret, testDevID, testJWTSecret, path.Base(parsed.Path), "state=", "goroutine", ".go:"}
	if state := parsed.Query().Get("state"); state != "" {
		leaks = append(leaks, state)
		if i := strings.LastIndex(state, "."); i >= 0 {
			leaks = append(leaks, state[i+1:]) // the signature alone
		}
	}
	for _, leak := range leaks {
		if strings.Contains(page, leak) {
			t.Errorf("%s: the error page shows %q", name, leak)
		}
	}
}

// follow makes one request without following redirects and returns where it points.
func follow(t *testing.T, u string) (*http.Response, *url.URL) {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	return resp, loc
}

func TestSubscriptions(t *testing.T) {
	g := startGateway(t)
	alice, bob := token(t, "alice"), token(t, "bob")

	wa, err := g.dialWS(alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	wb, err := g.dialWS(bob, http.Header{"Origin": {appOrigin}})
	if err != nil {
		t.Fatal(err)
	}
	wa.subscribe("a", connectionEventsSub, nil)
	wb.subscribe("b", connectionEventsSub, nil)
	wa.registered()
	wb.registered()

	s := g.createSession(alice, map[string]any{"providers": []string{"OURA"}})
	wa.subscribe("s", `subscription($id: ID!) { widgetSession(id: $id) { status provider } }`, map[string]any{"id": s.SessionID})
	if m, ok := wa.next("s", 5*time.Second); !ok || decodeNext[struct {
		W sessionState `json:"widgetSession"`
	}](t, m).W.Status != "CREATED" {
		t.Fatalf("first session state: %+v", m)
	}
	if _, err := g.emu.Complete(terraSessionID(t, s), "OURA", true); err != nil {
		t.Fatal(err)
	}
	m, ok := wa.next("a", 5*time.Second)
	if !ok {
		t.Fatal("alice got no connection event")
	}
	ev := decodeNext[connectionEvent](t, m).ConnectionEvents
	if ev.Type != "CONNECTED" || ev.TerraUser.Provider != "OURA" || *ev.TerraUser.ReferenceID != "alice" {
		t.Errorf("alice's event: %+v", ev)
	}
	if m, ok := wa.next("s", 5*time.Second); !ok || decodeNext[struct {
		W sessionState `json:"widgetSession"`
	}](t, m).W.Status != "COMPLETED" {
		t.Errorf("session update: %+v", m)
	}
	if m, ok := wa.next("s", 5*time.Second); !ok || m.Type != "complete" {
		t.Errorf("the session subscription did not complete: %+v", m)
	}
	// Bob never hears of alice's connection.
	if m, ok := wb.next("b", 500*time.Millisecond); ok {
		t.Errorf("bob received %s %s", m.Type, m.Payload)
	}
	// Someone else's session cannot be watched.
	wb.subscribe("x", `subscription($id: ID!) { widgetSession(id: $id) { status } }`, map[string]any{"id": s.SessionID})
	if m, ok := wb.next("x", 5*time.Second); !ok || !isError(m, "NOT_FOUND") {
		t.Errorf("bob watching alice's session: %s %s", m.Type, m.Payload)
	}

	// Refused connections: no token, a forged one, a foreign origin.
	if _, err := g.dialWS("", nil); err == nil {
		t.Error("a connection without a token was accepted")
	}
	if _, err := g.dialWS("forged.token.here", nil); err == nil {
		t.Error("a connection with a forged token was accepted")
	}
	if _, err := g.dialWS(alice, http.Header{"Origin": {"https://evil.example.com"}}); err == nil {
		t.Error("a connection from a foreign origin was accepted")
	}
}

// Every change Terra reports about a connection reaches its end user's subscribers as it
// happens, with the connection as it is afterwards, and no one else's.
func TestSubscriptionsCarryEveryConnectionChange(t *testing.T) {
	g := startGateway(t)
	alice, bob := token(t, "alice"), token(t, "bob")
	wa, err := g.dialWS(alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	wb, err := g.dialWS(bob, nil)
	if err != nil {
		t.Fatal(err)
	}
	wa.subscribe("a", connectionEventsSub, nil)
	wb.subscribe("b", connectionEventsSub, nil)
	wa.registered()
	wb.registered()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	want := func(ws *wsClient, id, typ, userID, status string) {
		t.Helper()
		m, ok := ws.next(id, 5*time.Second)
		if !ok {
			t.Fatalf("no %s event for %s", typ, userID)
		}
		ev := decodeNext[connectionEvent](t, m).ConnectionEvents
		if ev.Type != typ || ev.TerraUser.UserID != userID || ev.TerraUser.Status != status {
			t.Fatalf("event %s for %s (%s), want %s for %s (%s)", ev.Type, ev.TerraUser.UserID, ev.TerraUser.Status, typ, userID, status)
		}
	}

	oura, err := g.emu.Connect("OURA", "alice")
	must(err)
	want(wa, "a", "CONNECTED", oura.UserID, "CONNECTED")
	must(g.emu.ChangePermissions(oura.UserID, []string{"heart:read"}, nil))
	want(wa, "a", "PERMISSIONS_CHANGED", oura.UserID, "CONNECTED")
	must(g.emu.ConnectionError(oura.UserID))
	want(wa, "a", "ERROR", oura.UserID, "ERROR")
	renewed, err := g.emu.Reauth(oura.UserID)
	must(err)
	want(wa, "a", "REAUTHENTICATED", renewed.UserID, "CONNECTED")
	fitbit, err := g.emu.Connect("FITBIT", "alice")
	must(err)
	want(wa, "a", "CONNECTED", fitbit.UserID, "CONNECTED")
	must(g.emu.RevokeAccess(fitbit.UserID))
	want(wa, "a", "REVOKED", fitbit.UserID, "REVOKED")

	// Bob heard none of it, though his subscription is live: his own connection arrives.
	if m, ok := wb.next("b", 300*time.Millisecond); ok {
		t.Errorf("bob received %s %s", m.Type, m.Payload)
	}
	bobs, err := g.emu.Connect("GARMIN", "bob")
	must(err)
	want(wb, "b", "CONNECTED", bobs.UserID, "CONNECTED")
	if m, ok := wa.next("a", 300*time.Millisecond); ok {
		t.Errorf("alice received %s %s", m.Type, m.Payload)
	}
}

func TestSubscriptionCapAndLeaks(t *testing.T) {
	g := startGateway(t)
	alice := token(t, "alice")
	base := runtime.NumGoroutine()

	ws, err := g.dialWS(alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Eleven subscriptions on one connection: whichever starts last is refused.
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}
	for _, id := range ids {
		ws.subscribe(id, connectionEventsSub, nil)
	}
	refused := 0
	for _, id := range ids {
		if m, ok := ws.next(id, 300*time.Millisecond); ok {
			if !isError(m, "TOO_MANY_SUBSCRIPTIONS") {
				t.Errorf("%s: %s %s", id, m.Type, m.Payload)
			}
			refused++
		}
	}
	if refused != 1 {
		t.Errorf("%d of 11 subscriptions refused, want 1", refused)
	}
	// The client goes away mid-stream: every goroutine it caused must end.
	_ = ws.conn.Close(websocket.StatusNormalClosure, "bye")
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+2 {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after the client left, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

func TestDisconnectUser(t *testing.T) {
	g := startGateway(t)
	alice, bob := token(t, "alice"), token(t, "bob")
	s := g.createSession(alice, map[string]any{"providers": []string{"OURA"}})
	if _, err := g.emu.Complete(terraSessionID(t, s), "OURA", true); err != nil {
		t.Fatal(err)
	}
	users := g.waitUsers(alice, false, "connection", func(u []terraUser) bool { return len(u) == 1 })
	id := users[0].UserID
	const disconnect = `mutation($id: ID!) { disconnectUser(userId: $id) { userId status active } }`

	// Not bob's: indistinguishable from unknown.
	if r := g.gql(bob, disconnect, map[string]any{"id": id}); r.code() != "NOT_FOUND" {
		t.Errorf("bob disconnecting alice's: %+v", r)
	}
	// Terra failing leaves the row as it was.
	g.emu.Fail("/v2/auth/deauthenticateUser", terrasim.Fault{Status: 503, Times: 1})
	if r := g.gql(alice, disconnect, map[string]any{"id": id}); r.code() != "UPSTREAM_UNAVAILABLE" {
		t.Errorf("Terra 503: %+v", r)
	}
	g.emu.Fail("/v2/auth/deauthenticateUser", terrasim.Fault{Delay: 3 * time.Second, Times: 1})
	if r := g.gql(alice, disconnect, map[string]any{"id": id}); r.code() != "UPSTREAM_UNAVAILABLE" {
		t.Errorf("Terra timing out: %+v", r)
	}
	if u := g.connectedUsers(alice, false); len(u) != 1 || u[0].Status != "CONNECTED" {
		t.Fatalf("after failed disconnects: %+v", u)
	}

	ws, err := g.dialWS(alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.subscribe("e", connectionEventsSub, nil)
	ws.registered()
	for i := 0; i < 2; i++ { // idempotent
		r := g.gql(alice, disconnect, map[string]any{"id": id})
		if len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"status":"DISCONNECTED"`) {
			t.Fatalf("disconnect %d: %+v %s", i, r.Errors, r.Data)
		}
	}
	if m, ok := ws.next("e", 5*time.Second); !ok || decodeNext[connectionEvent](t, m).ConnectionEvents.Type != "DISCONNECTED" {
		t.Errorf("no DISCONNECTED event: %+v", m)
	}
	for _, u := range g.emu.Users() {
		if u.UserID == id {
			t.Error("Terra still has the user")
		}
	}
	if u := g.connectedUsers(alice, false); len(u) != 0 {
		t.Errorf("still listed: %+v", u)
	}

	// Terra no longer knowing the user (404) still ends DISCONNECTED.
	s2 := g.createSession(alice, map[string]any{"providers": []string{"GARMIN"}})
	if _, err := g.emu.Complete(terraSessionID(t, s2), "GARMIN", true); err != nil {
		t.Fatal(err)
	}
	users = g.waitUsers(alice, false, "garmin", func(u []terraUser) bool { return len(u) == 1 })
	garmin := users[0].UserID
	g.emu.Fail("/v2/auth/deauthenticateUser", terrasim.Fault{Status: 404, Body: `{"status":"error","message":"user not found"}`, ContentType: "application/json", Times: 1})
	r := g.gql(alice, disconnect, map[string]any{"id": garmin})
	if len(r.Errors) > 0 || string(r.Data) != `{"disconnectUser":{"userId":"`+garmin+`","status":"DISCONNECTED","active":false}}` {
		t.Errorf("Terra 404: %+v %s", r.Errors, r.Data)
	}
	if u := g.connectedUsers(alice, false); len(u) != 0 {
		t.Errorf("listed after Terra's 404: %+v", u)
	}
	found := false
	for _, u := range g.connectedUsers(alice, true) {
		if u.UserID == garmin {
			found = true
			if u.Status != "DISCONNECTED" || u.Active {
				t.Errorf("after Terra's 404 the connection is %s (active %v), want DISCONNECTED", u.Status, u.Active)
			}
		}
	}
	if !found {
		t.Error("the connection is gone from the store instead of DISCONNECTED")
	}
}

func TestSyncConnections(t *testing.T) {
	g := startGateway(t, withoutWebhooks())
	alice := token(t, "alice")
	const sync = `mutation { syncConnections { userId provider status active } }`

	// Terra has a connection terragate never heard of (its webhook was lost).
	oura, err := g.emu.Connect("OURA", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.emu.Connect("GARMIN", "bob"); err != nil {
		t.Fatal(err)
	}
	ws, err := g.dialWS(alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.subscribe("e", connectionEventsSub, nil)
	ws.registered()
	if r := g.gql(alice, sync, nil); len(r.Errors) > 0 || !strings.Contains(string(r.Data), oura.UserID) || strings.Contains(string(r.Data), "GARMIN") {
		t.Fatalf("sync: %+v %s", r.Errors, r.Data)
	}
	if m, ok := ws.next("e", 5*time.Second); !ok || decodeNext[connectionEvent](t, m).ConnectionEvents.Type != "CONNECTED" {
		t.Errorf("no CONNECTED event from the sync: %+v", m)
	}

	// Terra's other response shape, {"users": [...]}, and a connection that vanished.
	if err := g.emu.Deauth(oura.UserID); err != nil {
		t.Fatal(err)
	}
	g.emu.Fail("/v2/userInfo", terrasim.Fault{Status: 200, Body: `{"users":[]}`, ContentType: "application/json", Times: 1})
	r := g.gql(alice, sync, nil)
	if len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"status":"DISCONNECTED"`) {
		t.Fatalf("sync after deauth: %+v %s", r.Errors, r.Data)
	}
	if m, ok := ws.next("e", 5*time.Second); !ok || decodeNext[connectionEvent](t, m).ConnectionEvents.Type != "DISCONNECTED" {
		t.Errorf("no DISCONNECTED event from the sync: %+v", m)
	}
	// A later sync seeing the old id again must not revive it.
	g.emu.Fail("/v2/userInfo", terrasim.Fault{Status: 200, Body: `[{"user_id":"` + oura.UserID + `","provider":"OURA","reference_id":"alice","active":true}]`, ContentType: "application/json", Times: 1})
	g.gql(alice, sync, nil)
	if u := g.connectedUsers(alice, false); len(u) != 0 {
		t.Errorf("a sync revived a disconnected user: %+v", u)
	}
	// Terra down: UPSTREAM_UNAVAILABLE, nothing changes.
	g.emu.Fail("/v2/userInfo", terrasim.Fault{Status: 502, Body: "<html>bad gateway</html>", ContentType: "text/html", Times: 1})
	if r := g.gql(alice, sync, nil); r.code() != "UPSTREAM_UNAVAILABLE" {
		t.Errorf("Terra 502: %+v", r)
	}
}

func TestSyncSweep(t *testing.T) {
	g := startGateway(t, withoutWebhooks(), withEnv("SYNC_INTERVAL", "150ms"))
	alice, bob := token(t, "alice"), token(t, "bob")
	if _, err := g.emu.Connect("OURA", "alice"); err != nil {
		t.Fatal(err)
	}
	garmin, err := g.emu.Connect("GARMIN", "bob")
	if err != nil {
		t.Fatal(err)
	}
	g.waitUsers(alice, false, "the sweep adding alice's", func(u []terraUser) bool { return len(u) == 1 })
	g.waitUsers(bob, false, "the sweep adding bob's", func(u []terraUser) bool { return len(u) == 1 })
	if err := g.emu.Deauth(garmin.UserID); err != nil {
		t.Fatal(err)
	}
	g.waitUsers(bob, true, "the sweep removing bob's", func(u []terraUser) bool { return len(u) == 1 && u[0].Status == "DISCONNECTED" })
	// The sweep pages through /subscriptions.
	paged := false
	for _, r := range g.emu.Requests() {
		if r.Path == "/v2/subscriptions" && r.Query.Get("page") != "" {
			paged = true
		}
	}
	if !paged {
		t.Error("the sweep did not page through /subscriptions")
	}
}

func TestProvidersAndIdempotentCreation(t *testing.T) {
	g := startGateway(t, withEnv("PROVIDERS_TTL", "1ms"))
	alice := token(t, "alice")
	const providers = `{ providers { name displayName sdkOnly } }`
	r := g.gql(alice, providers, nil)
	if len(r.Errors) > 0 || !strings.Contains(string(r.Data), `{"name":"OURA","displayName":"Oura","sdkOnly":false}`) ||
		!strings.Contains(string(r.Data), `"sdkOnly":true`) {
		t.Fatalf("providers: %+v %s", r.Errors, r.Data)
	}
	// Terra down: the cached list is served.
	g.emu.Fail("/v2/integrations", terrasim.Fault{Status: 503, Times: 5})
	time.Sleep(5 * time.Millisecond)
	if again := g.gql(alice, providers, nil); len(again.Errors) > 0 || string(again.Data) != string(r.Data) {
		t.Errorf("stale list not served: %+v", again)
	}
	if r := g.gql(alice, providers, nil); len(r.Errors) > 0 {
		t.Errorf("stale list: %+v", r.Errors)
	}

	in := map[string]any{"providers": []string{"OURA", "GARMIN"}}
	calls := func() int {
		n := 0
		for _, r := range g.emu.Requests() {
			if r.Path == "/api/widget/session" {
				n++
			}
		}
		return n
	}
	first := g.createSession(alice, in)
	second := g.createSession(alice, map[string]any{"providers": []string{"oura"}})
	again := g.createSession(alice, in)
	if again.SessionID != first.SessionID || again.URL != first.URL || calls() != 2 || second.SessionID == first.SessionID {
		t.Errorf("idempotency: first %s, again %s, other %s, Terra calls %d", first.SessionID, again.SessionID, second.SessionID, calls())
	}
	if other := g.createSession(token(t, "bob"), in); other.SessionID == first.SessionID {
		t.Error("bob got alice's session")
	}

	if _, err := g.emu.Complete(terraSessionID(t, first), "OURA", true); err != nil {
		t.Fatal(err)
	}
	g.waitUsers(alice, false, "oura", func(u []terraUser) bool { return len(u) == 1 })
	r = g.gql(alice, `mutation { createWidgetSession(input: {providers: ["OURA", "GARMIN", "FITBIT"]}) { alreadyConnected } }`, nil)
	if len(r.Errors) > 0 || string(r.Data) != `{"createWidgetSession":{"alreadyConnected":["OURA"]}}` {
		t.Errorf("alreadyConnected: %+v %s", r.Errors, r.Data)
	}
}

// On shutdown, subscribers get a proper close frame rather than a dropped connection, and
// the server does not wait on them.
func TestShutdownClosesSubscriptions(t *testing.T) {
	g := startGateway(t)
	ws, err := g.dialWS(token(t, "alice"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.subscribe("e", connectionEventsSub, nil)
	ws.registered()
	start := time.Now()
	g.stop()
	m, ok := ws.next("e", 5*time.Second)
	if !ok || m.Type != "closed" {
		t.Fatalf("after shutdown: %s %s", m.Type, m.Payload)
	}
	if status := websocket.CloseStatus(ws.err()); status != websocket.StatusNormalClosure {
		t.Errorf("close status %d (%v), want a normal closure", status, ws.err())
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("closing subscriptions took %v", took)
	}
}

func TestMetrics(t *testing.T) {
	g := startGateway(t)
	alice := token(t, "alice")
	s := g.createSession(alice, map[string]any{"providers": []string{"OURA"}})
	if _, err := g.emu.Complete(terraSessionID(t, s), "OURA", true); err != nil {
		t.Fatal(err)
	}
	g.waitUsers(alice, false, "the connection", func(u []terraUser) bool { return len(u) == 1 })
	g.gql("forged", listUsers, nil)

	resp, err := http.Get(g.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(b)
	for _, want := range []string{
		`terragate_widget_sessions_created_total{provider="OURA"} 1`,
		`terragate_widget_sessions_completed_total{provider="OURA"} 1`,
		`terragate_webhook_events_total{outcome="applied",type="auth"} 1`,
		`code="UNAUTHENTICATED"`,
		`terragate_http_requests_total{route="/graphql",status="2xx"}`,
		`go_goroutines`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, secret := range []string{alice, "alice", testAPIKey, testWebhookSecret} {
		if strings.Contains(page, secret) {
			t.Errorf("/metrics shows %q", secret)
		}
	}
}

// TestTracing runs the gateway with an OTLP endpoint: one operation is one trace, in which
// the Terra call and the store's work are children of the GraphQL span, and nothing
// exported names the end user, the token or a secret.
func TestTracing(t *testing.T) {
	rc := &tracingtest.Receiver{}
	collector := httptest.NewServer(rc)
	defer collector.Close()
	g := startGateway(t, withEnv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL))
	alice := token(t, "alice-traced")
	r := g.gql(alice, `mutation Connect { createWidgetSession(input: {providers: ["OURA"]}) { sessionId } }`, nil)
	if len(r.Errors) > 0 {
		t.Fatalf("createWidgetSession: %+v", r.Errors)
	}
	if r := g.gql(alice, `query Mine { connectedUsers { userId } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("connectedUsers: %+v", r.Errors)
	}
	// Spans leave in batches, and at the latest when the gateway flushes on shutdown.
	g.stop()
	deadline := time.Now().Add(10 * time.Second)
	for len(rc.Spans()) < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}

	op := rc.Span(t, "graphql Connect")
	if tracingtest.Attr(op, "graphql.operation.type") != "mutation" {
		t.Errorf("operation span attributes %v", op.Attributes)
	}
	call := rc.Span(t, "POST /api/widget/session")
	if call.Kind != tracepb.Span_SPAN_KIND_CLIENT || !bytes.Equal(call.TraceId, op.TraceId) {
		t.Errorf("Terra span: kind %v, trace %x, want a client span in the operation's trace %x", call.Kind, call.TraceId, op.TraceId)
	}
	saved := rc.Span(t, "store CreateWidgetSession")
	if !bytes.Equal(saved.TraceId, op.TraceId) || tracingtest.Attr(saved, "db.system.name") != "sqlite" && tracingtest.Attr(saved, "db.system.name") != "postgresql" {
		t.Errorf("store span: trace %x (operation %x), attributes %v", saved.TraceId, op.TraceId, saved.Attributes)
	}
	list := rc.Span(t, "store ListTerraUsers")
	mine := rc.Span(t, "graphql Mine")
	if !bytes.Equal(list.TraceId, mine.TraceId) || bytes.Equal(mine.TraceId, op.TraceId) {
		t.Errorf("each operation must be its own trace, holding its store span")
	}
	for _, raw := range rc.Raw() {
		for _, leak := range []string{"alice-traced", alice, testAPIKey, testWebhookSecret, testJWTSecret} {
			if bytes.Contains(raw, []byte(leak)) {
				t.Errorf("exported spans contain %q", leak)
			}
		}
	}
}
