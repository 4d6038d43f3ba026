package terrasim_test

import (
	"encoding/json"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
)

// Required fields per event, from Terra's events schemas (and NOTES for auth's extras).
var eventFields = map[string][]string{
	terra.EventAuth:             {"type", "status", "user", "reference_id", "widget_session_id", "message", "version"},
	terra.EventAuthCancelled:    {"type", "status", "reason", "reference_id", "flow_id"},
	terra.EventDeauth:           {"type", "user", "status", "message"},
	terra.EventUserReauth:       {"type", "new_user", "old_user", "status", "message", "version"},
	terra.EventAccessRevoked:    {"type", "user", "status", "message"},
	terra.EventConnectionError:  {"type", "user", "status", "message"},
	terra.EventPermissionChange: {"type", "user", "status", "message", "version", "scopes_added", "scopes_removed"},
}

var eventStatus = map[string]string{
	terra.EventAuth: "success", terra.EventAuthCancelled: "error", terra.EventDeauth: "success",
	terra.EventUserReauth: "warning", terra.EventAccessRevoked: "warning",
	terra.EventConnectionError: "warning", terra.EventPermissionChange: "warning",
}

// userFields are TerraUser's properties; user_id and provider are required non-empty.
var userFields = []string{"user_id", "provider", "created_at", "last_webhook_update", "scopes", "reference_id", "active"}

func checkEventShape(t *testing.T, ev map[string]any) {
	t.Helper()
	typ, _ := ev["type"].(string)
	for _, f := range eventFields[typ] {
		if _, ok := ev[f]; !ok {
			t.Errorf("%s event lacks %s: %v", typ, f, ev)
		}
	}
	if ev["status"] != eventStatus[typ] {
		t.Errorf("%s status %v, want %s", typ, ev["status"], eventStatus[typ])
	}
	for _, key := range []string{"user", "new_user", "old_user"} {
		u, ok := ev[key].(map[string]any)
		if !ok {
			continue
		}
		for _, f := range userFields {
			if _, ok := u[f]; !ok {
				t.Errorf("%s.%s missing", key, f)
			}
		}
		if u["user_id"] == "" || u["provider"] == "" {
			t.Errorf("%s without user_id or provider", key)
		}
	}
}

func TestControlsEmitEvents(t *testing.T) {
	cases := []struct {
		name  string
		event string
		do    func(t *testing.T, e *env, u terra.User) // performs the control
		check func(t *testing.T, e *env, u terra.User, ev map[string]any)
	}{
		{
			name: "connect", event: terra.EventAuth,
			do: func(*testing.T, *env, terra.User) {},
			check: func(t *testing.T, _ *env, u terra.User, ev map[string]any) {
				if ev["user"].(map[string]any)["user_id"] != u.UserID || ev["reference_id"] != "ref-1" {
					t.Errorf("auth event %v", ev)
				}
			},
		},
		{
			name: "deauth", event: terra.EventDeauth,
			do: func(t *testing.T, e *env, u terra.User) {
				if err := e.emu.Deauth(u.UserID); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, e *env, u terra.User, ev map[string]any) {
				if ev["user"].(map[string]any)["user_id"] != u.UserID || len(e.emu.Users()) != 0 {
					t.Errorf("deauth: %v, users %v", ev, e.emu.Users())
				}
			},
		},
		{
			name: "deauthenticateUser over HTTP", event: terra.EventDeauth,
			do: func(t *testing.T, e *env, u terra.User) {
				resp, body := e.call(t, "DELETE", "/v2/auth/deauthenticateUser?user_id="+u.UserID, "", creds())
				if resp.StatusCode != 200 || decode(t, body)["status"] != "success" {
					t.Fatalf("%d %s", resp.StatusCode, body)
				}
				resp, body = e.call(t, "DELETE", "/api/v2/auth/deauthenticateUser?user_id="+u.UserID, "", creds())
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("second deauth: %d", resp.StatusCode)
				}
				checkErrorShape(t, "/api/v2/", resp, body)
			},
			check: func(t *testing.T, e *env, _ terra.User, _ map[string]any) {
				if len(e.emu.Users()) != 0 {
					t.Errorf("user kept")
				}
			},
		},
		{
			name: "reauth", event: terra.EventUserReauth,
			do: func(t *testing.T, e *env, u terra.User) {
				nu, err := e.emu.Reauth(u.UserID)
				if err != nil || nu.UserID == u.UserID || nu.Provider != u.Provider {
					t.Fatalf("Reauth: %+v %v", nu, err)
				}
			},
			check: func(t *testing.T, e *env, u terra.User, ev map[string]any) {
				users := e.emu.Users()
				if len(users) != 1 || ev["new_user"].(map[string]any)["user_id"] != users[0].UserID ||
					ev["old_user"].(map[string]any)["user_id"] != u.UserID {
					t.Errorf("reauth: %v, users %v", ev, users)
				}
			},
		},
		{
			name: "revoke", event: terra.EventAccessRevoked,
			do: func(t *testing.T, e *env, u terra.User) {
				if err := e.emu.RevokeAccess(u.UserID); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, e *env, _ terra.User, ev map[string]any) {
				if ev["user"].(map[string]any)["active"] != false || *e.emu.Users()[0].Active {
					t.Errorf("user still active: %v", ev)
				}
			},
		},
		{
			name: "connection error", event: terra.EventConnectionError,
			do: func(t *testing.T, e *env, u terra.User) {
				if err := e.emu.ConnectionError(u.UserID); err != nil {
					t.Fatal(err)
				}
			},
			check: func(*testing.T, *env, terra.User, map[string]any) {},
		},
		{
			name: "permission change", event: terra.EventPermissionChange,
			do: func(t *testing.T, e *env, u terra.User) {
				if err := e.emu.ChangePermissions(u.UserID, []string{"heart:read", "body:read"}, []string{"sleep:read"}); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, e *env, _ terra.User, ev map[string]any) {
				want := "activity:read,daily:read,heart:read,body:read"
				if ev["scopes_added"] != "heart:read,body:read" || ev["scopes_removed"] != "sleep:read" ||
					ev["user"].(map[string]any)["scopes"] != want || *e.emu.Users()[0].Scopes != want {
					t.Errorf("permission_change: %v", ev)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := newReceiver(t)
			e := newEnv(t, terrasim.Config{WebhookURL: rc.srv.URL})
			u, err := e.emu.Connect("OURA", "ref-1")
			if err != nil {
				t.Fatal(err)
			}
			rc.event(terra.EventAuth)
			c.do(t, e, u)
			ev, r := rc.event(c.event)
			if !r.VerifyOK {
				t.Errorf("signature did not verify")
			}
			checkEventShape(t, ev)
			if _, err := terra.DecodeEvent(r.Body); err != nil {
				t.Errorf("DecodeEvent: %v", err)
			}
			c.check(t, e, u, ev)
		})
	}

	t.Run("unknown user", func(t *testing.T) {
		e := newEnv(t, terrasim.Config{})
		for name, err := range map[string]error{
			"deauth":      e.emu.Deauth("nobody"),
			"revoke":      e.emu.RevokeAccess("nobody"),
			"conn error":  e.emu.ConnectionError("nobody"),
			"permissions": e.emu.ChangePermissions("nobody", nil, nil),
		} {
			if err != terrasim.ErrUnknownUser {
				t.Errorf("%s: %v", name, err)
			}
		}
		if _, err := e.emu.Reauth("nobody"); err != terrasim.ErrUnknownUser {
			t.Errorf("reauth: %v", err)
		}
	})
}

func TestWebhookRetries(t *testing.T) {
	t.Run("500 twice then 200", func(t *testing.T) {
		rc := newReceiver(t, 500, 500)
		e := newEnv(t, terrasim.Config{WebhookURL: rc.srv.URL})
		if _, err := e.emu.Connect("OURA", ""); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "delivery", func() bool { d := e.emu.Deliveries(); return len(d) == 1 && d[0].Done })
		d := e.emu.Deliveries()[0]
		if !d.Delivered || d.Attempts != 3 || d.LastStatus != 200 || d.Type != terra.EventAuth {
			t.Errorf("delivery %+v", d)
		}
		got := rc.requests()
		if len(got) != 3 {
			t.Fatalf("%d requests, want 3", len(got))
		}
		for i, r := range got {
			if !r.VerifyOK {
				t.Errorf("attempt %d: signature did not verify", i)
			}
			if r.Header.Get("X-Terra-Trace-Id") != d.TraceID || r.Header.Get("terra-reference") != d.Reference {
				t.Errorf("attempt %d: trace id %q, reference %q", i, r.Header.Get("X-Terra-Trace-Id"), r.Header.Get("terra-reference"))
			}
			if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("terra-signature") == "" {
				t.Errorf("attempt %d: headers %v", i, r.Header)
			}
			if string(r.Body) != string(d.Payload) {
				t.Errorf("attempt %d: body changed", i)
			}
		}
	})
	t.Run("gives up", func(t *testing.T) {
		rc := newReceiver(t, 500, 502, 503, 500)
		e := newEnv(t, terrasim.Config{WebhookURL: rc.srv.URL, RetryDelays: []time.Duration{time.Millisecond, time.Millisecond}})
		if _, err := e.emu.Connect("OURA", ""); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "give up", func() bool { d := e.emu.Deliveries(); return len(d) == 1 && d[0].Done })
		d := e.emu.Deliveries()[0]
		if d.Delivered || d.Attempts != 3 || d.LastStatus != 503 {
			t.Errorf("delivery %+v", d)
		}
		waitFor(t, "log line", func() bool { return strings.Contains(e.log.String(), "giving up") })
	})
	t.Run("no webhook URL", func(t *testing.T) {
		e := newEnv(t, terrasim.Config{})
		if _, err := e.emu.Connect("OURA", ""); err != nil {
			t.Fatal(err)
		}
		if d := e.emu.Deliveries(); len(d) != 1 || !d[0].Done || d[0].Attempts != 0 {
			t.Errorf("deliveries %+v", d)
		}
	})
}

func TestAdminEndpoints(t *testing.T) {
	rc := newReceiver(t)
	e := newEnv(t, terrasim.Config{WebhookURL: rc.srv.URL})

	post := func(path, body string, want int) map[string]any {
		t.Helper()
		resp, b := e.call(t, "POST", "/_emulator/"+path, body, creds())
		if resp.StatusCode != want {
			t.Fatalf("%s: status %d, want %d: %s", path, resp.StatusCode, want, b)
		}
		return decode(t, b)
	}
	user := post("connect", `{"provider":"oura","reference_id":"r-9"}`, 200)["user"].(map[string]any)
	id := user["user_id"].(string)
	if user["provider"] != "OURA" {
		t.Errorf("connect: %v", user)
	}
	post("connect", `{"provider":"NOKIA"}`, 400)
	post("permissions", `{"user_id":"`+id+`","added":["heart:read"],"removed":[]}`, 200)
	post("revoke", `{"user_id":"`+id+`"}`, 200)
	post("connection-error", `{"user_id":"`+id+`"}`, 200)
	id = post("reauth", `{"user_id":"`+id+`"}`, 200)["user"].(map[string]any)["user_id"].(string)
	post("deauth", `{"user_id":"`+id+`"}`, 200)
	post("deauth", `{"user_id":"`+id+`"}`, 404)
	post("deauth", `not json`, 400)

	_, sid := newSession(t, e, map[string]string{"auth_success_redirect_url": "https://app.example/ok"})
	next := post("complete", `{"session_id":"`+sid+`","provider":"GARMIN","allow":true}`, 200)["redirect_url"].(string)
	if !strings.HasPrefix(next, "https://app.example/ok?user_id=") {
		t.Errorf("redirect_url %s", next)
	}
	post("complete", `{"session_id":"`+sid+`","provider":"GARMIN","allow":true}`, 410)

	post("fail", `{"path":"/v2/subscriptions","status":429,"body":"{\"detail\":\"rate limit exceeded\"}","header":{"Retry-After":["9"]},"times":1}`, 200)
	post("fail", `{"path":"/v2/subscriptions","delay":"bogus"}`, 400)
	resp, b := e.call(t, "GET", "/v2/subscriptions", "", creds())
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "9" || !strings.Contains(string(b), "rate limit") {
		t.Errorf("fault: %d %s", resp.StatusCode, b)
	}

	for _, path := range []string{"users", "requests", "deliveries"} {
		resp, b := e.call(t, "GET", "/_emulator/"+path, "", creds())
		if _, ok := decode(t, b)[path]; resp.StatusCode != 200 || !ok {
			t.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
	types := []string{}
	waitFor(t, "seven events", func() bool { return len(rc.requests()) == 7 })
	for _, r := range rc.requests() {
		var m map[string]any
		_ = json.Unmarshal(r.Body, &m)
		types = append(types, m["type"].(string))
	}
	slices.Sort(types)
	want := []string{"access_revoked", "auth", "auth", "connection_error", "deauth", "permission_change", "user_reauth"}
	if !slices.Equal(types, want) {
		t.Errorf("events %v", types)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		// A receiver that always fails, with retries far in the future: Close must stop
		// the waiting deliveries instead of leaving them behind.
		rc := newReceiver(t, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500)
		emu := terrasim.New(terrasim.Config{WebhookURL: rc.srv.URL, WebhookSecret: testSecret,
			RetryDelays: []time.Duration{time.Hour}})
		for range 5 {
			if _, err := emu.Connect("OURA", ""); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "first attempts", func() bool {
			for _, d := range emu.Deliveries() {
				if d.Attempts == 0 {
					return false
				}
			}
			return true
		})
		done := make(chan struct{})
		go func() { emu.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatal("Close did not return")
		}
		rc.srv.Close()
		for _, d := range emu.Deliveries() {
			if !d.Done || d.Delivered {
				t.Errorf("delivery after Close: %+v", d)
			}
		}
		// Events after Close are recorded, not sent.
		if _, err := emu.Connect("OURA", ""); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
