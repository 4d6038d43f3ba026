package terrasim_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terrasim"
)

var hexToken = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestGenerateAuthToken(t *testing.T) {
	for _, base := range []string{"/v2", "/api/v2"} {
		t.Run(base, func(t *testing.T) {
			e := newEnv(t, terrasim.Config{})
			resp, b := e.call(t, http.MethodPost, base+"/auth/generateAuthToken", "", creds())
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			m := decode(t, b)
			if m["status"] != "success" || m["expires_in"] != float64(180) || !hexToken.MatchString(m["token"].(string)) {
				t.Errorf("answer %v", m)
			}
			resp, b2 := e.call(t, http.MethodPost, base+"/auth/generateAuthToken", "", creds())
			if resp.StatusCode != http.StatusOK || decode(t, b2)["token"] == m["token"] {
				t.Errorf("second token %d %s: want a new one", resp.StatusCode, b2)
			}
			if resp, _ := e.call(t, http.MethodPost, base+"/auth/generateAuthToken", "", map[string]string{"dev-id": testDevID, "x-api-key": "wrong"}); resp.StatusCode != http.StatusForbidden {
				t.Errorf("wrong key: status %d", resp.StatusCode)
			}
			if resp, _ := e.call(t, http.MethodGet, base+"/auth/generateAuthToken", "", creds()); resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("GET: status %d", resp.StatusCode)
			}
		})
	}
}

// TestSDKConnect plays a phone: the app got a token from its backend and hands it, with a
// reference_id the device chose, to the SDK; Terra then sends an ordinary auth webhook.
func TestSDKConnect(t *testing.T) {
	now := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	var later atomic.Int64 // how far the emulator's clock is ahead of now
	rc := newReceiver(t)
	e := newEnv(t, terrasim.Config{WebhookURL: rc.srv.URL, Now: func() time.Time { return now.Add(time.Duration(later.Load())) }})
	token := func() string {
		t.Helper()
		_, b := e.call(t, http.MethodPost, "/v2/auth/generateAuthToken", "", creds())
		return decode(t, b)["token"].(string)
	}

	tok := token()
	u, err := e.emu.SDKConnect(tok, "APPLE", "end-user-1~tag")
	if err != nil {
		t.Fatal(err)
	}
	if u.Provider != "APPLE" || u.ReferenceID == nil || *u.ReferenceID != "end-user-1~tag" || u.UserID == "" {
		t.Errorf("user %+v", u)
	}
	ev, _ := rc.event("auth")
	user := ev["user"].(map[string]any)
	if ev["status"] != "success" || ev["reference_id"] != "end-user-1~tag" || user["provider"] != "APPLE" ||
		user["reference_id"] != "end-user-1~tag" || user["user_id"] != u.UserID || ev["widget_session_id"] != nil {
		t.Errorf("auth event %v", ev)
	}
	if _, err := e.emu.SDKConnect(tok, "APPLE", "end-user-1~tag"); err != terrasim.ErrTokenUsed {
		t.Errorf("token used twice: %v", err)
	}
	if _, err := e.emu.SDKConnect("00"+tok[2:], "APPLE", "x"); err != terrasim.ErrUnknownToken {
		t.Errorf("unknown token: %v", err)
	}
	if _, err := e.emu.SDKConnect(token(), "OURA", "x"); err != terrasim.ErrUnknownProvider {
		t.Errorf("a widget provider through the SDK: %v", err)
	}
	late := token()
	later.Store(int64(181 * time.Second))
	if _, err := e.emu.SDKConnect(late, "SAMSUNG", "x"); err != terrasim.ErrTokenExpired {
		t.Errorf("expired token: %v", err)
	}
	later.Store(0)

	t.Run("over HTTP", func(t *testing.T) {
		tok := token()
		body, _ := json.Marshal(map[string]string{"token": tok, "provider": "health_connect", "reference_id": "end-user-2"})
		resp, b := e.call(t, http.MethodPost, terrasim.AdminPrefix+"/sdk-connect", string(body), creds())
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		user := decode(t, b)["user"].(map[string]any)
		if user["provider"] != "HEALTH_CONNECT" || user["reference_id"] != "end-user-2" {
			t.Errorf("user %v", user)
		}
		for _, c := range []struct {
			name string
			body map[string]string
			want int
		}{
			{"used token", map[string]string{"token": tok, "provider": "APPLE", "reference_id": "r"}, http.StatusGone},
			{"unknown token", map[string]string{"token": "nope", "provider": "APPLE", "reference_id": "r"}, http.StatusNotFound},
			{"no token", map[string]string{"provider": "APPLE", "reference_id": "r"}, http.StatusBadRequest},
		} {
			body, _ := json.Marshal(c.body)
			if resp, b := e.call(t, http.MethodPost, terrasim.AdminPrefix+"/sdk-connect", string(body), creds()); resp.StatusCode != c.want {
				t.Errorf("%s: status %d, want %d: %s", c.name, resp.StatusCode, c.want, b)
			}
		}
		if resp, _ := e.call(t, http.MethodPost, terrasim.AdminPrefix+"/sdk-connect", string(body), nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("without credentials: status %d", resp.StatusCode)
		}
	})
}

// TestLegacyOnly: an account the new widget endpoint does not know yet answers 404 there,
// under both spellings, while the legacy endpoint works.
func TestLegacyOnly(t *testing.T) {
	e := newEnv(t, terrasim.Config{LegacyOnly: true})
	for _, p := range []string{"/api/widget/session", "/widget/api/session"} {
		if resp, b := e.call(t, http.MethodPost, p, `{}`, creds()); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d: %s", p, resp.StatusCode, b)
		}
	}
	if resp, b := e.call(t, http.MethodPost, "/v2/auth/generateWidgetSession", `{"show_disconnect":true}`, creds()); resp.StatusCode != http.StatusOK {
		t.Errorf("legacy: status %d: %s", resp.StatusCode, b)
	}
}
