// Package demo holds what only demo mode shows a person: the start-up banner with a ready
// token, and the page the widget redirects to.
package demo

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/terragate/terragate/internal/auth"
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

Or with curl:
  curl -s %[1]s/graphql -H 'Authorization: Bearer %[2]s' -H 'Content-Type: application/json' \
    -d '{"query":"{ connectedUsers { userId provider status } }"}'

`, publicURL, token, User, ReturnPath)
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
