package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terrasim"
)

const createSdkToken = `mutation($as: String) { createSdkToken(actAs: $as) { token expiresAt referenceId } }`

type sdkToken struct {
	Token       string    `json:"token"`
	ExpiresAt   time.Time `json:"expiresAt"`
	ReferenceID string    `json:"referenceId"`
}

func (g *gateway) sdkToken(bearer string, actAs *string) sdkToken {
	g.t.Helper()
	vars := map[string]any{}
	if actAs != nil {
		vars["as"] = *actAs
	}
	r := g.gql(bearer, createSdkToken, vars)
	if len(r.Errors) > 0 {
		g.t.Fatalf("createSdkToken: %+v", r.Errors)
	}
	var d struct {
		T sdkToken `json:"createSdkToken"`
	}
	if err := json.Unmarshal(r.Data, &d); err != nil {
		g.t.Fatal(err)
	}
	return d.T
}

// phone plays the app on a device: it hands the token and a reference to Terra's SDK,
// through the emulator's HTTP control, as the demo does.
func (g *gateway) phone(tok, provider, ref string) string {
	g.t.Helper()
	body, _ := json.Marshal(map[string]string{"token": tok, "provider": provider, "reference_id": ref})
	req, _ := http.NewRequest(http.MethodPost, g.emuURL+terrasim.AdminPrefix+"/sdk-connect", strings.NewReader(string(body)))
	req.Header.Set("dev-id", testDevID)
	req.Header.Set("x-api-key", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		User struct {
			UserID string `json:"user_id"`
		} `json:"user"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil || out.User.UserID == "" {
		g.t.Fatalf("sdk-connect: status %d", resp.StatusCode)
	}
	return out.User.UserID
}

// TestSDKLoop: the whole mobile SDK loop over HTTP: a token minted with the server's
// credentials for the signed-in end user, a phone connecting with it and the issued
// reference, and the connection listed for that end user with the plain id; phones that
// name a plain, altered or someone else's reference get a connection listed for nobody,
// which service callers see, with the audit saying why.
func TestSDKLoop(t *testing.T) {
	g := startGateway(t, withEnv("SERVICE_API_KEYS", "backend:"+testServiceKey))
	alice, bob := token(t, "alice"), token(t, "bob")

	before := time.Now()
	tok := g.sdkToken(alice, nil)
	if len(tok.Token) != 64 || !strings.HasPrefix(tok.ReferenceID, "alice~") || tok.ReferenceID == "alice~" {
		t.Fatalf("token %+v", tok)
	}
	if d := tok.ExpiresAt.Sub(before); d < 170*time.Second || d > 185*time.Second {
		t.Errorf("expiresAt is %v from now, want Terra's 180 s", d)
	}
	reqs := g.emu.Requests()
	if last := reqs[len(reqs)-1]; last.Method != http.MethodPost || last.Path != "/v2/auth/generateAuthToken" || last.Body != nil {
		t.Errorf("Terra got %+v", last) // the emulator checked the server's credentials
	}
	if again := g.sdkToken(alice, nil); again.ReferenceID != tok.ReferenceID || again.Token == tok.Token {
		t.Errorf("second mint %+v: want a new token and the same reference", again)
	}

	apple := g.phone(tok.Token, "APPLE", tok.ReferenceID)
	users := g.waitUsers(alice, false, "the SDK connection", func(u []terraUser) bool { return len(u) == 1 })
	if u := users[0]; u.UserID != apple || u.Provider != "APPLE" || u.ReferenceID == nil || *u.ReferenceID != "alice" || u.Status != "CONNECTED" {
		t.Errorf("alice's SDK connection %+v", u)
	}

	// Forged references: a modified app on bob's phone naming alice.
	bobRef := g.sdkToken(bob, nil).ReferenceID
	altered := []byte(tok.ReferenceID)
	altered[len(altered)-1] ^= 1
	forged := map[string]string{}
	for _, ref := range []string{"alice", string(altered), "alice" + bobRef[len("bob"):]} {
		forged[g.phone(g.sdkToken(bob, nil).Token, "SAMSUNG", ref)] = ref
	}
	svc := `{ users(first: 50) { edges { node { userId referenceId provider } } } }`
	var page struct {
		Users struct {
			Edges []struct {
				Node terraUser `json:"node"`
			} `json:"edges"`
		} `json:"users"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := g.gql(testServiceKey, svc, nil)
		if len(r.Errors) > 0 {
			t.Fatal(r.Errors)
		}
		_ = json.Unmarshal(r.Data, &page)
		n := 0
		for _, e := range page.Users.Edges {
			if _, ok := forged[e.Node.UserID]; ok {
				n++
				if e.Node.ReferenceID != nil {
					t.Errorf("forged connection %s listed for %q", e.Node.UserID, *e.Node.ReferenceID)
				}
			}
		}
		if n == len(forged) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service callers see %d of the %d forged connections", n, len(forged))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := g.connectedUsers(alice, true); len(got) != 1 || got[0].UserID != apple {
		t.Errorf("alice's connections %+v", got)
	}
	if got := g.connectedUsers(bob, true); len(got) != 0 {
		t.Errorf("bob's connections %+v", got)
	}

	r := g.gql(testServiceKey, `{ auditLog(first: 50, action: "connection.unattributed") { edges { node { subject referenceId detail { key value } } } } }`, nil)
	if len(r.Errors) > 0 {
		t.Fatal(r.Errors)
	}
	var audit struct {
		A struct {
			Edges []struct {
				Node struct {
					Subject     string  `json:"subject"`
					ReferenceID *string `json:"referenceId"`
					Detail      []struct{ Key, Value string }
				} `json:"node"`
			} `json:"edges"`
		} `json:"auditLog"`
	}
	_ = json.Unmarshal(r.Data, &audit)
	if len(audit.A.Edges) != len(forged) {
		t.Fatalf("%d connection.unattributed entries, want %d", len(audit.A.Edges), len(forged))
	}
	for _, e := range audit.A.Edges {
		_, known := forged[e.Node.Subject]
		i := slices.IndexFunc(e.Node.Detail, func(d struct{ Key, Value string }) bool { return d.Key == "reason" })
		if !known || e.Node.ReferenceID == nil || *e.Node.ReferenceID != "alice" || i < 0 || !strings.HasPrefix(e.Node.Detail[i].Value, "reference_") {
			t.Errorf("entry %+v", e.Node)
		}
	}
	if r := g.gql(testServiceKey, `{ auditLog(first: 50, action: "sdk.token_created") { edges { node { actor referenceId } } } }`, nil); !strings.Contains(string(r.Data), `"referenceId":"alice"`) {
		t.Errorf("no sdk.token_created entry for alice: %s", r.Data)
	}
	// Service callers mint for the end user they name.
	as := "carol"
	if tok := g.sdkToken(testServiceKey, &as); !strings.HasPrefix(tok.ReferenceID, "carol~") {
		t.Errorf("minted for carol: %+v", tok)
	}

	// A phone-side disconnect, and disconnectUser, work as for any connection.
	apple2 := g.phone(g.sdkToken(alice, nil).Token, "HEALTH_CONNECT", tok.ReferenceID)
	g.waitUsers(alice, false, "the second SDK connection", func(u []terraUser) bool { return len(u) == 2 })
	if r := g.gql(alice, `mutation($id: ID!) { disconnectUser(userId: $id) { status } }`, map[string]any{"id": apple2}); len(r.Errors) > 0 || !strings.Contains(string(r.Data), "DISCONNECTED") {
		t.Errorf("disconnectUser: %+v %s", r.Errors, r.Data)
	}
	if err := g.emu.Deauth(apple); err != nil {
		t.Fatal(err)
	}
	g.waitUsers(alice, false, "both gone", func(u []terraUser) bool { return len(u) == 0 })

	// The mint's secrets stay out of the log; the references too (they name end users).
	logs := g.logs.String()
	for _, s := range []string{tok.Token, tok.ReferenceID, string(altered)} {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds %q", s)
		}
	}
}

// TestSDKTokenRefusals: no token, no Terra call; the per-user budgets of the mutations that
// start a connection hold for createSdkToken too.
func TestSDKTokenRefusals(t *testing.T) {
	g := startGateway(t, withEnv("RATE_LIMIT_CREATE_SESSION", "2/m"))
	calls := len(g.emu.Requests())
	for _, bearer := range []string{"", "garbage." + testJWTSecret} {
		if r := g.gql(bearer, createSdkToken, nil); r.code() != "UNAUTHENTICATED" {
			t.Errorf("bearer %q: %+v", bearer, r)
		}
	}
	if r := g.gql(token(t, "alice"), createSdkToken, map[string]any{"as": "bob"}); r.code() != "FORBIDDEN" {
		t.Errorf("an end user acting for another: %+v", r)
	}
	if n := len(g.emu.Requests()); n != calls {
		t.Errorf("%d Terra calls without a valid caller", n-calls)
	}

	alice := token(t, "alice")
	g.sdkToken(alice, nil)
	g.createSession(alice, map[string]any{"providers": []string{"OURA"}})
	calls = len(g.emu.Requests())
	r := g.gql(alice, createSdkToken, nil)
	if r.code() != "RATE_LIMITED" || r.Errors[0].Extensions["retryAfter"] == nil {
		t.Errorf("third connection start in a minute: %+v", r)
	}
	if len(g.emu.Requests()) != calls {
		t.Error("a rate-limited mint reached Terra")
	}
	g.sdkToken(token(t, "bob"), nil) // bob has a budget of his own
}
