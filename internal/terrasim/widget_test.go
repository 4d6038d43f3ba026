package terrasim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
)

var (
	providerLink = regexp.MustCompile(`<a class="provider" href="([^"]+)">([^<]+)</a>`)
	button       = regexp.MustCompile(`<button[^>]*name="decision" value="(allow|deny)">([^<]+)</button>`)
)

// newSession creates a widget session over HTTP and returns its URL and id.
func newSession(t *testing.T, e *env, params map[string]string) (sessionURL, id string) {
	t.Helper()
	b, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := e.call(t, "POST", "/v2/auth/generateWidgetSession", string(b), creds())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("session: %d %s", resp.StatusCode, body)
	}
	m := decode(t, body)
	return m["url"].(string), m["session_id"].(string)
}

func get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	resp, err := noRedirect.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// pick follows the provider list to one provider's consent page and returns its URL.
func pick(t *testing.T, sessionURL, name string) string {
	t.Helper()
	resp, page := get(t, sessionURL)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("widget page: %d", resp.StatusCode)
	}
	base, _ := url.Parse(sessionURL)
	for _, m := range providerLink.FindAllStringSubmatch(page, -1) {
		if m[2] == name {
			ref, _ := url.Parse(m[1])
			consent := base.ResolveReference(ref).String()
			resp, page := get(t, consent)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("consent page: %d", resp.StatusCode)
			}
			got := map[string]string{}
			for _, b := range button.FindAllStringSubmatch(page, -1) {
				got[b[1]] = b[2]
			}
			if got["allow"] != "Allow" || got["deny"] != "Deny" {
				t.Fatalf("consent page buttons: %v", got)
			}
			return consent
		}
	}
	t.Fatalf("no provider link named %q in:\n%s", name, page)
	return ""
}

func answer(t *testing.T, consentURL, decision string) (*http.Response, string) {
	t.Helper()
	resp, err := noRedirect.PostForm(consentURL, url.Values{"decision": {decision}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestWidgetFlow(t *testing.T) {
	cases := []struct {
		name      string
		params    map[string]string
		provider  string // display name clicked
		decision  string
		wantLoc   string            // scheme://host/path of the redirect, "" for a page
		wantQuery map[string]string // "*" means any non-empty value
		wantPage  string
		wantEvent string
	}{
		{
			name: "allow with redirect and reference",
			params: map[string]string{"providers": "OURA,GARMIN", "reference_id": "end-user-1",
				"auth_success_redirect_url": "https://app.example/done?x=1"},
			provider: "Oura", decision: "allow",
			wantLoc:   "https://app.example/done",
			wantQuery: map[string]string{"x": "1", "user_id": "*", "resource": "OURA", "reference_id": "end-user-1"},
			wantEvent: terra.EventAuth,
		},
		{
			name:     "allow with deep link, no reference",
			params:   map[string]string{"auth_success_redirect_url": "myapp://connected"},
			provider: "Garmin", decision: "allow",
			wantLoc:   "myapp://connected",
			wantQuery: map[string]string{"user_id": "*", "resource": "GARMIN", "reference_id": "null"},
			wantEvent: terra.EventAuth,
		},
		{
			name:     "allow without redirect",
			params:   map[string]string{"providers": "FITBIT"},
			provider: "Fitbit", decision: "allow",
			wantPage: "close this tab", wantEvent: terra.EventAuth,
		},
		{
			name: "deny with failure redirect",
			params: map[string]string{"reference_id": "end-user-2",
				"auth_failure_redirect_url": "https://app.example/failed"},
			provider: "Polar", decision: "deny",
			wantLoc:   "https://app.example/failed",
			wantQuery: map[string]string{"reference_id": "end-user-2", "resource": "POLAR", "reason": "user_cancelled"},
			wantEvent: terra.EventAuthCancelled,
		},
		{
			name:     "deny without redirect",
			params:   map[string]string{},
			provider: "Withings", decision: "deny",
			wantPage: "cancelled", wantEvent: terra.EventAuthCancelled,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := newReceiver(t)
			e := newEnv(t, terrasim.Config{WebhookURL: rc.srv.URL})
			sessionURL, id := newSession(t, e, c.params)
			consent := pick(t, sessionURL, c.provider)
			resp, page := answer(t, consent, c.decision)

			if c.wantLoc != "" {
				if resp.StatusCode != http.StatusSeeOther {
					t.Fatalf("status %d, want 303", resp.StatusCode)
				}
				loc, err := url.Parse(resp.Header.Get("Location"))
				if err != nil {
					t.Fatal(err)
				}
				if got := loc.Scheme + "://" + loc.Host + loc.Path; got != c.wantLoc {
					t.Errorf("redirect to %s, want %s", got, c.wantLoc)
				}
				q := loc.Query()
				for k, v := range c.wantQuery {
					if got := q.Get(k); (v == "*" && got == "") || (v != "*" && got != v) {
						t.Errorf("query %s = %q, want %q", k, got, v)
					}
				}
				if uid := q.Get("user_id"); uid != "" {
					if _, ok := findUser(e.emu.Users(), uid); !ok {
						t.Errorf("redirect user_id %s is not a user", uid)
					}
				}
			} else if resp.StatusCode != http.StatusOK || !strings.Contains(page, c.wantPage) {
				t.Errorf("status %d, page lacks %q:\n%s", resp.StatusCode, c.wantPage, page)
			}

			ev, r := rc.event(c.wantEvent)
			if !r.VerifyOK {
				t.Errorf("webhook signature did not verify")
			}
			decoded, err := terra.DecodeEvent(r.Body)
			if err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			if ref := c.params["reference_id"]; ref != "" && (decoded.ReferenceID == nil || *decoded.ReferenceID != ref) {
				t.Errorf("event reference_id %v, want %s", decoded.ReferenceID, ref)
			}
			if c.wantEvent == terra.EventAuth {
				if ev["widget_session_id"] != id || decoded.User == nil || len(e.emu.Users()) != 1 {
					t.Errorf("auth event %v", ev)
				}
			} else if ev["flow_id"] != id || ev["reason"] != "user_cancelled" || len(e.emu.Users()) != 0 {
				t.Errorf("auth_cancelled event %v", ev)
			}

			// A session completes only once.
			if resp, _ := answer(t, consent, c.decision); resp.StatusCode != http.StatusGone {
				t.Errorf("second answer: %d, want 410", resp.StatusCode)
			}
			if resp, _ := get(t, sessionURL); resp.StatusCode != http.StatusGone {
				t.Errorf("used session page: %d, want 410", resp.StatusCode)
			}
		})
	}
}

func findUser(users []terra.User, id string) (terra.User, bool) {
	for _, u := range users {
		if u.UserID == id {
			return u, true
		}
	}
	return terra.User{}, false
}

func TestWidgetPages(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC).Unix())
	e := newEnv(t, terrasim.Config{Now: func() time.Time { return time.Unix(now.Load(), 0) }})

	t.Run("all providers by default", func(t *testing.T) {
		u, _ := newSession(t, e, map[string]string{})
		_, page := get(t, u)
		names := map[string]bool{}
		for _, m := range providerLink.FindAllStringSubmatch(page, -1) {
			names[m[2]] = true
		}
		for _, n := range []string{"Oura", "Garmin", "Fitbit", "Withings", "Polar"} {
			if !names[n] {
				t.Errorf("no %s link", n)
			}
		}
		if !strings.Contains(page, "Terra emulator") {
			t.Errorf("page does not say it is the emulator")
		}
	})
	t.Run("only requested providers", func(t *testing.T) {
		u, _ := newSession(t, e, map[string]string{"providers": "OURA"})
		_, page := get(t, u)
		if n := len(providerLink.FindAllString(page, -1)); n != 1 {
			t.Errorf("%d provider links, want 1", n)
		}
		if resp, _ := get(t, u+"/GARMIN"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("provider outside the session: %d", resp.StatusCode)
		}
	})
	t.Run("unknown session", func(t *testing.T) {
		resp, page := get(t, e.srv.URL+"/widget/session/00000000-0000-0000-0000-000000000000")
		if resp.StatusCode != http.StatusNotFound || strings.Contains(page, `class="provider"`) {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("expired session", func(t *testing.T) {
		u, id := newSession(t, e, map[string]string{})
		now.Add(901)
		if resp, _ := get(t, u); resp.StatusCode != http.StatusGone {
			t.Errorf("status %d, want 410", resp.StatusCode)
		}
		if _, err := e.emu.Complete(id, "OURA", true); err != terrasim.ErrSessionExpired {
			t.Errorf("Complete: %v", err)
		}
	})
	t.Run("bad decision", func(t *testing.T) {
		u, _ := newSession(t, e, map[string]string{})
		if resp, _ := answer(t, u+"/OURA", "maybe"); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
}

func TestMountedUnderPrefix(t *testing.T) {
	emu := terrasim.New(terrasim.Config{DevID: testDevID, APIKey: testAPIKey})
	mux := http.NewServeMux()
	mux.Handle("/terra/", http.StripPrefix("/terra", emu))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { srv.Close(); emu.Close() })

	req, _ := http.NewRequest("POST", srv.URL+"/terra/api/widget/session", strings.NewReader(`{"providers":"OURA"}`))
	for k, v := range creds() {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ws struct {
		URL       string `json:"url"`
		SessionID string `json:"session_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&ws)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := srv.URL + "/terra/widget/session/" + ws.SessionID; ws.URL != want {
		t.Fatalf("url %s, want %s", ws.URL, want)
	}
	consent := pick(t, ws.URL, "Oura")
	if resp, page := answer(t, consent, "allow"); resp.StatusCode != http.StatusOK || !strings.Contains(page, "Connected to Oura") {
		t.Errorf("allow: %d", resp.StatusCode)
	}
	if len(emu.Users()) != 1 {
		t.Errorf("no user created")
	}
}

func TestPublicURL(t *testing.T) {
	e := newEnv(t, terrasim.Config{PublicURL: "http://localhost:8080/terra/"})
	u, id := newSession(t, e, map[string]string{})
	if u != "http://localhost:8080/terra/widget/session/"+id {
		t.Errorf("url %s", u)
	}
}

// A session created with show_disconnect lists the end user's connections, and only theirs,
// each with a Disconnect button that removes it at Terra (a deauth webhook follows); a
// session without it offers nothing of the kind.
func TestWidgetShowDisconnect(t *testing.T) {
	e := newEnv(t, terrasim.Config{})
	oura, err := e.emu.Connect("OURA", "u-1")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := e.emu.Connect("GARMIN", "u-2")
	if err != nil {
		t.Fatal(err)
	}
	create := func(body string) string {
		t.Helper()
		resp, out := e.call(t, "POST", "/v2/auth/generateWidgetSession", body, creds())
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("session: %d %s", resp.StatusCode, out)
		}
		return decode(t, out)["url"].(string)
	}
	disconnectButton := regexp.MustCompile(`name="user_id" value="([^"]+)">\s*<button type="submit">Disconnect ([^<]+)</button>`)

	if _, page := get(t, create(`{"reference_id":"u-1"}`)); strings.Contains(page, "Disconnect") {
		t.Fatalf("a session without show_disconnect offers to disconnect:\n%s", page)
	}
	sessionURL := create(`{"reference_id":"u-1","show_disconnect":true}`)
	_, page := get(t, sessionURL)
	found := disconnectButton.FindAllStringSubmatch(page, -1)
	if len(found) != 1 || found[0][1] != oura.UserID || found[0][2] != "Oura" {
		t.Fatalf("disconnect buttons %q, want only u-1's Oura:\n%s", found, page)
	}

	post := func(userID string) int {
		t.Helper()
		resp, err := noRedirect.PostForm(sessionURL+"/disconnect", url.Values{"user_id": {userID}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(stranger.UserID); code != http.StatusNotFound {
		t.Errorf("disconnecting another end user's connection: %d, want 404", code)
	}
	if code := post(oura.UserID); code != http.StatusOK {
		t.Fatalf("disconnect: %d", code)
	}
	var left []string
	for _, u := range e.emu.Users() {
		left = append(left, u.UserID)
	}
	if len(left) != 1 || left[0] != stranger.UserID {
		t.Errorf("users left %v, want only the stranger's %s", left, stranger.UserID)
	}
	deauths := 0
	for _, d := range e.emu.Deliveries() {
		if d.Type == terra.EventDeauth {
			deauths++
		}
	}
	if deauths != 1 {
		t.Errorf("%d deauth webhooks, want 1", deauths)
	}
}
