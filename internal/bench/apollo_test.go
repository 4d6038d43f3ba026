package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/auth"
)

// TestApolloPeer checks the createWidgetSession benchmark's Apollo Server peer does what
// its row claims: it answers the mutation for a valid end-user token (after Terra's
// answer), and a missing or bad token with UNAUTHENTICATED. Without Node or the peer's
// packages it skips locally and fails in CI.
func TestApolloPeer(t *testing.T) {
	emu, err := StartEmulator()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	ctx := t.Context()
	a, err := StartApollo(ctx, emu.URL)
	if errors.Is(err, errNoApollo) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })

	tokens, err := Tokens([]string{"apollo-peer-user"})
	if err != nil {
		t.Fatal(err)
	}
	if err := postGraphQL(ctx, http.DefaultClient, a.URL, tokens[0], createSession, "createWidgetSession"); err != nil {
		t.Fatalf("with a valid token: %v", err)
	}

	expired, err := auth.Issue([]byte(JWTSecret), auth.IssueOptions{Subject: "u", TTL: time.Minute, Now: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := auth.Issue([]byte("another-secret-0123456789abcdef0123"), auth.IssueOptions{Subject: "u", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for name, header := range map[string]string{
		"no token":      "",
		"expired token": "Bearer " + expired,
		"forged token":  "Bearer " + forged,
		"not a JWT":     "Bearer abc",
	} {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL+"/graphql", bytes.NewReader(createSession))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if header != "" {
				req.Header.Set("Authorization", header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out struct {
				Data   json.RawMessage
				Errors []struct {
					Extensions struct{ Code string }
				}
			}
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
			if len(out.Errors) != 1 || out.Errors[0].Extensions.Code != "UNAUTHENTICATED" || string(out.Data) != "null" {
				t.Errorf("answered %+v with data %s, want one UNAUTHENTICATED error and no data", out.Errors, out.Data)
			}
		})
	}
}
