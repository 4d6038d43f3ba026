// Package secheaders sets the response headers that tell browsers to contain what
// terragate serves: a Content-Security-Policy, no framing, no sniffing, no referrers, and
// no caching of API answers that carry a user's data.
package secheaders

import "net/http"

// htmlPolicy is for terragate's own pages (the widget return page and the like): they
// are plain HTML and inline CSS, so no script may run at all, and an injected <base>,
// form or frame cannot redirect or capture the user.
const htmlPolicy = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// playgroundPolicy is for the GraphiQL page, whose script and stylesheet terragate serves
// from its own origin (internal/playground): nothing may load from anywhere else, and no
// inline script may run (the page passes its settings as a JSON data block). GraphiQL's
// stylesheet carries its fonts and icons as data: URLs. connect-src 'self' covers the GraphQL
// endpoint and, in current browsers, its same-origin WebSocket for subscriptions.
const playgroundPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"font-src data:; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// HTML adds the strict policy and the common headers to terragate's own pages.
func HTML(next http.Handler) http.Handler {
	return withPolicy(htmlPolicy, next)
}

// Playground adds a policy that lets the GraphQL playground page run, and the common
// headers.
func Playground(next http.Handler) http.Handler {
	return withPolicy(playgroundPolicy, next)
}

// NoStore keeps responses out of browser and proxy caches. GraphQL answers are per user
// and often fetched with GET, so a shared cache could otherwise hand one user's data to
// another.
func NoStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func withPolicy(policy string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", policy)
		// frame-ancestors supersedes this in current browsers; older ones only know
		// X-Frame-Options.
		h.Set("X-Frame-Options", "DENY")
		// Widget return URLs carry signed state in their query; it must not leak to
		// the sites a page links to.
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}
