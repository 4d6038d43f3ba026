package secheaders

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql/playground"
)

// get serves h on a real server and fetches path from it.
func get(t *testing.T, h http.Handler, path string) (*http.Response, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// directives splits a Content-Security-Policy into its directives' source lists.
func directives(t *testing.T, policy string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for d := range strings.SplitSeq(policy, ";") {
		fields := strings.Fields(d)
		if len(fields) == 0 {
			continue
		}
		if _, dup := out[fields[0]]; dup {
			t.Fatalf("directive %s twice: browsers ignore the second", fields[0])
		}
		out[fields[0]] = fields[1:]
	}
	return out
}

func TestCommonHeaders(t *testing.T) {
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<p>hello</p>")
	})
	for name, h := range map[string]http.Handler{"HTML": HTML(page), "Playground": Playground(page)} {
		t.Run(name, func(t *testing.T) {
			resp, _ := get(t, h, "/")
			want := map[string]string{
				"X-Frame-Options":        "DENY",
				"Referrer-Policy":        "no-referrer",
				"X-Content-Type-Options": "nosniff",
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			csp := directives(t, resp.Header.Get("Content-Security-Policy"))
			for d, v := range map[string]string{"default-src": "'none'", "base-uri": "'none'", "frame-ancestors": "'none'", "form-action": "'self'"} {
				if !slices.Equal(csp[d], []string{v}) {
					t.Errorf("%s = %v, want %s", d, csp[d], v)
				}
			}
			if resp.Header.Get("Cache-Control") != "" {
				t.Errorf("pages should stay cacheable unless NoStore is asked for")
			}
		})
	}
}

func TestHTMLAllowsNoScript(t *testing.T) {
	resp, _ := get(t, HTML(http.NotFoundHandler()), "/")
	csp := directives(t, resp.Header.Get("Content-Security-Policy"))
	want := map[string][]string{
		"default-src":     {"'none'"},
		"style-src":       {"'unsafe-inline'"},
		"img-src":         {"'self'"},
		"form-action":     {"'self'"},
		"base-uri":        {"'none'"},
		"frame-ancestors": {"'none'"},
	}
	if len(csp) != len(want) {
		t.Fatalf("policy %v, want exactly %v", csp, want)
	}
	for d, v := range want {
		if !slices.Equal(csp[d], v) {
			t.Errorf("%s = %v, want %v", d, csp[d], v)
		}
	}
	if _, ok := csp["script-src"]; ok {
		t.Error("terragate's own pages must not allow scripts")
	}
}

// TestPlaygroundPolicyFitsGqlgenPage serves the page gqlgen actually renders, with the
// options terragate uses, and checks that every script and stylesheet it loads is allowed,
// so a gqlgen upgrade that moves them elsewhere fails here rather than in a browser.
func TestPlaygroundPolicyFitsGqlgenPage(t *testing.T) {
	page := playground.Handler("terragate", "/graphql",
		playground.WithGraphiqlUiHeaders(map[string]string{"Authorization": "Bearer x"}),
		playground.WithGraphiqlEnablePluginExplorer(true),
		playground.WithStoragePrefix("terragate:"),
	)
	resp, body := get(t, Playground(page), "/")
	csp := directives(t, resp.Header.Get("Content-Security-Policy"))

	allowed := func(directive, rawURL string) bool {
		u, err := url.Parse(rawURL)
		if err != nil {
			t.Fatalf("%s: %v", rawURL, err)
		}
		return slices.Contains(csp[directive], u.Scheme+"://"+u.Host)
	}
	scripts := regexp.MustCompile(`<script\s+src="([^"]+)"`).FindAllStringSubmatch(body, -1)
	styles := regexp.MustCompile(`<link\s+rel="stylesheet"\s+href="([^"]+)"`).FindAllStringSubmatch(body, -1)
	if len(scripts) < 3 || len(styles) < 2 {
		t.Fatalf("found %d scripts and %d stylesheets; has gqlgen's page changed shape?", len(scripts), len(styles))
	}
	for _, m := range scripts {
		if !allowed("script-src", m[1]) {
			t.Errorf("script %s is not allowed by script-src %v", m[1], csp["script-src"])
		}
	}
	for _, m := range styles {
		if !allowed("style-src", m[1]) {
			t.Errorf("stylesheet %s is not allowed by style-src %v", m[1], csp["style-src"])
		}
	}
	if regexp.MustCompile(`<script>`).MatchString(body) && !slices.Contains(csp["script-src"], "'unsafe-inline'") {
		t.Error("the page has an inline script, which script-src does not allow")
	}
	if strings.Contains(body, "<style>") && !slices.Contains(csp["style-src"], "'unsafe-inline'") {
		t.Error("the page has an inline style block, which style-src does not allow")
	}
	if !slices.Contains(csp["connect-src"], "'self'") {
		t.Error("the playground must be able to reach the GraphQL endpoint")
	}
	for _, d := range []string{"script-src", "style-src"} {
		if slices.Contains(csp[d], "'unsafe-eval'") || slices.Contains(csp[d], "*") || slices.Contains(csp[d], "https:") {
			t.Errorf("%s is wider than it needs to be: %v", d, csp[d])
		}
	}
}

func TestNoStore(t *testing.T) {
	resp, _ := get(t, NoStore(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"data":{}}`)
	})), "/graphql")
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Fatalf("Cache-Control = %q, want no-store", got)
	}
}
