package terra_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/fault"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
)

func TestRequestHistory(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, terrasim.Config{}, nil)
	u, err := f.emu.Connect("OURA", "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)

	t.Run("asks for webhooks", func(t *testing.T) {
		if err := f.client.RequestHistory(ctx, "sleep", u.UserID, start, start.AddDate(0, 0, 10)); err != nil {
			t.Fatal(err)
		}
		var asked bool
		for _, r := range f.emu.Requests() {
			if r.Path == "/v2/sleep" && r.Query.Get("to_webhook") == "true" && r.Query.Get("user_id") == u.UserID &&
				r.Query.Get("start_date") == "1782864000" && r.Query.Get("end_date") == "1783728000" {
				asked = true
			}
		}
		if !asked {
			t.Errorf("no to_webhook request in %v", f.emu.Requests())
		}
		var sent bool
		for _, d := range f.emu.Deliveries() {
			sent = sent || d.Type == "sleep"
		}
		if !sent {
			t.Error("no sleep event followed")
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		err := f.client.RequestHistory(ctx, "sleep", "nobody", start, start.AddDate(0, 0, 1))
		if !terra.IsNotFound(err) {
			t.Errorf("err %v, want not found", err)
		}
		noSecret(t, err)
	})
	t.Run("too long", func(t *testing.T) {
		err := f.client.RequestHistory(ctx, "daily", u.UserID, start.AddDate(-6, 0, 0), start)
		var ae *terra.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 400 || fault.KindOf(err) != fault.UpstreamError {
			t.Errorf("err %v, want Terra's 400", err)
		}
	})
	t.Run("429 carries Retry-After and leaves the circuit closed", func(t *testing.T) {
		for range 3 {
			if err := f.client.RequestHistory(ctx, "body", u.UserID, start.AddDate(0, 0, -1825), start); err != nil {
				t.Fatal(err)
			}
		}
		err := f.client.RequestHistory(ctx, "body", u.UserID, start.AddDate(0, 0, -1825), start)
		ra, ok := terra.RetryAfter(err)
		var ae *terra.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 429 || !ok || ra < time.Minute {
			t.Errorf("err %v (retry after %v), want a 429 to wait out", err, ra)
		}
		if s := f.client.CircuitStates()["history"]; s != "closed" {
			t.Errorf("history circuit %q after a 429", s)
		}
	})
}
