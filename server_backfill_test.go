package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terra"
)

// With BACKFILL_DAYS set, a new connection's auth webhook is acknowledged and terragate then
// asks Terra for that history with to_webhook, each type once; a repeated auth asks nothing
// again.
func TestAutomaticBackfill(t *testing.T) {
	g := startGateway(t, withEnv("BACKFILL_DAYS", "40"), withEnv("BACKFILL_TYPES", "sleep,daily"))
	asked := func(u terra.User) map[string]int {
		n := map[string]int{}
		for _, r := range g.emu.Requests() {
			if r.Query.Get("to_webhook") == "true" && r.Query.Get("user_id") == u.UserID {
				n[r.Path]++
			}
		}
		return n
	}
	waitAsked := func(u terra.User) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for n := asked(u); n["/v2/sleep"] < 1 || n["/v2/daily"] < 1; n = asked(u) {
			if time.Now().After(deadline) {
				t.Fatalf("no backfill asked of Terra: %v", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	alice, err := g.emu.Connect("OURA", "alice")
	if err != nil {
		t.Fatal(err)
	}
	waitAsked(alice)

	// The same auth again, as a new delivery: the connection is known, nothing is recorded.
	if resp, body := g.postWebhook(authEvent(alice.UserID, "OURA", "alice"), signedHeader(authEvent(alice.UserID, "OURA", "alice"), time.Now(), "again-1")); resp.StatusCode != http.StatusOK {
		t.Fatalf("repeated auth: %d %s", resp.StatusCode, body)
	}
	// Backfills are worked in the order they were recorded: once bob's is asked, one wrongly
	// recorded for alice's repeated auth would have been too.
	bob, err := g.emu.Connect("GARMIN", "bob")
	if err != nil {
		t.Fatal(err)
	}
	waitAsked(bob)
	if n := asked(alice); n["/v2/sleep"] != 1 || n["/v2/daily"] != 1 {
		t.Errorf("history asked for alice %v, want each type once", n)
	}
}

// The demo relays every event to its own receiver page, which lists what it got, verified
// the Standard Webhooks way.
func TestDemoRelay(t *testing.T) {
	base, bearer, _ := startDemo(t)
	g := &gateway{t: t, url: base, seen: &syncBuffer{}}
	tok := g.sdkToken(bearer, nil)
	body := `{"token":"` + tok.Token + `","provider":"APPLE","reference_id":"` + tok.ReferenceID + `"}`
	resp, err := http.Post(base+"/demo/phone", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("demo phone: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/demo/relay")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.Contains(string(page), "<td>auth</td>") && strings.Contains(string(page), "verified") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay page %d:\n%s", resp.StatusCode, page)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
