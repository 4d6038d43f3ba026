package terra_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/httplog"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
)

// Timing assertions leave wide margins: CI machines are slow and -race slows them more.
const slack = 700 * time.Millisecond

// retrying gives the client n retries with short backoff steps, plus any further tweaks.
func retrying(n int, more ...func(*terra.Config)) func(*terra.Config) {
	return func(c *terra.Config) {
		c.Retries = n
		c.RetryBase = 5 * time.Millisecond
		c.RetryMax = 20 * time.Millisecond
		for _, f := range more {
			f(c)
		}
	}
}

// calls counts the requests the emulator received on path.
func (f *fixture) calls(path string) int {
	n := 0
	for _, r := range f.emu.Requests() {
		if r.Path == path {
			n++
		}
	}
	return n
}

func status(code int, header ...string) terrasim.Fault {
	f := terrasim.Fault{Status: code, Body: `{"status":"error","message":"try later"}`, ContentType: "application/json"}
	if len(header) == 2 {
		f.Header = http.Header{header[0]: {header[1]}}
	}
	return f
}

func TestRetryTransient(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name, path string
		call       func(context.Context, *terra.Client, *terrasim.Emulator) error
	}{
		{"widget session", "/api/widget/session", func(ctx context.Context, c *terra.Client, _ *terrasim.Emulator) error {
			return widget(ctx, c)
		}},
		{"user by reference", "/v2/userInfo", func(ctx context.Context, c *terra.Client, _ *terrasim.Emulator) error {
			_, err := c.UserInfoByReferenceID(ctx, "r")
			return err
		}},
		{"user by id", "/v2/userInfo", func(ctx context.Context, c *terra.Client, e *terrasim.Emulator) error {
			u, _ := e.Connect("OURA", "r")
			_, err := c.UserInfo(ctx, u.UserID)
			return err
		}},
		{"subscriptions", "/v2/subscriptions", func(ctx context.Context, c *terra.Client, _ *terrasim.Emulator) error {
			return subscriptions(ctx, c)
		}},
		{"subscriptions page", "/v2/subscriptions", func(ctx context.Context, c *terra.Client, _ *terrasim.Emulator) error {
			_, err := c.SubscriptionsPage(ctx, 0, 10)
			return err
		}},
		{"integrations", "/v2/integrations", func(ctx context.Context, c *terra.Client, _ *terrasim.Emulator) error {
			return integrations(ctx, c)
		}},
		{"deauthenticate", "/v2/auth/deauthenticateUser", func(ctx context.Context, c *terra.Client, e *terrasim.Emulator) error {
			u, _ := e.Connect("OURA", "r")
			return c.DeauthenticateUser(ctx, u.UserID)
		}},
	}
	for _, c := range cases {
		t.Run(c.name+" after two 503s", func(t *testing.T) {
			f := newFixture(t, terrasim.Config{}, retrying(2))
			f.emu.Fail(c.path, terrasim.Fault{Status: 503, Times: 2})
			if err := c.call(ctx, f.client, f.emu); err != nil {
				t.Fatal(err)
			}
			if n := f.calls(c.path); n != 3 {
				t.Errorf("%d requests, want 3", n)
			}
			if n := f.logs.count(`msg="terra: retrying"`); n != 2 {
				t.Errorf("%d retry log lines, want 2", n)
			}
			for _, line := range f.logs.lines() {
				if strings.Contains(line, "terra: retrying") && (!strings.Contains(line, "op=") ||
					!strings.Contains(line, "attempt=") || !strings.Contains(line, "status=503")) {
					t.Errorf("retry line without op, attempt or status: %s", line)
				}
			}
		})
	}
	for _, code := range []int{408, 429, 500, 502, 504} {
		t.Run(fmt.Sprintf("after one %d", code), func(t *testing.T) {
			f := newFixture(t, terrasim.Config{}, retrying(2))
			f.emu.Fail("/v2/integrations", status(code))
			if err := integrations(ctx, f.client); err != nil {
				t.Fatal(err)
			}
			if n := f.calls("/v2/integrations"); n != 2 {
				t.Errorf("%d requests, want 2", n)
			}
		})
	}
	t.Run("gives up after the last retry", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, retrying(2))
		f.emu.Fail("/v2/subscriptions", terrasim.Fault{Status: 503, Times: 10})
		err := subscriptions(ctx, f.client)
		var ae *terra.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 503 {
			t.Fatalf("error %v", err)
		}
		if n := f.calls("/v2/subscriptions"); n != 3 {
			t.Errorf("%d requests, want 3", n)
		}
	})
	t.Run("zero retries is one attempt", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, nil)
		f.emu.Fail("/v2/subscriptions", terrasim.Fault{Status: 503, Times: 10})
		if err := subscriptions(ctx, f.client); err == nil {
			t.Fatal("no error")
		}
		if n := f.calls("/v2/subscriptions"); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
}

func TestNoRetryOnOtherAnswers(t *testing.T) {
	for _, code := range []int{400, 401, 403, 404, 409, 422} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			f := newFixture(t, terrasim.Config{}, retrying(3))
			f.emu.Fail("/v2/subscriptions", terrasim.Fault{Status: code, Body: `{"status":"error","message":"no"}`, ContentType: "application/json", Times: 10})
			err := subscriptions(context.Background(), f.client)
			var ae *terra.APIError
			if !errors.As(err, &ae) || ae.StatusCode != code {
				t.Fatalf("error %v", err)
			}
			if n := f.calls("/v2/subscriptions"); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
	t.Run("unusable 200", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, retrying(3))
		f.emu.Fail("/v2/integrations", terrasim.Fault{Garbage: true, Times: 10})
		err := integrations(context.Background(), f.client)
		var ae *terra.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 200 || !errors.Is(err, terra.ErrBadResponse) || errors.Is(err, terra.ErrUnavailable) {
			t.Fatalf("error %v", err)
		}
		if n := f.calls("/v2/integrations"); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
	t.Run("deauthenticate: retried 503, then 404 is final", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, retrying(3))
		f.emu.Fail("/v2/auth/deauthenticateUser", terrasim.Fault{Status: 503})
		if err := deauth(context.Background(), f.client); !terra.IsNotFound(err) {
			t.Fatalf("error %v", err)
		}
		if n := f.calls("/v2/auth/deauthenticateUser"); n != 2 {
			t.Errorf("%d requests, want 2", n)
		}
	})
}

func TestRetryAfter(t *testing.T) {
	ctx := context.Background()
	t.Run("seconds are waited out", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, retrying(2, func(c *terra.Config) { c.Timeout = 5 * time.Second }))
		f.emu.Fail("/api/widget/session", terrasim.Fault{Status: 429, Body: `{"detail":"rate limit exceeded"}`,
			ContentType: "application/json", Header: http.Header{"Retry-After": {"1"}}})
		start := time.Now()
		if err := widget(ctx, f.client); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < time.Second || d > time.Second+slack {
			t.Errorf("took %v, want 1s", d)
		}
		if n := f.calls("/api/widget/session"); n != 2 {
			t.Errorf("%d requests, want 2", n)
		}
	})
	t.Run("an HTTP date is waited out", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, retrying(2, func(c *terra.Config) { c.Timeout = 5 * time.Second }))
		at := time.Now().Add(2 * time.Second)
		f.emu.Fail("/v2/subscriptions", status(503, "Retry-After", at.Format(http.TimeFormat)))
		start := time.Now()
		if err := subscriptions(ctx, f.client); err != nil {
			t.Fatal(err)
		}
		// The date has whole seconds, two seconds ahead: the wait is one or two seconds.
		if d := time.Since(start); d < 900*time.Millisecond || d > 2*time.Second+slack {
			t.Errorf("took %v, want 1s to 2s", d)
		}
	})
	t.Run("past the Timeout: give up at once", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, retrying(2)) // Timeout 2s
		f.emu.Fail("/v2/subscriptions", terrasim.Fault{Status: 429, Body: `{"detail":"rate limit exceeded"}`,
			ContentType: "application/json", Header: http.Header{"Retry-After": {"30"}}, Times: 10})
		start := time.Now()
		err := subscriptions(ctx, f.client)
		if d := time.Since(start); d > slack {
			t.Errorf("took %v to give up", d)
		}
		var ae *terra.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 429 {
			t.Fatalf("error %v", err)
		}
		if d, ok := terra.RetryAfter(err); !ok || d != 30*time.Second {
			t.Errorf("RetryAfter = %v, %v", d, ok)
		}
		if n := f.calls("/v2/subscriptions"); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
	t.Run("past the caller's deadline: give up at once", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, retrying(2, func(c *terra.Config) { c.Timeout = 10 * time.Second }))
		f.emu.Fail("/v2/integrations", status(503, "Retry-After", "1"))
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := integrations(ctx, f.client)
		var ae *terra.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 503 {
			t.Fatalf("error %v", err)
		}
		if d := time.Since(start); d >= 500*time.Millisecond {
			t.Errorf("took %v, the deadline was 500ms", d)
		}
	})
	t.Run("the caller cancelling ends the wait", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, retrying(2, func(c *terra.Config) { c.Timeout = 10 * time.Second }))
		f.emu.Fail("/v2/integrations", status(503, "Retry-After", "5"))
		ctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		if err := integrations(ctx, f.client); err == nil {
			t.Fatal("no error")
		}
		if d := time.Since(start); d > slack {
			t.Errorf("took %v after a cancel at 100ms", d)
		}
	})
}

func TestDeadTerra(t *testing.T) {
	ctx := context.Background()
	t.Run("hang: unavailable within Timeout", func(t *testing.T) {
		// AttemptTimeout is max(1.5s/3, 1s): one attempt times out, the retry meets the deadline.
		f := newFixture(t, terrasim.Config{}, retrying(2, func(c *terra.Config) { c.Timeout = 1500 * time.Millisecond }))
		f.emu.Fail("/v2/userInfo", terrasim.Fault{Hang: true, Times: 10})
		start := time.Now()
		_, err := f.client.UserInfoByReferenceID(ctx, "r")
		d := time.Since(start)
		if !errors.Is(err, terra.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v", err)
		}
		var ae *terra.APIError
		if errors.As(err, &ae) {
			t.Errorf("no answer reported as an answer: %v", err)
		}
		if d < time.Second || d > 1500*time.Millisecond+slack {
			t.Errorf("took %v, Timeout is 1.5s", d)
		}
		if n := f.calls("/v2/userInfo"); n != 2 {
			t.Errorf("%d requests, want 2 (the per-attempt timeout leaves room for a retry)", n)
		}
		noSecret(t, err)
	})
	t.Run("one hang, then an answer", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, retrying(2, func(c *terra.Config) { c.AttemptTimeout = 300 * time.Millisecond }))
		f.emu.Fail("/v2/subscriptions", terrasim.Fault{Hang: true})
		start := time.Now()
		if err := subscriptions(ctx, f.client); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 300*time.Millisecond || d > 300*time.Millisecond+slack {
			t.Errorf("took %v, AttemptTimeout is 300ms", d)
		}
	})
	t.Run("reset is retried", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, retrying(2))
		f.emu.Fail("/api/widget/session", terrasim.Fault{Reset: true})
		f.emu.Fail("/v2/auth/deauthenticateUser", terrasim.Fault{Reset: true})
		if err := widget(ctx, f.client); err != nil {
			t.Fatal(err)
		}
		u, _ := f.emu.Connect("OURA", "r")
		if err := f.client.DeauthenticateUser(ctx, u.UserID); err != nil {
			t.Fatal(err)
		}
		// POST and DELETE are never replayed by net/http itself: the second request is ours.
		if n := f.calls("/api/widget/session"); n != 2 {
			t.Errorf("%d widget requests, want 2", n)
		}
		if n := f.calls("/v2/auth/deauthenticateUser"); n != 2 {
			t.Errorf("%d deauthenticate requests, want 2", n)
		}
	})
	t.Run("reset every time", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, retrying(2))
		f.emu.Fail("/api/widget/session", terrasim.Fault{Reset: true, Times: 10})
		err := widget(ctx, f.client)
		var ae *terra.APIError
		if !errors.Is(err, terra.ErrUnavailable) || errors.As(err, &ae) {
			t.Fatalf("error %v", err)
		}
		if n := f.calls("/api/widget/session"); n != 3 {
			t.Errorf("%d requests, want 3", n)
		}
		noSecret(t, err)
	})
}

func TestCircuitBreaker(t *testing.T) {
	ctx := context.Background()
	const path = "/v2/integrations"
	const openFor = 300 * time.Millisecond
	breaker := func(c *terra.Config) { c.BreakerTimeout = openFor }

	t.Run("opens, fails fast, half-opens, closes", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, retrying(2, breaker))
		f.emu.Fail(path, terrasim.Fault{Status: 503, Times: 5})

		// Three failed attempts, then two more: the fifth in a row opens the circuit and
		// the call's last retry is refused.
		var ae *terra.APIError
		if err := integrations(ctx, f.client); !errors.As(err, &ae) || ae.StatusCode != 503 {
			t.Fatalf("first call: %v", err)
		}
		err := integrations(ctx, f.client)
		if !errors.Is(err, terra.ErrCircuitOpen) || !errors.Is(err, terra.ErrUnavailable) {
			t.Fatalf("second call: %v", err)
		}
		if n := f.calls(path); n != 5 {
			t.Fatalf("%d requests, want 5", n)
		}
		for range 5 {
			err = integrations(ctx, f.client)
			if !errors.Is(err, terra.ErrCircuitOpen) {
				t.Fatalf("open circuit: %v", err)
			}
		}
		if n := f.calls(path); n != 5 {
			t.Errorf("Terra got %d requests while the circuit was open, want none", n-5)
		}
		wait, ok := terra.RetryAfter(err)
		if !ok || wait <= 0 || wait > openFor {
			t.Errorf("RetryAfter = %v, %v; want within (0, %v]", wait, ok, openFor)
		}
		if errors.As(err, &ae) {
			t.Errorf("a refused call reported as an answer: %v", err)
		}
		states := f.client.CircuitStates()
		if states["integrations"] != "open" || states["subscriptions"] != "closed" || len(states) != 8 {
			t.Errorf("states %v", states)
		}
		// Other endpoints keep working.
		if err := subscriptions(ctx, f.client); err != nil {
			t.Errorf("subscriptions: %v", err)
		}
		if f.logs.count("circuit open") != 1 {
			t.Errorf("no single log line for the circuit opening:\n%s", strings.Join(f.logs.lines(), "\n"))
		}

		time.Sleep(wait + 50*time.Millisecond)
		if s := f.client.CircuitStates()["integrations"]; s != "half-open" {
			t.Errorf("after the timeout: %s", s)
		}
		for i := range 3 { // three good probes close it
			if err := integrations(ctx, f.client); err != nil {
				t.Fatalf("probe %d: %v", i, err)
			}
		}
		if s := f.client.CircuitStates()["integrations"]; s != "closed" {
			t.Errorf("after good probes: %s", s)
		}
		if n := f.calls(path); n != 8 {
			t.Errorf("%d requests, want 8", n)
		}
	})
	t.Run("reports each change as it happens", func(t *testing.T) {
		var mu sync.Mutex
		var got []string
		f := newFixture(t, terrasim.Config{}, func(c *terra.Config) {
			c.CircuitChange = func(endpoint, state string) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, endpoint+" "+state)
			}
		})
		mu.Lock()
		if len(got) != 8 || !strings.Contains(strings.Join(got, ","), "integrations closed") {
			t.Errorf("at start: %v, want each endpoint closed", got)
		}
		got = nil
		mu.Unlock()
		f.emu.Fail(path, terrasim.Fault{Status: 503, Times: 5})
		for range 5 {
			_ = integrations(ctx, f.client)
		}
		mu.Lock()
		defer mu.Unlock()
		if strings.Join(got, ",") != "integrations open" {
			t.Errorf("after five failures: %v, want [integrations open]", got)
		}
	})
	t.Run("a failed probe opens it again", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, func(c *terra.Config) { c.BreakerTimeout = openFor })
		f.emu.Fail(path, terrasim.Fault{Status: 500, Times: 6})
		for range 5 {
			_ = integrations(ctx, f.client)
		}
		err := integrations(ctx, f.client)
		wait, _ := terra.RetryAfter(err)
		time.Sleep(wait + 50*time.Millisecond)
		var ae *terra.APIError
		if err := integrations(ctx, f.client); !errors.As(err, &ae) || ae.StatusCode != 500 {
			t.Fatalf("probe: %v", err)
		}
		if err := integrations(ctx, f.client); !errors.Is(err, terra.ErrCircuitOpen) {
			t.Fatalf("after a failed probe: %v", err)
		}
		if n := f.calls(path); n != 6 {
			t.Errorf("%d requests, want 6", n)
		}
	})
	t.Run("half of ten attempts failing opens it", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, nil)
		for i := range 10 {
			if i%2 == 1 {
				f.emu.Fail(path, terrasim.Fault{Status: 502})
			}
			_ = integrations(ctx, f.client)
		}
		if err := integrations(ctx, f.client); !errors.Is(err, terra.ErrCircuitOpen) {
			t.Fatalf("error %v", err)
		}
		_, err := f.client.Integrations(ctx)
		if d, ok := terra.RetryAfter(err); !ok || d <= 25*time.Second {
			t.Errorf("RetryAfter = %v, %v; want about DefaultBreakerTimeout", d, ok)
		}
	})
	t.Run("hangs and resets count", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, func(c *terra.Config) { c.Timeout = 100 * time.Millisecond })
		f.emu.Fail(path, terrasim.Fault{Hang: true, Times: 2})
		f.emu.Fail(path, terrasim.Fault{Reset: true, Times: 3})
		for range 5 {
			_ = integrations(ctx, f.client)
		}
		if s := f.client.CircuitStates()["integrations"]; s != "open" {
			t.Errorf("state %s", s)
		}
	})
	t.Run("4xx answers do not open it", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, retrying(2))
		for _, code := range []int{400, 401, 403, 404, 410, 422} {
			f.emu.Fail("/v2/userInfo", terrasim.Fault{Status: code, Times: 2})
		}
		for range 12 {
			if err := userInfo(ctx, f.client); errors.Is(err, terra.ErrCircuitOpen) {
				t.Fatal(err)
			}
		}
		if n := f.calls("/v2/userInfo"); n != 12 {
			t.Errorf("%d requests, want 12", n)
		}
		if s := f.client.CircuitStates()["userInfo"]; s != "closed" {
			t.Errorf("state %s", s)
		}
	})
	t.Run("429 answers do not open it", func(t *testing.T) {
		// A 429 is Terra throttling the account, honoured through Retry-After; counting it
		// would let one end user's burst open the circuit for everyone.
		f := newFixture(t, terrasim.Config{}, nil)
		f.emu.Fail(path, terrasim.Fault{Status: 429, Body: `{"detail":"rate limit exceeded"}`, ContentType: "application/json", Times: 12})
		for i := range 12 {
			if err := integrations(ctx, f.client); errors.Is(err, terra.ErrCircuitOpen) {
				t.Fatalf("call %d: %v", i+1, err)
			}
		}
		if n := f.calls(path); n != 12 {
			t.Errorf("%d requests, want 12", n)
		}
		if s := f.client.CircuitStates()["integrations"]; s != "closed" {
			t.Errorf("state %s", s)
		}
	})
	t.Run("caller cancellations do not count", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, nil)
		f.emu.Fail(path, terrasim.Fault{Hang: true, Times: 6})
		for range 6 {
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(20*time.Millisecond, cancel)
			if err := integrations(ctx, f.client); !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v", err)
			}
		}
		if s := f.client.CircuitStates()["integrations"]; s != "closed" {
			t.Errorf("state %s", s)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		f := newFixture(t, terrasim.Config{}, func(c *terra.Config) { c.BreakerDisabled = true })
		f.emu.Fail(path, terrasim.Fault{Status: 503, Times: 10})
		for range 10 {
			if err := integrations(ctx, f.client); errors.Is(err, terra.ErrCircuitOpen) {
				t.Fatal(err)
			}
		}
		if n := f.calls(path); n != 10 {
			t.Errorf("%d requests, want 10", n)
		}
		if s := f.client.CircuitStates(); len(s) != 0 {
			t.Errorf("states %v", s)
		}
	})
}

// TestConcurrentCalls runs every operation at once against a flaky Terra; -race checks the
// breaker and the retry state.
func TestConcurrentCalls(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, terrasim.Config{}, retrying(2, func(c *terra.Config) { c.BreakerTimeout = 50 * time.Millisecond }))
	for _, u := range []string{"a", "b", "c"} {
		if _, err := f.emu.Connect("OURA", u); err != nil {
			t.Fatal(err)
		}
	}
	f.emu.Fail("/v2/integrations", terrasim.Fault{Status: 503, Times: 30})
	f.emu.Fail("/v2/subscriptions", terrasim.Fault{Reset: true, Times: 10})
	f.emu.Fail("/v2/userInfo", terrasim.Fault{Status: 429, Header: http.Header{"Retry-After": {"0"}}, Times: 10})
	ops := []func(context.Context, *terra.Client) error{widget, userInfo, subscriptions, integrations, deauth,
		func(ctx context.Context, c *terra.Client) error {
			_, err := c.UserInfoByReferenceID(ctx, "a")
			return err
		}}
	var wg sync.WaitGroup
	errs := make(chan error, 16*20)
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				err := ops[(g+i)%len(ops)](ctx, f.client)
				var ae *terra.APIError
				if err != nil && !errors.As(err, &ae) && !errors.Is(err, terra.ErrUnavailable) {
					errs <- err
				}
				_ = f.client.CircuitStates()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("unexpected error kind: %v", err)
	}
}

func TestRetryAfterHelper(t *testing.T) {
	if _, ok := terra.RetryAfter(nil); ok {
		t.Error("nil error has a RetryAfter")
	}
	if _, ok := terra.RetryAfter(&terra.APIError{StatusCode: 500}); ok {
		t.Error("an answer without Retry-After has one")
	}
	err := fmt.Errorf("create session: %w", &terra.APIError{StatusCode: 429, RetryAfter: 7 * time.Second})
	if d, ok := terra.RetryAfter(err); !ok || d != 7*time.Second {
		t.Errorf("RetryAfter = %v, %v", d, ok)
	}
}

// Every line the client writes about a call is logged with the caller's context, so the
// request id the gateway put there (httplog) reaches the retry, give-up and call lines.
func TestLogLinesCarryTheCallersContext(t *testing.T) {
	f := newFixture(t, terrasim.Config{}, nil)
	logs := &logLines{}
	log := slog.New(httplog.ContextHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	c := terra.New(terra.Config{
		BaseURL: f.srv.URL + "/v2", DevID: devID, APIKey: apiKey, Timeout: 2 * time.Second,
		Retries: 2, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
	}, f.srv.Client(), log)
	// Two 503s, then a 429 asking for more time than the deadline leaves: a retry line, a
	// call line per attempt, and the line saying the wait would pass the deadline.
	f.emu.Fail("/v2/integrations", terrasim.Fault{Status: 503, Times: 1})
	f.emu.Fail("/v2/integrations", status(429, "Retry-After", "60"))
	var err error
	req := httptest.NewRequest(http.MethodGet, "/graphql", nil)
	req.Header.Set("X-Request-Id", "req-terra-42")
	httplog.Middleware(slog.New(slog.DiscardHandler), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err = c.Integrations(r.Context())
	})).ServeHTTP(httptest.NewRecorder(), req)
	if err == nil {
		t.Fatal("no error after a 429 with a long Retry-After")
	}
	for _, msg := range []string{`"msg":"terra: retrying"`, `"msg":"terra call"`, `"msg":"terra: not retrying, the wait would pass the deadline"`} {
		n := 0
		for _, line := range logs.lines() {
			if strings.Contains(line, msg) {
				n++
				if !strings.Contains(line, `"request_id":"req-terra-42"`) {
					t.Errorf("a line without the request id: %s", line)
				}
			}
		}
		if n == 0 {
			t.Errorf("no %s line:\n%s", msg, strings.Join(logs.lines(), "\n"))
		}
	}
}
