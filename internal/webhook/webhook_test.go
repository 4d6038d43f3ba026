package webhook_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/sqlite"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/webhook"
)

const secret = "whsec_test_0123456789abcdef"

type env struct {
	t   *testing.T
	st  store.Store
	srv *httptest.Server
	log *bytes.Buffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hooks.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &bytes.Buffer{}
	h, err := webhook.New([]string{secret}, connection.NewMapping(nil, nil).DecodeEvent, st, nil, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{t: t, st: st, srv: srv, log: logs}
}

func (e *env) post(v any, at time.Time) (int, string) {
	e.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL, bytes.NewReader(body))
	req.Header.Set("terra-signature", terra.Sign([]byte(secret), at, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func (e *env) session(id, ref string, created time.Time) {
	e.t.Helper()
	err := e.st.CreateWidgetSession(context.Background(), store.WidgetSession{
		ID: id, ReferenceID: ref, URL: "https://widget.example/session/" + id, Status: store.SessionCreated,
		CreatedAt: created, UpdatedAt: created, ExpiresAt: created.Add(15 * time.Minute),
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) sessionState(id string) store.WidgetSession {
	e.t.Helper()
	s, err := e.st.WidgetSession(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func user(id, provider, ref string) map[string]any {
	return map[string]any{"user_id": id, "provider": provider, "reference_id": ref, "active": true, "scopes": "activity:read"}
}

func TestNewRefusesEmptySecret(t *testing.T) {
	if _, err := webhook.New(nil, connection.NewMapping(nil, nil).DecodeEvent, nil, nil, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a webhook handler without a secret was built")
	}
}

func TestAuthOutcomesAreRecordedOnTheSession(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC().Truncate(time.Second)

	// auth success, matched by widget_session_id.
	e.session("s-ok", "alice", now.Add(-time.Minute))
	if code, body := e.post(map[string]any{"type": "auth", "status": "success", "user": user("u-1", "OURA", "alice"),
		"reference_id": "alice", "widget_session_id": "s-ok", "message": "ok", "version": "2022-03-16"}, now); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if s := e.sessionState("s-ok"); s.Status != store.SessionCompleted || s.TerraUserID != "u-1" || s.Provider != "OURA" {
		t.Errorf("after auth success: %+v", s)
	}

	// Legacy auth error, matched by widget_session_id.
	e.session("s-err", "alice", now.Add(-time.Minute))
	e.post(map[string]any{"type": "auth", "status": "error", "provider": "GARMIN", "reason": "provider_error",
		"reference_id": "alice", "widget_session_id": "s-err"}, now)
	if s := e.sessionState("s-err"); s.Status != store.SessionFailed || s.FailureReason != "provider_error" {
		t.Errorf("after auth error: %+v", s)
	}

	// 2026 auth_cancelled with only reference_id: the user's open session.
	e.session("s-cancel", "bob", now.Add(-time.Minute))
	e.post(map[string]any{"type": "auth_cancelled", "status": "error", "reason": "user_cancelled", "reference_id": "bob", "flow_id": nil}, now)
	if s := e.sessionState("s-cancel"); s.Status != store.SessionFailed || s.FailureReason != "user_cancelled" {
		t.Errorf("after auth_cancelled: %+v", s)
	}

	// A completed session never falls back, even to a later failure.
	e.post(map[string]any{"type": "auth_cancelled", "status": "error", "reason": "late", "reference_id": "alice", "flow_id": "s-ok"}, now.Add(time.Second))
	if s := e.sessionState("s-ok"); s.Status != store.SessionCompleted {
		t.Errorf("completed session changed: %+v", s)
	}
	// Failures never create users.
	if us, _ := e.st.ListTerraUsers(context.Background(), "bob", true); len(us) != 0 {
		t.Errorf("bob has users: %+v", us)
	}
}

func TestEveryConnectionEvent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	at := func(s int) time.Time { return now.Add(time.Duration(s) * time.Second) }
	get := func(id string) store.TerraUser {
		t.Helper()
		u, err := e.st.TerraUser(ctx, id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		return u
	}

	e.post(map[string]any{"type": "auth", "status": "success", "user": user("u-1", "OURA", "alice")}, at(0))
	if u := get("u-1"); u.Status != store.StatusConnected || !u.Active || u.ReferenceID != "alice" {
		t.Errorf("auth: %+v", u)
	}
	e.post(map[string]any{"type": "permission_change", "status": "warning", "message": "m", "version": "1",
		"user": map[string]any{"user_id": "u-1", "provider": "OURA"}, "scopes_added": "heart:read", "scopes_removed": "activity:read"}, at(1))
	if u := get("u-1"); strings.Join(u.Scopes, ",") != "heart:read" {
		t.Errorf("permission_change: scopes %v", u.Scopes)
	}
	e.post(map[string]any{"type": "connection_error", "status": "warning", "message": "m", "user": user("u-1", "OURA", "alice")}, at(2))
	if u := get("u-1"); u.Status != store.StatusError || !u.Active {
		t.Errorf("connection_error: %+v", u)
	}
	e.post(map[string]any{"type": "access_revoked", "status": "warning", "message": "m", "user": user("u-1", "OURA", "alice")}, at(3))
	if u := get("u-1"); u.Status != store.StatusRevoked || u.Active {
		t.Errorf("access_revoked: %+v", u)
	}

	e.post(map[string]any{"type": "auth", "status": "success", "user": user("u-2", "GARMIN", "alice")}, at(4))
	e.post(map[string]any{"type": "deauth", "status": "success", "message": "m", "user": user("u-2", "GARMIN", "alice")}, at(5))
	if u := get("u-2"); u.Status != store.StatusDisconnected || u.Active {
		t.Errorf("deauth: %+v", u)
	}

	e.post(map[string]any{"type": "auth", "status": "success", "user": user("u-3", "FITBIT", "alice")}, at(6))
	e.post(map[string]any{"type": "user_reauth", "status": "warning", "message": "m", "version": "2022-03-16",
		"new_user": user("u-4", "FITBIT", "alice"), "old_user": user("u-3", "FITBIT", "alice")}, at(7))
	if u := get("u-4"); u.Status != store.StatusConnected {
		t.Errorf("reauth new user: %+v", u)
	}
	if u := get("u-3"); u.ReplacedBy != "u-4" || u.Active {
		t.Errorf("reauth old user: %+v", u)
	}

	listed, err := e.st.ListTerraUsers(ctx, "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].UserID != "u-4" {
		t.Errorf("listed: %+v", listed)
	}
	if !strings.Contains(e.log.String(), `"type":"user_reauth"`) {
		t.Errorf("deliveries are not logged")
	}
}

func TestSeveralSecrets(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hooks.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logs := &bytes.Buffer{}
	const old, current = "whsec_old_0123456789abcdef", "whsec_new_fedcba9876543210"
	h, err := webhook.New([]string{old, current}, connection.NewMapping(nil, nil).DecodeEvent, st, nil, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	post := func(secret, userID string) int {
		body, _ := json.Marshal(map[string]any{"type": "auth", "status": "success", "user": user(userID, "OURA", "alice")})
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		req.Header.Set("terra-signature", terra.Sign([]byte(secret), time.Now(), body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(old, "u-old"); code != 200 {
		t.Errorf("old secret: %d", code)
	}
	if code := post(current, "u-new"); code != 200 {
		t.Errorf("new secret: %d", code)
	}
	if code := post("whsec_someone_else_entirely", "u-x"); code != 401 {
		t.Errorf("unknown secret: %d", code)
	}
	if !strings.Contains(logs.String(), `"secret_index":1`) || !strings.Contains(logs.String(), `"secret_index":0`) {
		t.Errorf("the matching secret is not logged by index:\n%s", logs)
	}
	if strings.Contains(logs.String(), old) || strings.Contains(logs.String(), current) {
		t.Error("a secret reached the log")
	}
	if _, err := webhook.New([]string{"", ""}, connection.NewMapping(nil, nil).DecodeEvent, st, nil, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a list of no secrets was accepted")
	}
}

// A database that cannot take the write in time (here another process holds SQLite's write
// lock) gets 503 within about a second, so Terra retries, and nothing is half-stored.
func TestSlowDatabaseAnswers503Quickly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slow.db")
	st, err := sqlite.Open(context.Background(), path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, err := webhook.New([]string{secret}, connection.NewMapping(nil, nil).DecodeEvent, st, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	blocker, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	conn, err := blocker.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}

	body, _ := json.Marshal(map[string]any{"type": "auth", "status": "success", "user": user("u-slow", "OURA", "alice")})
	post := func() (int, time.Duration) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		req.Header.Set("terra-signature", terra.Sign([]byte(secret), time.Now(), body))
		req.Header.Set("X-Terra-Trace-Id", "trace-slow")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	code, took := post()
	if code != http.StatusServiceUnavailable || took > 2*time.Second {
		t.Errorf("with the database locked: %d after %v, want 503 within about a second", code, took)
	}
	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	// Terra's retry, same trace id: applied now, not a duplicate of something half-stored.
	if code, _ := post(); code != http.StatusOK {
		t.Errorf("the retry: %d", code)
	}
	if u, err := st.TerraUser(context.Background(), "u-slow"); err != nil || u.Status != store.StatusConnected {
		t.Errorf("after the retry: %+v, %v", u, err)
	}
}

// buggy is the real SQLite store with a bug planted in front of it: applying a delivery whose
// body holds marker panics, before the store sees it or (after) once the store has committed
// it. It stands in for a bug in decoding or applying one event; the store, its inbox and its
// dead letters are real. The handler takes any Applier, so no hook is needed in the code.
type buggy struct {
	store.Store
	marker string
	after  bool
}

const panicText = "runtime error: index out of range [3] with length 3"

func (b *buggy) ApplyWebhook(ctx context.Context, d store.Delivery) (store.Outcome, error) {
	if !bytes.Contains(d.Body, []byte(b.marker)) {
		return b.Store.ApplyWebhook(ctx, d)
	}
	if b.after {
		if _, err := b.Store.ApplyWebhook(ctx, d); err != nil {
			return store.Outcome{}, err
		}
	}
	panic(panicText)
}

// A panic while applying one event is a bug, not bad data: Terra would retry it for a day and
// then drop it. It becomes a dead letter with a generic reason (stored, listed, replayable),
// the answer is a quick 200, and the events behind it and the server go on.
func TestPanicBecomesADeadLetter(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "hooks.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &bytes.Buffer{}
	h, err := webhook.New([]string{secret}, connection.NewMapping(nil, nil).DecodeEvent, &buggy{Store: st, marker: "u-bug"}, nil, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	post := func(userID, trace string) (int, string, time.Duration) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"type": "auth", "status": "success", "user": user(userID, "OURA", "alice")})
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		req.Header.Set("terra-signature", terra.Sign([]byte(secret), time.Now(), body))
		req.Header.Set("X-Terra-Trace-Id", trace)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v (the server went down?)", userID, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw), time.Since(start)
	}

	code, body, took := post("u-bug", "trace-bug")
	if code != http.StatusOK || !strings.Contains(body, `"dead_letter"`) || took > 2*time.Second {
		t.Fatalf("the panicking event: %d %s after %v, want a dead_letter 200 within about a second", code, body, took)
	}
	// The events behind it go through.
	if code, body, _ := post("u-ok", "trace-ok"); code != http.StatusOK || strings.Contains(body, "dead_letter") {
		t.Fatalf("the event behind it: %d %s", code, body)
	}
	if u, err := st.TerraUser(ctx, "u-ok"); err != nil || u.Status != store.StatusConnected {
		t.Errorf("the event behind it was not applied: %+v, %v", u, err)
	}
	if _, err := st.TerraUser(ctx, "u-bug"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the panicking event was half applied: %v", err)
	}
	// Terra's retry of it finds the dead letter, and does not make a second one.
	if code, body, _ := post("u-bug", "trace-bug"); code != http.StatusOK || !strings.Contains(body, "dead_letter") {
		t.Errorf("Terra's retry: %d %s", code, body)
	}

	page, err := st.ListWebhookEvents(ctx, store.InboxFilter{Outcome: string(store.InboxFailed)}, store.Page{First: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 1 {
		t.Fatalf("%d dead letters, want 1: %+v", len(page.Events), page.Events)
	}
	dead := page.Events[0]
	if dead.Type != "auth" || dead.TraceID != "trace-bug" || !strings.Contains(dead.Error, "internal error") {
		t.Errorf("dead letter: %+v", dead)
	}
	if strings.Contains(dead.Error, "index out of range") {
		t.Errorf("the stored reason repeats the panic: %q", dead.Error)
	}
	if !strings.Contains(logs.String(), panicText) || !strings.Contains(logs.String(), `"trace_id":"trace-bug"`) {
		t.Errorf("the panic is not logged with its trace id:\n%s", logs)
	}
	if strings.Contains(logs.String(), secret) {
		t.Error("the signing secret reached the log")
	}

	// Once the bug is fixed (here: replaying through the store itself), the replay applies it.
	ev, err := connection.NewMapping(nil, nil).DecodeEvent(dead.Body)
	if err != nil {
		t.Fatal(err)
	}
	d := store.Delivery{DedupeKey: dead.DedupeKey, TraceID: dead.TraceID, Source: dead.Source, SignedAt: dead.SignedAt,
		ReceivedAt: dead.ReceivedAt, Body: dead.Body, Event: ev}
	if _, err := st.ReplayDeadLetter(ctx, dead.ID, d); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if u, err := st.TerraUser(ctx, "u-bug"); err != nil || u.Status != store.StatusConnected {
		t.Errorf("after the replay: %+v, %v", u, err)
	}
}

// A panic after the delivery was committed (a bug in what follows, such as telling
// subscribers) leaves it applied: the answer is 200, with no dead letter beside it.
func TestPanicAfterCommitKeepsTheDelivery(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "hooks.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := webhook.New([]string{secret}, connection.NewMapping(nil, nil).DecodeEvent, &buggy{Store: st, marker: "u-late", after: true}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	body, _ := json.Marshal(map[string]any{"type": "auth", "status": "success", "user": user("u-late", "OURA", "alice")})
	req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
	req.Header.Set("terra-signature", terra.Sign([]byte(secret), time.Now(), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.Contains(string(raw), "dead_letter") {
		t.Errorf("%d %s, want a plain 200", resp.StatusCode, raw)
	}
	if u, err := st.TerraUser(ctx, "u-late"); err != nil || u.Status != store.StatusConnected {
		t.Errorf("the committed delivery: %+v, %v", u, err)
	}
	page, err := st.ListWebhookEvents(ctx, store.InboxFilter{}, store.Page{First: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 1 || page.Events[0].Outcome != store.InboxApplied {
		t.Errorf("inbox: %+v, want the one applied row", page.Events)
	}
}

// TestAnswers: a new delivery, Terra's retry of it and a malformed one get exactly the
// bodies Terra has always been sent.
func TestAnswers(t *testing.T) {
	e := newEnv(t)
	post := func(body []byte, trace string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL, bytes.NewReader(body))
		req.Header.Set("terra-signature", terra.Sign([]byte(secret), time.Now(), body))
		req.Header.Set("X-Terra-Trace-Id", trace)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		return resp.StatusCode, string(raw)
	}
	event, _ := json.Marshal(map[string]any{"type": "auth", "status": "success", "user": user("u-answers", "OURA", "alice")})
	for _, c := range []struct {
		name  string
		body  []byte
		trace string
		code  int
		want  string
	}{
		{"new", event, "trace-answers", http.StatusOK, `{"duplicate":false,"status":"ok"}` + "\n"},
		{"retried", event, "trace-answers", http.StatusOK, `{"duplicate":true,"status":"ok"}` + "\n"},
		{"retried without a trace id, new by its body", event, "", http.StatusOK, `{"duplicate":false,"status":"ok"}` + "\n"},
		{"the same body again", event, "", http.StatusOK, `{"duplicate":true,"status":"ok"}` + "\n"},
		{"malformed", []byte(`{"type":"deauth","user":"u1"}`), "trace-bad", http.StatusBadRequest,
			`{"error":"malformed event: terra webhook: invalid event: deauth: field \"Event.user\" has the wrong type"}` + "\n"},
		{"no type", []byte(`{"status":"success"}`), "trace-bad-2", http.StatusBadRequest,
			`{"error":"malformed event: terra webhook: invalid event: no type"}` + "\n"},
	} {
		if code, body := post(c.body, c.trace); code != c.code || body != c.want {
			t.Errorf("%s: %d %q; want %d %q", c.name, code, body, c.code, c.want)
		}
	}
}
