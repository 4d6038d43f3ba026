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

	"github.com/terragate/terragate/internal/playground"
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

// TestPlaygroundPolicyFitsPage serves the playground page terragate renders and checks that
// the policy allows what it loads and nothing more: its own script and stylesheet, no other
// origin, no inline script. A page that went back to a CDN or an inline boot script fails
// here rather than in a browser.
func TestPlaygroundPolicyFitsPage(t *testing.T) {
	page := playground.Page("/graphql", map[string]string{"Authorization": "Bearer x"})
	resp, body := get(t, Playground(page), "/")
	csp := directives(t, resp.Header.Get("Content-Security-Policy"))

	for d, sources := range csp {
		for _, s := range sources {
			if strings.Contains(s, "://") || (strings.HasSuffix(s, ":") && s != "data:") || strings.Contains(s, ".") {
				t.Errorf("%s allows %s: the playground loads nothing from other origins", d, s)
			}
		}
	}
	for _, d := range []string{"script-src", "style-src"} {
		if !slices.Equal(csp[d], []string{"'self'"}) {
			t.Errorf("%s = %v, want 'self' alone", d, csp[d])
		}
	}
	if !slices.Contains(csp["connect-src"], "'self'") {
		t.Error("the playground must be able to reach the GraphQL endpoint")
	}

	scripts := regexp.MustCompile(`<script\s+src="([^"]+)"`).FindAllStringSubmatch(body, -1)
	styles := regexp.MustCompile(`<link\s+rel="stylesheet"\s+href="([^"]+)"`).FindAllStringSubmatch(body, -1)
	if len(scripts) != 1 || len(styles) != 1 {
		t.Fatalf("found %d scripts and %d stylesheets, want one of each:\n%s", len(scripts), len(styles), body)
	}
	for _, m := range append(scripts, styles...) {
		if u, err := url.Parse(m[1]); err != nil || u.Host != "" || !strings.HasPrefix(u.Path, playground.AssetsPath) {
			t.Errorf("%s is not on the page's own origin under %s", m[1], playground.AssetsPath)
		}
	}
	// Every other script element must be data, which CSP does not run.
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(body, -1) {
		if !strings.Contains(tag, " src=") && !strings.Contains(tag, `type="application/json"`) {
			t.Errorf("inline script %s, which script-src 'self' blocks", tag)
		}
	}
	if strings.Contains(body, "<style") || strings.Contains(body, " style=") {
		t.Error("the page has inline styles, which style-src 'self' blocks")
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
