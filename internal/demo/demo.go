// Package demo holds what only demo mode shows a person: the start-up banner with a ready
// token, and the page the widget redirects to.
package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
)

// User is the end user the demo's token signs in as.
const User = "demo-user"

// ReturnPath is where the demo's widget sessions send the browser back to.
const ReturnPath = "/demo/return"

// Banner tells a person how to try the loop.
func Banner(w io.Writer, publicURL, token string) {
	fmt.Fprintf(w, `
terragate demo: Terra is played by the built-in emulator at %[1]s/terra (no Terra account needed).

  Playground:    %[1]s/   (the bearer token below is already filled in)
  Bearer token:  %[2]s
  Signed in as:  %[3]s

Try it:
  1. In the playground run:
       mutation { createWidgetSession(input: {providers: ["OURA", "GARMIN"], successRedirectUrl: "%[1]s%[4]s", failureRedirectUrl: "%[1]s%[4]s"}) { sessionId url expiresAt } }
  2. Open the url in a new tab, pick Oura, press Allow.
  3. Back in the playground run:
       query { connectedUsers { userId provider status scopes connectedAt } }

The mobile SDK path (Apple Health), with the demo playing the phone:
  4. In the playground run:
       mutation { createSdkToken { token referenceId expiresAt } }
  5. Hand both to the phone (within 3 minutes; a token works once):
       curl -s %[1]s%[5]s -H 'Content-Type: application/json' \
         -d '{"token":"<token>","provider":"APPLE","reference_id":"<referenceId>"}'
  6. Run connectedUsers again: Apple Health is listed. With a plain reference_id
     ("%[3]s") the connection is listed for nobody.

Every event is also relayed, signed the Standard Webhooks way, to a stand-in for your
backend (unless RELAY_DESTINATIONS names your own): %[1]s%[6]s lists what it received.

Or with curl:
  curl -s %[1]s/graphql -H 'Authorization: Bearer %[2]s' -H 'Content-Type: application/json' \
    -d '{"query":"{ connectedUsers { userId provider status } }"}'

`, publicURL, token, User, ReturnPath, PhonePath, RelayPath)
}

var returnPage = template.Must(template.New("return").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>terragate demo: back from the widget</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;line-height:1.5}
code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}table{border-collapse:collapse}td{padding:.2rem .8rem .2rem 0}</style>
</head><body>
<h1>Back from the Terra widget</h1>
<p>This is the page your app would receive the browser on. Its query parameters are
<strong>unsigned</strong>: anyone can forge them. The signed webhook that terragate
received is the truth, so ask terragate:</p>
<p><code>query { connectedUsers { userId provider status } }</code></p>
{{if .}}<table>{{range $k, $v := .}}<tr><td><code>{{$k}}</code></td><td>{{index $v 0}}</td></tr>{{end}}</table>{{end}}
<p><a href="/">Back to the playground</a></p>
</body></html>
`))

// ReturnPage shows what the widget's redirect carried.
func ReturnPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Still no scripts, but the page may reach the gateway's own API: it is the demo's
	// same-origin page for trying GraphQL from the browser console (and the browser test's).
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	_ = returnPage.Execute(w, url.Values(r.URL.Query()))
}

// TokenPath is where demo mode hands out end-user tokens to example apps.
const TokenPath = "/demo/token"

var demoUserName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// TokenHandler signs a token for any demo end user an example app asks for: POST
// {"user": "name"} (default demo-user) answers {"token", "user", "expiresAt"}. It exists
// only in demo mode, where there is no real sign-in.
func TokenHandler(secret []byte, issuer, audience string, ttl time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			User string `json:"user"`
		}
		if r.ContentLength != 0 {
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024)).Decode(&in); err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want JSON such as {\"user\": \"alice\"}"})
				return
			}
		}
		if in.User == "" {
			in.User = User
		}
		if !demoUserName.MatchString(in.User) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "user: 1 to 64 letters, digits or ._@-"})
			return
		}
		now := time.Now()
		token, err := auth.Issue(secret, auth.IssueOptions{Subject: in.User, Issuer: issuer, Audience: audience, TTL: ttl, Now: now})
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "could not sign a token"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"token": token, "user": in.User, "expiresAt": now.Add(ttl).UTC()})
	})
}

// PhonePath is where demo mode plays a phone connecting through Terra's mobile SDK.
const PhonePath = "/demo/phone"

// Phone plays the app on a phone handing token, minted by createSdkToken, and referenceID
// to Terra's mobile SDK for provider (the emulator's SDKConnect).
type Phone func(token, provider, referenceID string) (terra.User, error)

// PhoneHandler walks the SDK loop's device side in the demo, where there is no phone: POST
// {"token", "provider", "reference_id"} (provider APPLE, SAMSUNG or HEALTH_CONNECT; default
// APPLE) connects as Terra's SDK would, and Terra's auth webhook follows. It needs no Terra
// credentials, unlike the emulator's own control, and exists only in demo mode.
func PhoneHandler(connect Phone) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Token       string `json:"token"`
			Provider    string `json:"provider"`
			ReferenceID string `json:"reference_id"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil || in.Token == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `want JSON such as {"token": "...", "provider": "APPLE", "reference_id": "..."}`})
			return
		}
		if in.Provider == "" {
			in.Provider = "APPLE"
		}
		u, err := connect(in.Token, in.Provider, in.ReferenceID)
		switch {
		case errors.Is(err, terrasim.ErrUnknownProvider):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "provider: one of APPLE, SAMSUNG, HEALTH_CONNECT"})
		case errors.Is(err, terrasim.ErrUnknownToken):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown token: mint one with createSdkToken"})
		case errors.Is(err, terrasim.ErrTokenUsed), errors.Is(err, terrasim.ErrTokenExpired):
			writeJSON(w, http.StatusGone, map[string]string{"error": "the token was used or has expired: mint another with createSdkToken"})
		case err != nil:
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "the phone could not connect"})
		default:
			writeJSON(w, http.StatusOK, map[string]any{"status": "connected", "user_id": u.UserID, "provider": u.Provider})
		}
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
