package terra_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
)

const (
	devID  = "dev-terragate"
	apiKey = "sk-live-0123456789abcdef"
)

// logLines captures log output line by line.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSpace(l.buf.String()), "\n")
}

func (l *logLines) count(substr string) int {
	n := 0
	for _, line := range l.lines() {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

type fixture struct {
	emu    *terrasim.Emulator
	srv    *httptest.Server
	client *terra.Client
	logs   *logLines
}

// newFixture runs the emulator over loopback and a client pointed at its legacy base.
// tweak may change the client's config before it is built.
func newFixture(t *testing.T, ecfg terrasim.Config, tweak func(*terra.Config)) *fixture {
	t.Helper()
	ecfg.DevID, ecfg.APIKey = devID, apiKey
	emu := terrasim.New(ecfg)
	srv := httptest.NewServer(emu)
	logs := &logLines{}
	cfg := terra.Config{
		BaseURL:   srv.URL + "/v2",
		WidgetURL: srv.URL + "/api/widget/session",
		DevID:     devID,
		APIKey:    apiKey,
		Timeout:   2 * time.Second,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := &fixture{emu: emu, srv: srv, client: terra.New(cfg, srv.Client(), log), logs: logs}
	t.Cleanup(func() {
		srv.Close()
		emu.Close()
		for _, line := range logs.lines() {
			if strings.Contains(line, apiKey) {
				t.Errorf("API key in a log line: %s", line)
			}
		}
	})
	return f
}

func noSecret(t *testing.T, err error) {
	t.Helper()
	if err != nil && (strings.Contains(err.Error(), apiKey) || strings.Contains(err.Error(), devID)) {
		t.Errorf("credential in error: %v", err)
	}
}

func TestClientSuccess(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, terrasim.Config{}, nil)
	a, _ := f.emu.Connect("OURA", "end-user-1")
	b, _ := f.emu.Connect("GARMIN", "end-user-1")
	c, _ := f.emu.Connect("FITBIT", "end-user-2")

	t.Run("GenerateWidgetSession", func(t *testing.T) {
		ws, err := f.client.GenerateWidgetSession(ctx, terra.WidgetSessionParams{
			Providers: "OURA,GARMIN", ReferenceID: "end-user-1", Language: "en",
			AuthSuccessRedirectURL: "https://app.example/ok",
		})
		if err != nil {
			t.Fatal(err)
		}
		if ws.SessionID == "" || !strings.HasPrefix(ws.URL, f.srv.URL+"/widget/session/") || ws.ExpiresIn != 900 || ws.Status != "success" {
			t.Errorf("session %+v", ws)
		}
		reqs := f.emu.Requests()
		last := reqs[len(reqs)-1]
		if last.Path != "/api/widget/session" || last.Body["reference_id"] != "end-user-1" || last.Body["providers"] != "OURA,GARMIN" {
			t.Errorf("sent %+v", last)
		}
	})
	t.Run("UserInfoByReferenceID", func(t *testing.T) {
		users, err := f.client.UserInfoByReferenceID(ctx, "end-user-1")
		if err != nil {
			t.Fatal(err)
		}
		if len(users) != 2 || users[0].UserID != a.UserID || users[1].UserID != b.UserID {
			t.Errorf("users %+v", users)
		}
		users, err = f.client.UserInfoByReferenceID(ctx, "nobody")
		if err != nil || users == nil || len(users) != 0 {
			t.Errorf("unknown reference: %v %v", users, err)
		}
	})
	t.Run("UserInfo", func(t *testing.T) {
		ui, err := f.client.UserInfo(ctx, c.UserID)
		if err != nil {
			t.Fatal(err)
		}
		if ui.User.UserID != c.UserID || ui.User.Provider != "FITBIT" || !ui.IsAuthenticated || ui.Status != "success" {
			t.Errorf("user info %+v", ui)
		}
		if ui.User.CreatedAt == nil {
			t.Fatal("no created_at")
		}
		if _, ok := terra.ParseTime(*ui.User.CreatedAt); !ok {
			t.Errorf("created_at %q does not parse", *ui.User.CreatedAt)
		}
	})
	t.Run("Subscriptions", func(t *testing.T) {
		users, err := f.client.Subscriptions(ctx)
		if err != nil || len(users) != 3 {
			t.Fatalf("%d users, %v", len(users), err)
		}
	})
	t.Run("SubscriptionsPage", func(t *testing.T) {
		var seen []string
		for page := 0; ; {
			p, err := f.client.SubscriptionsPage(ctx, page, 2)
			if err != nil {
				t.Fatal(err)
			}
			if p.MaxPage != 1 {
				t.Errorf("max_page %d", p.MaxPage)
			}
			for _, u := range p.Users {
				seen = append(seen, u.UserID)
			}
			if p.Next == nil {
				break
			}
			page = *p.Next
		}
		if strings.Join(seen, ",") != strings.Join([]string{a.UserID, b.UserID, c.UserID}, ",") {
			t.Errorf("paged users %v", seen)
		}
	})
	t.Run("Integrations", func(t *testing.T) {
		in, err := f.client.Integrations(ctx)
		if err != nil || len(in.Providers) < 10 || len(in.SDKProviders) < 3 {
			t.Fatalf("%+v %v", in, err)
		}
	})
	t.Run("DeauthenticateUser", func(t *testing.T) {
		if err := f.client.DeauthenticateUser(ctx, c.UserID); err != nil {
			t.Fatal(err)
		}
		err := f.client.DeauthenticateUser(ctx, c.UserID)
		if !terra.IsNotFound(err) {
			t.Errorf("second deauth: %v", err)
		}
		if _, err := f.client.UserInfo(ctx, c.UserID); !terra.IsNotFound(err) {
			t.Errorf("UserInfo after deauth: %v", err)
		}
	})
	for _, r := range f.emu.Requests() {
		if r.Body != nil && (strings.Contains(r.Path, "generateWidgetSession") || strings.Contains(r.Path, "widget/session")) && r.Body["x-api-key"] != nil {
			t.Errorf("credentials in the body")
		}
	}
}

// TestClientResponseShapes feeds the alternative shapes Terra is known to use through
// the emulator's fault injection.
func TestClientResponseShapes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, terrasim.Config{}, nil)
	ok := func(body string) terrasim.Fault {
		return terrasim.Fault{Status: 200, Body: body, ContentType: "application/json"}
	}
	user := `{"user_id":"u1","provider":"OURA","reference_id":"r","active":true,"scopes":"a","created_at":null,"last_webhook_update":null}`

	refCases := []struct {
		name, body string
		want       int
	}{
		{"bare array", "[" + user + "]", 1},
		{"wrapped", `{"users":[` + user + `,` + user + `]}`, 2},
		{"empty object", `{}`, 0},
		{"empty array", `[]`, 0},
	}
	for _, c := range refCases {
		t.Run("userInfo/"+c.name, func(t *testing.T) {
			f.emu.Fail("/v2/userInfo", ok(c.body))
			users, err := f.client.UserInfoByReferenceID(ctx, "r")
			if err != nil || len(users) != c.want {
				t.Fatalf("%d users, %v", len(users), err)
			}
		})
	}
	t.Run("Subscriptions reads a paged answer", func(t *testing.T) {
		f.emu.Fail("/v2/subscriptions", ok(`{"data":{"next":null,"max_page":0,"results":[`+user+`]}}`))
		users, err := f.client.Subscriptions(ctx)
		if err != nil || len(users) != 1 || users[0].UserID != "u1" {
			t.Fatalf("%+v %v", users, err)
		}
	})
	t.Run("SubscriptionsPage reads an unpaged answer", func(t *testing.T) {
		f.emu.Fail("/v2/subscriptions", ok(`{"users":[`+user+`]}`))
		p, err := f.client.SubscriptionsPage(ctx, 0, 10)
		if err != nil || len(p.Users) != 1 || p.Next != nil {
			t.Fatalf("%+v %v", p, err)
		}
	})
}

func TestClientErrors(t *testing.T) {
	html := `<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>`
	cases := []struct {
		name     string
		emu      terrasim.Config
		tweak    func(*terra.Config)
		fault    *terrasim.Fault
		faultAt  string
		call     func(ctx context.Context, c *terra.Client) error
		status   int
		message  string // exact Message
		errText  string // exact Error(), when set
		retry    time.Duration
		notFound bool
		badResp  bool
		// unavailable: Terra answered, but with a status that says it is down or slow.
		unavailable bool
	}{
		{
			name: "wrong key", tweak: func(c *terra.Config) { c.APIKey = "sk-wrong" },
			call: widget, status: 403, message: "invalid dev-id or x-api-key",
		},
		{
			name: "missing key", tweak: func(c *terra.Config) { c.APIKey = "" },
			call: userInfo, status: 401, message: "dev-id or x-api-key headers are missing",
		},
		{
			name: "wrong key, 2026 base", tweak: func(c *terra.Config) { c.BaseURL = strings.Replace(c.BaseURL, "/v2", "/api/v2", 1); c.DevID = "other" },
			call: subscriptions, status: 403, message: "invalid dev-id or x-api-key",
		},
		{
			name: "bad request",
			call: func(ctx context.Context, c *terra.Client) error {
				_, err := c.GenerateWidgetSession(ctx, terra.WidgetSessionParams{Providers: "OURA,NOKIA3310"})
				return err
			},
			status: 400, message: `unknown provider "NOKIA3310"`,
		},
		{
			name:    "rate limited",
			fault:   &terrasim.Fault{Status: 429, Body: `{"detail":"rate limit exceeded"}`, ContentType: "application/json", Header: http.Header{"Retry-After": {"30"}, "X-Terra-RateLimit-Limit": {"100"}}},
			faultAt: "/api/widget/session",
			call:    widget, status: 429, message: "rate limit exceeded", retry: 30 * time.Second,
			errText: "terra generateWidgetSession: 429 Too Many Requests: rate limit exceeded",
		},
		{
			name:    "legacy 500",
			fault:   &terrasim.Fault{Status: 500, Body: `{"status":"error","message":"internal error"}`, ContentType: "application/json"},
			faultAt: "/v2/subscriptions",
			call:    subscriptions, status: 500, message: "internal error", unavailable: true,
		},
		{
			name:    "HTML 502",
			fault:   &terrasim.Fault{Status: 502, Body: html, ContentType: "text/html"},
			faultAt: "/v2/userInfo",
			call:    userInfo, status: 502, message: "Bad Gateway", unavailable: true,
			errText: "terra userInfo: 502 Bad Gateway",
		},
		{
			name:    "empty 503",
			fault:   &terrasim.Fault{Status: 503, Header: http.Header{"Retry-After": {"5"}}},
			faultAt: "/v2/integrations",
			call:    integrations, status: 503, message: "Service Unavailable", retry: 5 * time.Second, unavailable: true,
		},
		{
			name:    "408",
			fault:   &terrasim.Fault{Status: 408},
			faultAt: "/v2/integrations",
			call:    integrations, status: 408, message: "Request Timeout", unavailable: true,
		},
		{
			name:    "plain text 504",
			fault:   &terrasim.Fault{Status: 504, Body: "upstream request timeout", ContentType: "text/plain"},
			faultAt: "/v2/integrations",
			call:    integrations, status: 504, message: "upstream request timeout", unavailable: true,
		},
		{
			name:  "problem+json 404",
			tweak: func(c *terra.Config) { c.BaseURL = strings.Replace(c.BaseURL, "/v2", "/api/v2", 1) },
			call:  userInfo, status: 404, message: "user not found", notFound: true,
		},
		{
			name: "legacy 404", call: deauth, status: 404, message: "user not found", notFound: true,
		},
		{
			name:    "FastAPI validation detail",
			fault:   &terrasim.Fault{Status: 422, Body: `{"detail":[{"loc":["query","page"],"msg":"value is not a valid integer"}]}`, ContentType: "application/json"},
			faultAt: "/v2/subscriptions",
			call:    subscriptions, status: 422, message: "value is not a valid integer",
		},
		{
			name:    "credential echoed back",
			fault:   &terrasim.Fault{Status: 403, Body: `{"status":"error","message":"invalid key ` + apiKey + ` for ` + devID + `"}`, ContentType: "application/json"},
			faultAt: "/v2/subscriptions",
			call:    subscriptions, status: 403, message: "invalid key [redacted] for [redacted]",
		},
		{
			name:    "undecodable 200",
			fault:   &terrasim.Fault{Status: 200, Body: `<html>ok</html>`, ContentType: "text/html"},
			faultAt: "/v2/integrations",
			call:    integrations, status: 200, badResp: true, message: "body is not a list of integrations",
		},
		{
			name:    "widget session without expires_in",
			fault:   &terrasim.Fault{Status: 200, Body: `{"session_id":"s","url":"https://w/s","status":"success"}`, ContentType: "application/json"},
			faultAt: "/api/widget/session",
			call:    widget, status: 200, badResp: true, message: "widget session without a positive expires_in",
		},
		{
			name:    "user info without user",
			fault:   &terrasim.Fault{Status: 200, Body: `{"status":"success"}`, ContentType: "application/json"},
			faultAt: "/v2/userInfo",
			call:    userInfo, status: 200, badResp: true, message: "user without user_id",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.emu, c.tweak)
			if c.fault != nil {
				f.emu.Fail(c.faultAt, *c.fault)
			}
			err := c.call(context.Background(), f.client)
			noSecret(t, err)
			var ae *terra.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T) is not an *APIError", err, err)
			}
			if ae.StatusCode != c.status || ae.Message != c.message || ae.RetryAfter != c.retry {
				t.Errorf("got %d %q retry %v, want %d %q retry %v", ae.StatusCode, ae.Message, ae.RetryAfter, c.status, c.message, c.retry)
			}
			if c.errText != "" && err.Error() != c.errText {
				t.Errorf("Error() = %q, want %q", err.Error(), c.errText)
			}
			if strings.ContainsAny(err.Error(), "<>") {
				t.Errorf("markup in the error: %v", err)
			}
			if terra.IsNotFound(err) != c.notFound {
				t.Errorf("IsNotFound = %v", !c.notFound)
			}
			if errors.Is(err, terra.ErrBadResponse) != c.badResp {
				t.Errorf("errors.Is(ErrBadResponse) = %v", !c.badResp)
			}
			if errors.Is(err, terra.ErrUnavailable) {
				t.Errorf("an answer is not ErrUnavailable")
			}
			if terra.IsUnavailable(err) != c.unavailable {
				t.Errorf("IsUnavailable = %v, want %v", !c.unavailable, c.unavailable)
			}
		})
	}
}

func widget(ctx context.Context, c *terra.Client) error {
	_, err := c.GenerateWidgetSession(ctx, terra.WidgetSessionParams{ReferenceID: "r"})
	return err
}

func userInfo(ctx context.Context, c *terra.Client) error {
	_, err := c.UserInfo(ctx, "00000000-0000-0000-0000-000000000000")
	return err
}

func subscriptions(ctx context.Context, c *terra.Client) error {
	_, err := c.Subscriptions(ctx)
	return err
}

func integrations(ctx context.Context, c *terra.Client) error {
	_, err := c.Integrations(ctx)
	return err
}

func deauth(ctx context.Context, c *terra.Client) error {
	return c.DeauthenticateUser(ctx, "00000000-0000-0000-0000-000000000000")
}

func TestClientUnavailable(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, func(c *terra.Config) { c.Timeout = 100 * time.Millisecond })
		f.emu.Fail("/v2/userInfo", terrasim.Fault{Delay: time.Second})
		start := time.Now()
		_, err := f.client.UserInfoByReferenceID(context.Background(), "slow")
		if !errors.Is(err, terra.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) || !terra.IsUnavailable(err) {
			t.Fatalf("error %v", err)
		}
		if d := time.Since(start); d > 900*time.Millisecond {
			t.Errorf("took %v, Timeout is 100ms", d)
		}
		noSecret(t, err)
	})
	t.Run("caller cancels", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, nil)
		f.emu.Fail("/api/widget/session", terrasim.Fault{Delay: time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		err := widget(ctx, f.client)
		if !errors.Is(err, context.Canceled) || !errors.Is(err, terra.ErrUnavailable) {
			t.Fatalf("error %v", err)
		}
		noSecret(t, err)
	})
	t.Run("closed port", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c := terra.New(terra.Config{BaseURL: "http://" + addr + "/v2", DevID: devID, APIKey: apiKey, Timeout: time.Second}, nil, nil)
		for name, call := range map[string]func(context.Context, *terra.Client) error{
			"widget": widget, "userInfo": userInfo, "subscriptions": subscriptions, "integrations": integrations, "deauth": deauth,
		} {
			err := call(context.Background(), c)
			if !errors.Is(err, terra.ErrUnavailable) || !terra.IsUnavailable(err) {
				t.Errorf("%s: error %v", name, err)
			}
			var ae *terra.APIError
			if errors.As(err, &ae) {
				t.Errorf("%s: transport failure reported as an answer", name)
			}
			noSecret(t, err)
		}
	})
}

// TestWidgetEndpointOrder: the 2026 endpoint first; the legacy one only for an account
// the new one does not know (404) or has turned away (410), remembered from then on and
// logged once.
func TestWidgetEndpointOrder(t *testing.T) {
	ctx := context.Background()
	count := func(f *fixture) (legacy, current int) {
		for _, r := range f.emu.Requests() {
			switch r.Path {
			case "/v2/auth/generateWidgetSession":
				legacy++
			case "/api/widget/session":
				current++
			}
		}
		return legacy, current
	}
	t.Run("new endpoint first", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{LegacyGone: true}, nil)
		for i := 1; i <= 2; i++ {
			ws, err := f.client.GenerateWidgetSession(ctx, terra.WidgetSessionParams{ReferenceID: "r"})
			if err != nil || ws.SessionID == "" || ws.ExpiresIn != 900 {
				t.Fatalf("call %d: %+v %v", i, ws, err)
			}
			if legacy, current := count(f); legacy != 0 || current != i {
				t.Errorf("after call %d: %d legacy, %d new calls", i, legacy, current)
			}
		}
		if n := f.logs.count("level=WARN"); n != 0 {
			t.Errorf("%d warnings:\n%s", n, strings.Join(f.logs.lines(), "\n"))
		}
		if got := f.emu.Requests()[0].Body["reference_id"]; got != "r" {
			t.Errorf("body reached the new endpoint as %v", f.emu.Requests()[0].Body)
		}
	})
	for _, status := range []int{http.StatusNotFound, http.StatusGone} {
		t.Run(fmt.Sprintf("legacy after %d, remembered", status), func(t *testing.T) {
			f := newFixture(t, terrasim.Config{}, nil)
			f.emu.Fail("/api/widget/session", terrasim.Fault{Status: status, Body: `{"status":"error","message":"no"}`, Times: 100})
			for i := 1; i <= 3; i++ {
				if _, err := f.client.GenerateWidgetSession(ctx, terra.WidgetSessionParams{ReferenceID: "r"}); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if legacy, current := count(f); legacy != i || current != 1 {
					t.Errorf("after call %d: %d legacy, %d new calls", i, legacy, current)
				}
			}
			if n := f.logs.count("level=WARN"); n != 1 {
				t.Errorf("%d warnings, want 1:\n%s", n, strings.Join(f.logs.lines(), "\n"))
			}
			if got := f.emu.Requests()[1]; got.Path != "/v2/auth/generateWidgetSession" || got.Body["reference_id"] != "r" {
				t.Errorf("the retry went out as %+v", got)
			}
		})
	}
	t.Run("an account the new endpoint does not know", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{LegacyOnly: true}, nil)
		if _, err := f.client.GenerateWidgetSession(ctx, terra.WidgetSessionParams{}); err != nil {
			t.Fatal(err)
		}
		if legacy, current := count(f); legacy != 1 || current != 1 {
			t.Errorf("%d legacy, %d new calls", legacy, current)
		}
	})
	t.Run("concurrent first calls log once", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{LegacyOnly: true}, nil)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				_, err := f.client.GenerateWidgetSession(ctx, terra.WidgetSessionParams{})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if n := f.logs.count("level=WARN"); n != 1 {
			t.Errorf("%d warnings, want 1", n)
		}
	})
	t.Run("other errors do not switch", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, nil)
		f.emu.Fail("/api/widget/session", terrasim.Fault{Status: 400, Body: `{"status":"error","message":"bad"}`})
		var ae *terra.APIError
		if err := widget(ctx, f.client); !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest {
			t.Fatalf("error %v", err)
		}
		if err := widget(ctx, f.client); err != nil {
			t.Fatal(err)
		}
		if legacy, current := count(f); legacy != 0 || current != 2 {
			t.Errorf("%d legacy, %d new calls", legacy, current)
		}
	})
	t.Run("wrong credentials are not a move", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{LegacyOnly: true}, func(c *terra.Config) { c.APIKey = "sk-wrong" })
		err := widget(ctx, f.client)
		var ae *terra.APIError
		// Credentials are checked before the 404, as Terra does.
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden {
			t.Fatalf("error %v", err)
		}
		if legacy, _ := count(f); legacy != 0 {
			t.Errorf("%d legacy calls after a 403", legacy)
		}
		noSecret(t, err)
	})
	t.Run("showDisconnect only when set", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, nil)
		yes, no := true, false
		for _, p := range []terra.WidgetSessionParams{{}, {ShowDisconnect: &yes}, {ShowDisconnect: &no}} {
			if _, err := f.client.GenerateWidgetSession(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		reqs := f.emu.Requests()
		if _, sent := reqs[0].Body["show_disconnect"]; sent {
			t.Errorf("unset option sent: %v", reqs[0].Body)
		}
		if reqs[1].Body["show_disconnect"] != true || reqs[2].Body["show_disconnect"] != false {
			t.Errorf("sent %v and %v", reqs[1].Body, reqs[2].Body)
		}
	})
}

func TestGenerateAuthToken(t *testing.T) {
	ctx := context.Background()
	for _, base := range []string{"/v2", "/api/v2"} {
		t.Run(base, func(t *testing.T) {
			f := newFixture(t, terrasim.Config{}, func(c *terra.Config) { c.BaseURL = strings.TrimSuffix(c.BaseURL, "/v2") + base })
			tok, ttl, err := f.client.GenerateAuthToken(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(tok) != 64 || ttl != 180*time.Second {
				t.Errorf("token %q, expires in %v", tok, ttl)
			}
			last := f.emu.Requests()[0]
			if last.Method != http.MethodPost || last.Path != base+"/auth/generateAuthToken" || last.Body != nil {
				t.Errorf("sent %+v", last)
			}
			// The token works once, for a phone.
			if _, err := f.emu.SDKConnect(tok, "APPLE", "r"); err != nil {
				t.Error(err)
			}
			if strings.Contains(strings.Join(f.logs.lines(), "\n"), tok) {
				t.Error("the token reached the log")
			}
		})
	}
	t.Run("refusals", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, func(c *terra.Config) { c.APIKey = "sk-wrong" })
		_, _, err := f.client.GenerateAuthToken(ctx)
		var ae *terra.APIError
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden {
			t.Fatalf("error %v", err)
		}
		noSecret(t, err)
		f = newFixture(t, terrasim.Config{}, nil)
		for _, body := range []string{`{"status":"success","expires_in":180}`, `{"status":"success","token":"t"}`, `[]`} {
			f.emu.Fail("/v2/auth/generateAuthToken", terrasim.Fault{Status: 200, Body: body, ContentType: "application/json"})
			if _, _, err := f.client.GenerateAuthToken(ctx); !errors.As(err, &ae) {
				t.Errorf("%s: error %v", body, err)
			}
		}
	})
}
