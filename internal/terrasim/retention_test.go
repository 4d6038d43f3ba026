package terrasim_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terrasim"
)

// An emulator left running (a team's offline dev server, a load test) keeps the recent
// calls and the sessions that can still matter, not everything it ever saw.
func TestRetentionIsBounded(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).Unix())
	e := newEnv(t, terrasim.Config{Now: func() time.Time { return time.Unix(now.Load(), 0) }})

	oldURL, _ := newSession(t, e, map[string]string{})
	now.Add(int64((25 * time.Hour).Seconds()))
	// Enough sessions that the emulator prunes at least once.
	var recentURL string
	for range 1100 {
		recentURL, _ = newSession(t, e, map[string]string{})
	}
	if resp, _ := get(t, oldURL); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a session expired over a day ago: %d, want 404 (forgotten)", resp.StatusCode)
	}
	if resp, _ := get(t, recentURL); resp.StatusCode != http.StatusOK {
		t.Errorf("a live session: %d, want 200", resp.StatusCode)
	}

	for range 20_000 {
		e.call(t, "GET", "/v2/subscriptions", "", creds())
	}
	e.call(t, "GET", "/v2/userInfo?user_id=last-call", "", creds())
	got := e.emu.Requests()
	if len(got) != 10_000 {
		t.Fatalf("%d requests recorded, want the last 10000", len(got))
	}
	if last := got[len(got)-1]; last.Path != "/v2/userInfo" || last.Query.Get("user_id") != "last-call" {
		t.Errorf("the last recorded call is %s %v, want the last one made", last.Path, last.Query)
	}
}
