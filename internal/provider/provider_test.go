package provider

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
)

func TestCatalogCachesAndServesStale(t *testing.T) {
	emu := terrasim.New(terrasim.Config{DevID: "d", APIKey: "k"})
	defer emu.Close()
	srv := httptest.NewServer(emu)
	defer srv.Close()
	tc := terra.New(terra.Config{BaseURL: srv.URL + "/v2", DevID: "d", APIKey: "k", Timeout: time.Second}, nil, nil)
	c := NewCatalog(tc, time.Hour, slog.New(slog.DiscardHandler))
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	calls := func() int {
		n := 0
		for _, r := range emu.Requests() {
			if r.Path == "/v2/integrations" {
				n++
			}
		}
		return n
	}
	const path = "/v2/integrations"

	emu.Fail(path, terrasim.Fault{Status: 503, Times: 1})
	if _, err := c.List(context.Background()); err == nil {
		t.Fatal("no cache and Terra down: no error")
	}
	list, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Provider{}
	for _, p := range list {
		byName[p.Name] = p
	}
	for _, want := range []Provider{{"OURA", "Oura", false}, {"GARMIN", "Garmin", false}, {"APPLE", "Apple Health", true}} {
		if byName[want.Name] != want {
			t.Errorf("%s = %+v, want %+v", want.Name, byName[want.Name], want)
		}
	}
	n := calls()
	if _, err := c.List(context.Background()); err != nil || calls() != n {
		t.Errorf("a fresh list was fetched again (%d calls)", calls()-n)
	}
	now = now.Add(2 * time.Hour)
	emu.Fail(path, terrasim.Fault{Status: 503, Times: 1})
	if stale, err := c.List(context.Background()); err != nil || len(stale) != len(list) || calls() != n+1 {
		t.Errorf("stale list: %d providers, %v, %d calls", len(stale), err, calls()-n)
	}
}

func TestDisplayName(t *testing.T) {
	for in, want := range map[string]string{"OURA": "Oura", "garmin": "Garmin", "HEALTH_CONNECT": "Health Connect", "APPLE": "Apple Health", "WHOOP": "WHOOP"} {
		if got := DisplayName(in); got != want {
			t.Errorf("DisplayName(%q) = %q, want %q", in, got, want)
		}
	}
}
