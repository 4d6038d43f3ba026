package terrasim_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/terragate/terragate/internal/terrasim"
)

// checkErrorShape asserts the error body shape of the base that answered.
func checkErrorShape(t *testing.T, path string, resp *http.Response, body []byte) {
	t.Helper()
	m := decode(t, body)
	if strings.HasPrefix(path, "/api/v2/") {
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("Content-Type = %q, want application/problem+json", ct)
		}
		if m["type"] != "about:blank" || m["title"] != strings.ToLower(http.StatusText(resp.StatusCode)) ||
			m["instance"] == nil || m["detail"] == "" || m["detail"] == nil {
			t.Errorf("not a problem+json body: %s", body)
		}
		return
	}
	if m["status"] != "error" || m["message"] == "" || m["message"] == nil {
		t.Errorf("not a legacy error body: %s", body)
	}
}

func TestCredentials(t *testing.T) {
	e := newEnv(t, terrasim.Config{})
	endpoints := []struct{ method, path, body string }{
		{"POST", "/v2/auth/generateWidgetSession", `{}`},
		{"POST", "/api/v2/auth/generateWidgetSession", `{}`},
		{"POST", "/api/widget/session", `{}`},
		{"POST", "/widget/api/session", `{}`},
		{"GET", "/v2/userInfo?user_id=x", ""},
		{"GET", "/api/v2/userInfo?reference_id=x", ""},
		{"GET", "/v2/subscriptions", ""},
		{"DELETE", "/api/v2/auth/deauthenticateUser?user_id=x", ""},
		{"GET", "/_emulator/users", ""},
	}
	cases := []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"none", map[string]string{"Content-Type": "application/json"}, http.StatusUnauthorized},
		{"no key", map[string]string{"dev-id": testDevID, "Content-Type": "application/json"}, http.StatusUnauthorized},
		{"no dev-id", map[string]string{"x-api-key": testAPIKey, "Content-Type": "application/json"}, http.StatusUnauthorized},
		{"wrong key", map[string]string{"dev-id": testDevID, "x-api-key": "nope", "Content-Type": "application/json"}, http.StatusForbidden},
		{"wrong dev-id", map[string]string{"dev-id": "other", "x-api-key": testAPIKey, "Content-Type": "application/json"}, http.StatusForbidden},
	}
	for _, ep := range endpoints {
		for _, c := range cases {
			t.Run(ep.path+"/"+c.name, func(t *testing.T) {
				resp, body := e.call(t, ep.method, ep.path, ep.body, c.hdr)
				if resp.StatusCode != c.want {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.want, body)
				}
				checkErrorShape(t, ep.path, resp, body)
			})
		}
	}

	t.Run("integrations need no key", func(t *testing.T) {
		for _, path := range []string{"/v2/integrations", "/api/v2/integrations"} {
			resp, body := e.call(t, "GET", path, "", nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: status %d", path, resp.StatusCode)
			}
			var in struct {
				Providers    []string `json:"providers"`
				SDKProviders []string `json:"sdk_providers"`
				Status       string   `json:"status"`
			}
			if err := json.Unmarshal(body, &in); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"GARMIN", "FITBIT", "OURA", "WITHINGS", "POLAR", "SUUNTO", "COROS", "WAHOO", "GOOGLE", "PELOTON"} {
				if !slices.Contains(in.Providers, p) {
					t.Errorf("providers lack %s", p)
				}
			}
			for _, p := range []string{"APPLE", "SAMSUNG", "HEALTH_CONNECT"} {
				if !slices.Contains(in.SDKProviders, p) {
					t.Errorf("sdk_providers lack %s", p)
				}
			}
			if in.Status != "success" {
				t.Errorf("status %q", in.Status)
			}
		}
	})
}

func TestWidgetSessionBadRequests(t *testing.T) {
	e := newEnv(t, terrasim.Config{})
	noCT := map[string]string{"dev-id": testDevID, "x-api-key": testAPIKey}
	textCT := map[string]string{"dev-id": testDevID, "x-api-key": testAPIKey, "Content-Type": "text/plain"}
	cases := []struct {
		name    string
		hdr     map[string]string
		body    string
		message string // part of the expected message
	}{
		{"no content type", noCT, `{}`, "Content-Type"},
		{"text content type", textCT, `{}`, "Content-Type"},
		{"malformed JSON", creds(), `{"providers":`, "JSON object"},
		{"empty body", creds(), ``, "JSON object"},
		{"array body", creds(), `["OURA"]`, "JSON object"},
		{"providers not a string", creds(), `{"providers":["OURA"]}`, "providers must be a string"},
		{"reference_id not a string", creds(), `{"reference_id":42}`, "reference_id must be a string"},
		{"language not a string", creds(), `{"language":true}`, "language must be a string"},
		{"show_disconnect not a bool", creds(), `{"show_disconnect":"yes"}`, "show_disconnect"},
		{"unknown provider", creds(), `{"providers":"OURA,NOKIA3310"}`, "NOKIA3310"},
		{"sdk provider", creds(), `{"providers":"APPLE"}`, "mobile SDKs"},
		{"relative redirect", creds(), `{"auth_success_redirect_url":"/done"}`, "auth_success_redirect_url"},
	}
	for _, path := range []string{"/v2/auth/generateWidgetSession", "/api/v2/auth/generateWidgetSession", "/api/widget/session"} {
		for _, c := range cases {
			t.Run(path+"/"+c.name, func(t *testing.T) {
				resp, body := e.call(t, "POST", path, c.body, c.hdr)
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("status %d, want 400: %s", resp.StatusCode, body)
				}
				checkErrorShape(t, path, resp, body)
				if !strings.Contains(string(body), c.message) {
					t.Errorf("message lacks %q: %s", c.message, body)
				}
			})
		}
	}
}

func TestWidgetSession(t *testing.T) {
	cases := []struct {
		name       string
		legacyGone bool
		path       string
		want       int
	}{
		{"legacy", false, "/v2/auth/generateWidgetSession", http.StatusOK},
		{"2026 base", false, "/api/v2/auth/generateWidgetSession", http.StatusOK},
		{"widget endpoint", false, "/api/widget/session", http.StatusOK},
		{"widget endpoint, spec spelling", false, "/widget/api/session", http.StatusOK},
		{"legacy gone", true, "/v2/auth/generateWidgetSession", http.StatusGone},
		{"2026 base gone", true, "/api/v2/auth/generateWidgetSession", http.StatusGone},
		{"widget endpoint after the deprecation", true, "/api/widget/session", http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, terrasim.Config{LegacyGone: c.legacyGone})
			body := `{"providers":"oura, GARMIN","reference_id":"u-1","language":"en","show_disconnect":true,"extra":1}`
			resp, b := e.call(t, "POST", c.path, body, map[string]string{
				"dev-id": testDevID, "x-api-key": testAPIKey, "Content-Type": "application/json; charset=utf-8",
			})
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.want, b)
			}
			if c.want != http.StatusOK {
				checkErrorShape(t, c.path, resp, b)
				if !strings.Contains(string(b), "/api/widget/session") {
					t.Errorf("410 does not point to the new endpoint: %s", b)
				}
				return
			}
			var ws struct {
				SessionID string  `json:"session_id"`
				URL       string  `json:"url"`
				Status    string  `json:"status"`
				ExpiresIn float64 `json:"expires_in"`
			}
			if err := json.Unmarshal(b, &ws); err != nil {
				t.Fatal(err)
			}
			if _, err := uuid.Parse(ws.SessionID); err != nil {
				t.Errorf("session_id %q is not a uuid", ws.SessionID)
			}
			if ws.URL != e.srv.URL+"/widget/session/"+ws.SessionID || ws.Status != "success" || ws.ExpiresIn != 900 {
				t.Errorf("unexpected session %+v", ws)
			}
			reqs := e.emu.Requests()
			last := reqs[len(reqs)-1]
			if last.Path != c.path || last.Body["reference_id"] != "u-1" {
				t.Errorf("recorded %+v", last)
			}
		})
	}
}

func TestUserInfo(t *testing.T) {
	e := newEnv(t, terrasim.Config{})
	a, _ := e.emu.Connect("OURA", "ref-a")
	b, _ := e.emu.Connect("GARMIN", "ref-a")
	if _, err := e.emu.Connect("FITBIT", "ref-b"); err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{"/v2", "/api/v2"} {
		t.Run(base, func(t *testing.T) {
			resp, body := e.call(t, "GET", base+"/userInfo?reference_id=ref-a", "", creds())
			var users []map[string]any
			if resp.StatusCode != 200 || json.Unmarshal(body, &users) != nil || len(users) != 2 {
				t.Fatalf("by reference: %d %s", resp.StatusCode, body)
			}
			if users[0]["user_id"] != a.UserID || users[1]["user_id"] != b.UserID {
				t.Errorf("wrong users: %s", body)
			}
			_, body = e.call(t, "GET", base+"/userInfo?reference_id=nobody", "", creds())
			if strings.TrimSpace(string(body)) != "[]" {
				t.Errorf("unknown reference: %s", body)
			}
			resp, body = e.call(t, "GET", base+"/userInfo?user_id="+a.UserID, "", creds())
			m := decode(t, body)
			if resp.StatusCode != 200 || m["status"] != "success" || m["is_authenticated"] != true ||
				m["user"].(map[string]any)["provider"] != "OURA" {
				t.Errorf("by user_id: %d %s", resp.StatusCode, body)
			}
			resp, body = e.call(t, "GET", base+"/userInfo?user_id=unknown", "", creds())
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("unknown user_id: %d", resp.StatusCode)
			}
			checkErrorShape(t, base+"/", resp, body)
			resp, body = e.call(t, "GET", base+"/userInfo", "", creds())
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("no parameter: %d", resp.StatusCode)
			}
			checkErrorShape(t, base+"/", resp, body)
		})
	}
}

func TestSubscriptionsPaging(t *testing.T) {
	e := newEnv(t, terrasim.Config{})
	for range 5 {
		if _, err := e.emu.Connect("WAHOO", ""); err != nil {
			t.Fatal(err)
		}
	}
	all := e.emu.Users()

	_, body := e.call(t, "GET", "/v2/subscriptions", "", creds())
	var unpaged struct {
		Users []struct {
			UserID string `json:"user_id"`
		} `json:"users"`
	}
	if err := json.Unmarshal(body, &unpaged); err != nil || len(unpaged.Users) != 5 {
		t.Fatalf("unpaged: %s", body)
	}

	type page struct {
		Data struct {
			Next    *int `json:"next"`
			MaxPage int  `json:"max_page"`
			Results []struct {
				UserID string `json:"user_id"`
			} `json:"results"`
		} `json:"data"`
	}
	cases := []struct {
		query    string
		wantN    int
		wantNext int // -1 for null
		wantMax  int
		firstIdx int
	}{
		{"page=0&per_page=2", 2, 1, 2, 0},
		{"page=1&per_page=2", 2, 2, 2, 2},
		{"page=2&per_page=2", 1, -1, 2, 4},
		{"page=3&per_page=2", 0, -1, 2, 0},
		{"page=0", 5, -1, 0, 0},
		{"page=0&per_page=5", 5, -1, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			resp, body := e.call(t, "GET", "/api/v2/subscriptions?"+c.query, "", creds())
			var p page
			if resp.StatusCode != 200 || json.Unmarshal(body, &p) != nil {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if len(p.Data.Results) != c.wantN || p.Data.MaxPage != c.wantMax {
				t.Errorf("got %d results, max_page %d: %s", len(p.Data.Results), p.Data.MaxPage, body)
			}
			if (c.wantNext < 0) != (p.Data.Next == nil) || (p.Data.Next != nil && *p.Data.Next != c.wantNext) {
				t.Errorf("next = %v, want %d", p.Data.Next, c.wantNext)
			}
			if c.wantN > 0 && p.Data.Results[0].UserID != all[c.firstIdx].UserID {
				t.Errorf("page starts at the wrong user")
			}
		})
	}
	for _, q := range []string{"page=-1", "page=x", "page=0&per_page=0"} {
		resp, body := e.call(t, "GET", "/v2/subscriptions?"+q, "", creds())
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d", q, resp.StatusCode)
		}
		checkErrorShape(t, "/v2/", resp, body)
	}
}

func TestFaults(t *testing.T) {
	e := newEnv(t, terrasim.Config{})
	e.emu.Fail("/v2/integrations", terrasim.Fault{
		Status: 503, Body: "<html>down</html>", ContentType: "text/html",
		Header: http.Header{"Retry-After": {"3"}}, Times: 2,
	})
	for i, want := range []int{503, 503, 200} {
		resp, _ := e.call(t, "GET", "/v2/integrations", "", nil)
		if resp.StatusCode != want {
			t.Errorf("call %d: status %d, want %d", i, resp.StatusCode, want)
		}
		if want == 503 && resp.Header.Get("Retry-After") != "3" {
			t.Errorf("call %d: Retry-After %q", i, resp.Header.Get("Retry-After"))
		}
	}

	e.emu.Fail("/v2/integrations", terrasim.Fault{Delay: 150 * time.Millisecond})
	start := time.Now()
	resp, _ := e.call(t, "GET", "/v2/integrations", "", nil)
	if resp.StatusCode != 200 || time.Since(start) < 150*time.Millisecond {
		t.Errorf("slow answer: %d after %v", resp.StatusCode, time.Since(start))
	}

	// Recorded calls never hold credentials.
	b, err := json.Marshal(e.emu.Requests())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), testAPIKey) || strings.Contains(string(b), testDevID) {
		t.Errorf("credentials recorded: %s", b)
	}
}

func TestMethodsAndUnknownPaths(t *testing.T) {
	e := newEnv(t, terrasim.Config{})
	cases := []struct {
		method, path string
		want         int
	}{
		{"POST", "/v2/userInfo", http.StatusMethodNotAllowed},
		{"GET", "/api/v2/auth/generateWidgetSession", http.StatusMethodNotAllowed},
		{"GET", "/v2/nothing", http.StatusNotFound},
		{"GET", "/api/v2/nothing", http.StatusNotFound},
	}
	for _, c := range cases {
		t.Run(c.method+c.path, func(t *testing.T) {
			resp, body := e.call(t, c.method, c.path, "", creds())
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.want)
			}
			checkErrorShape(t, c.path, resp, body)
		})
	}
}
