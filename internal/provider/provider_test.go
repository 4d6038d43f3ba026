package provider

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
)

const integrations = "/v2/integrations"

// clock is a settable time source; refreshes read it from their own goroutines.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// catalog is a Catalog in front of a real Terra client talking to the emulator over HTTP.
func catalog(t *testing.T, timeout time.Duration) (*Catalog, *terrasim.Emulator, *clock) {
	t.Helper()
	emu := terrasim.New(terrasim.Config{DevID: "d", APIKey: "k"})
	srv := httptest.NewServer(emu)
	// Cleanups run last first: closing the emulator first ends hung calls, which the
	// server's Close would otherwise wait for.
	t.Cleanup(srv.Close)
	t.Cleanup(emu.Close)
	tc := terra.New(terra.Config{BaseURL: srv.URL + "/v2", DevID: "d", APIKey: "k", Timeout: timeout, BreakerDisabled: true}, nil, nil)
	c := NewCatalog(tc, time.Hour, slog.New(slog.DiscardHandler))
	clk := &clock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	c.now = clk.now
	return c, emu, clk
}

func calls(emu *terrasim.Emulator) int {
	n := 0
	for _, r := range emu.Requests() {
		if r.Path == integrations {
			n++
		}
	}
	return n
}

// settled waits for the refresh in flight, if any, to end (a stale read's refresh runs
// behind it), then checks that the emulator has seen want integrations calls. Waiting for
// the emulator to count the call is not enough: the refresh is still in flight until the
// client has its answer, and a read meanwhile joins it instead of starting another.
func settled(t *testing.T, c *Catalog, emu *terrasim.Emulator, want int) {
	t.Helper()
	// singleflight's Do joins the call in flight and returns once it has ended; with none
	// in flight it runs this no-op.
	_, _, _ = c.refresh.Do("integrations", func() (any, error) { return nil, nil })
	if n := calls(emu); n != want {
		t.Fatalf("%d integrations calls, want %d", n, want)
	}
}

func TestCatalogCachesAndServesStale(t *testing.T) {
	c, emu, clk := catalog(t, time.Second)

	emu.Fail(integrations, terrasim.Fault{Status: 503, Times: 1})
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
	n := calls(emu)
	if _, err := c.List(context.Background()); err != nil || calls(emu) != n {
		t.Errorf("a fresh list was fetched again (%d calls)", calls(emu)-n)
	}

	// Stale and Terra failing: the stale list, and one refresh behind it that fails.
	clk.advance(2 * time.Hour)
	emu.Fail(integrations, terrasim.Fault{Status: 503, Times: 1})
	if stale, err := c.List(context.Background()); err != nil || len(stale) != len(list) {
		t.Errorf("stale list: %d providers, %v", len(stale), err)
	}
	settled(t, c, emu, n+1)

	// Still stale (the refresh failed): the next read refreshes again, and this time the
	// list is fresh, so the read after that does not call Terra.
	if _, err := c.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	settled(t, c, emu, n+2)
	if _, err := c.List(context.Background()); err != nil || calls(emu) != n+2 {
		t.Errorf("after a successful refresh: %v, %d calls, want %d", err, calls(emu), n+2)
	}
}

// When Terra hangs, readers of a stale list answer at once instead of queueing behind the
// refresh (which used to hold the cache's lock for as long as Terra took), and only one
// refresh reaches Terra.
func TestStaleReadersDoNotWaitForAHungTerra(t *testing.T) {
	const hang = 2 * time.Second
	c, emu, clk := catalog(t, hang)
	if _, err := c.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := calls(emu)
	clk.advance(2 * time.Hour)
	emu.Fail(integrations, terrasim.Fault{Hang: true, Times: 10})

	const readers = 5
	start := time.Now()
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			if list, err := c.List(context.Background()); err != nil || len(list) == 0 {
				t.Errorf("a stale reader got %d providers, %v; want the stale list", len(list), err)
			}
		})
	}
	wg.Wait()
	// Each would have waited out the hang; together, readers x hang.
	if took := time.Since(start); took > hang/4 {
		t.Errorf("%d stale readers took %v with Terra hanging, want them answered at once", readers, took)
	}
	// Once the one refresh has given up, no other has reached Terra.
	settled(t, c, emu, n+1)
}

// A cold cache has nothing to serve: with Terra hung, concurrent readers share one call and
// all get its error once the client gives up.
func TestColdCacheWithTerraDownErrors(t *testing.T) {
	const timeout = 500 * time.Millisecond
	c, emu, _ := catalog(t, timeout)
	emu.Fail(integrations, terrasim.Fault{Hang: true, Times: 10})
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() {
			_, err := c.List(context.Background())
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Error("no cache and Terra hanging: a reader got no error")
		}
	}
	if took := time.Since(start); took > timeout+time.Second {
		t.Errorf("the readers waited %v, past the client's %v timeout", took, timeout)
	}
	if got := calls(emu); got != 1 {
		t.Errorf("%d calls for concurrent cold readers, want 1", got)
	}

	// A reader that gives up does not wait for Terra.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := c.List(ctx); err == nil || time.Since(start) > timeout/2 {
		t.Errorf("a reader with a short deadline: %v after %v", err, time.Since(start))
	}
}

func TestDisplayName(t *testing.T) {
	for in, want := range map[string]string{"OURA": "Oura", "garmin": "Garmin", "HEALTH_CONNECT": "Health Connect", "APPLE": "Apple Health", "WHOOP": "WHOOP"} {
		if got := DisplayName(in); got != want {
			t.Errorf("DisplayName(%q) = %q, want %q", in, got, want)
		}
	}
}
